"""``recommend`` from a fedtrek run: a seeker's top K from their PKG, never a PKG movie, with KG-path explanations."""

import json
import re
import sys
from pathlib import Path

import pytest

import ffmrec
from ffmrec.cli import main
from ffmrec.recommend import load_trained

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pkg"))
from redial_tiny import write_tiny_redial  # noqa: E402

pytestmark = pytest.mark.slow
TINY = {"federated.rounds": 1, "federated.clients_per_round": 2, "federated.eval_every": 1,
        "federated.eval_users": None, "task.max_tokens": 128, "task.pkg_tokens": 48}
FIELDS = {"director": "directors", "actor": "actors", "genre": "genres"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fedtrek")
    mp = pytest.MonkeyPatch()
    mp.setenv("FFMREC_CACHE_DIR", str(root / "cache"))
    mp.setenv("FFMREC_OFFLINE", "1")
    try:
        data = write_tiny_redial(root / "redial")
        result = ffmrec.run("fedtrek", dataset=str(data), overrides=TINY, out=root / "run")
        user = result.trained.data.users[0].user_id  # the API's result recommends too
        assert [r.rank for r in result.recommend(user, k=2).items] == [1, 2]
        yield result.out_dir
    finally:
        mp.undo()


def test_recommend_explain_names_a_liked_movie_and_a_shared_attribute(run_dir, capsys, monkeypatch):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(Path(run_dir).parent / "cache"))
    trained = load_trained(run_dir)
    user = trained.data.users[-1]
    catalog = trained.data.catalog
    pkg = user.history.snapshot(user.train_cutoff)
    k = len(catalog) - len(pkg)  # every movie left: the linked ones are among them
    assert main(["recommend", str(run_dir), "--user", str(user.user_id), "--k", str(k), "--explain"]) == 0
    out = capsys.readouterr().out
    ranked = re.findall(r"^\s*\d+\. (.+?)  \[item (\d+), score", out, flags=re.M)
    assert len(ranked) == k
    assert all(catalog[m].title == title for title, m in ranked)
    assert not {m for _, m in ranked} & set(pkg.movies())
    assert main(["recommend", str(run_dir), "--user", str(user.user_id), "--k", str(k), "--explain", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [r["item"] for r in items] == [m for _, m in ranked]
    linked = [r for r in items if r["link"]]
    assert linked, "the tiny KG links a liked comedy to Eta (2007)"
    for r in items:
        assert r["because"] in out
        if not r["link"]:
            assert r["because"].startswith("no link in your graph")
            continue
        link, liked = r["link"], catalog[r["link"]["liked"]]
        assert pkg.relations[link["liked"]] == "liked"
        assert link["value"] in getattr(liked, FIELDS[link["relation"]])
        assert link["value"] in getattr(catalog[r["item"]], FIELDS[link["relation"]])
        assert r["because"] == (f"because you liked {liked.title}, which shares the {link['relation']} "
                                f"{link['value']} with {r['title']}")


def test_k_lines_and_unknown_user(run_dir, capsys, monkeypatch):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(Path(run_dir).parent / "cache"))
    user = load_trained(run_dir).data.users[0].user_id
    assert main(["recommend", str(run_dir), "--user", str(user), "--k", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"Top 2 for user {user} (") and "movies in their PKG" in out[0] and len(out) == 3
    assert main(["recommend", str(run_dir), "--user", "nobody"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ffmrec: error: user 'nobody' is not in dataset 'redial'") and str(user) in err
    assert len(err.strip().splitlines()) == 1
