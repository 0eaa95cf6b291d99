"""``recommend``: a finished run's top K for one user, with reasons; clear errors for everything else; the API."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from api_helpers import TINY_MODEL, write_interactions

import ffmrec
from ffmrec.cli import main
from ffmrec.errors import FFMRecError
from ffmrec.models.sasrec import SASRec
from ffmrec.recommend import load_trained


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One centralized and one federated (personal user vectors) run on a tiny CSV, built once for the module."""
    root = tmp_path_factory.mktemp("runs")
    os.environ.setdefault("FFMREC_CACHE_DIR", str(root / "cache"))
    data = str(write_interactions(root / "interactions.csv"))
    central = ffmrec.run("sasrec", dataset=data, overrides={**TINY_MODEL, "train.epochs": 2}, out=root / "sasrec")
    fed = ffmrec.run("fedsasrec", dataset=data, out=root / "fedsasrec",
                     overrides={**TINY_MODEL, "federated.rounds": 2, "federated.clients_per_round": 10,
                                "federated.chunk_size": 10, "federated.eval_every": 1})
    return {"sasrec": central, "fedsasrec": fed}


@pytest.mark.parametrize("method", ["sasrec", "fedsasrec"])
def test_recommendations_leave_out_the_users_items_and_come_best_first(runs, method):
    trained = load_trained(runs[method].out_dir)
    recs = trained.recommend("u3", k=5)
    u = trained.user_index("u3")
    seen = {str(trained.dataset.item_ids[i]) for i in trained.dataset.sequence(u)}
    assert len(recs.items) == min(5, trained.dataset.num_items - len(seen))
    assert not seen & {r.item for r in recs.items}
    scores = [r.score for r in recs.items]
    assert scores == sorted(scores, reverse=True)
    assert [r.rank for r in recs.items] == list(range(1, len(scores) + 1))


@pytest.mark.parametrize("method", ["sasrec", "fedsasrec"])
def test_explanations_name_history_items_in_words(runs, method):
    trained = load_trained(runs[method].out_dir)
    recs = trained.recommend("u3", k=3, explain=True)
    history = {str(trained.dataset.item_ids[i]) for i in trained.dataset.sequence(trained.user_index("u3"))}
    for rec in recs.items:
        assert 1 <= len(rec.reasons) <= 3
        assert {r.item for r in rec.reasons} <= history
        assert sum(r.weight for r in rec.reasons) <= 1 + 1e-6
        assert rec.because.startswith("because you liked ") and rec.reasons[0].title in rec.because
    assert "because you liked" in recs.format()


def test_federated_recommendations_use_the_users_own_personal_row(runs):
    out = runs["fedsasrec"].out_dir
    trained = load_trained(out)
    saved = torch.load(out / "server.pt", weights_only=True)["engine"]["best"]["user_emb.weight"]
    for user in ("u1", "u7"):
        trained.recommend(user, k=2)
        row = trained.model.user_emb.weight.detach()[0]
        assert torch.equal(row, saved[trained.user_index(user), 0])
    assert not torch.equal(saved[trained.user_index("u1")], saved[trained.user_index("u7")])


def test_unknown_user_is_one_clear_error(runs, capsys):
    assert main(["recommend", str(runs["sasrec"].out_dir), "--user", "nobody"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ffmrec: error: user 'nobody' is not in dataset") and "u0" in err
    assert len(err.strip().splitlines()) == 1


def test_folder_that_is_not_a_run_and_a_run_in_progress_are_clear_errors(runs, tmp_path, capsys):
    assert main(["recommend", str(tmp_path), "--user", "u1"]) == 2
    assert "is not an ffmrec run folder" in capsys.readouterr().err
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.yaml").write_text((runs["sasrec"].out_dir / "config.yaml").read_text())
    (partial / "history.jsonl").write_text('{"epoch": 1, "loss": 1.0}\n')
    assert main(["recommend", str(partial), "--user", "u1"]) == 2
    assert "still in progress" in capsys.readouterr().err
    (partial / "seeds.json").write_text("{}")
    (partial / "config.yaml").unlink()
    with pytest.raises(FFMRecError, match="one run per seed"):
        load_trained(partial)


def test_cli_prints_json_with_reasons(runs, capsys):
    assert main(["recommend", str(runs["fedsasrec"].out_dir), "--user", "u2", "--k", "4", "--explain", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["user"] == "u2" and len(data["items"]) == 4
    assert all(item["because"].startswith("because you liked") for item in data["items"])


def test_load_returns_the_runs_metrics_history_and_model(runs):
    for method, result in runs.items():
        again = ffmrec.load(result.out_dir)
        assert again.metrics == pytest.approx(result.metrics)
        assert again.summary["dataset"]["users"] == 30
        assert len(again.history) == 2
        assert isinstance(again.model, SASRec)
        assert len(again.recommend("u5", k=3).items) == 3
        ranks = np.load(result.out_dir / "test_ranks.npz")["rank"]
        assert len(ranks) == 30 and ranks.min() >= 1


def test_import_ffmrec_stays_cheap():
    code = "import sys, ffmrec; assert 'torch' not in sys.modules, 'torch imported'; assert callable(ffmrec.run)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_federated_report_shows_bytes_and_failures_per_round(runs):
    out = runs["fedsasrec"].out_dir
    report = (out / "report.md").read_text()
    assert "![bytes per round](bytes_per_round.png)" in report and "![client failures](client_failures.png)" in report
    assert (out / "bytes_per_round.png").stat().st_size > 1000 and (out / "client_failures.png").stat().st_size > 1000
    assert not (runs["sasrec"].out_dir / "bytes_per_round.png").exists()


def test_reasons_in_words_call_only_well_rated_items_liked():
    from ffmrec.recommend import Reason, Recommendation

    def reason(title, rating):
        return Reason("1", title, 0.3, 0.1, 0.5, rating)

    rec = Recommendation(1, "9", "Fargo (1996)", 1.0, [reason("Heat (1995)", 5.0), reason("Alien (1979)", None),
                                                        reason("Jaws (1975)", 2.0)])
    assert rec.because == ("because you liked Heat (1995) (you rated it 5/5) and Alien (1979), "
                           "and you also had Jaws (1975) (you rated it 2/5)")
    rec.reasons = [reason("Jaws (1975)", 1.0)]
    assert rec.because == "because you had Jaws (1975) (you rated it 1/5)"


def test_flower_runs_take_personal_rows_from_their_supernodes_device_files(runs, tmp_path):
    """A Flower run keeps personal state in devices/partition-<i>/round-<r>.pt (users u % n == i, in order): the
    same rows, split over two SuperNodes, give the same recommendations."""
    import shutil

    src = runs["fedsasrec"].out_dir
    out = tmp_path / "flower-run"
    shutil.copytree(src, out)
    ckpt = torch.load(out / "server.pt", weights_only=True)
    best = ckpt["engine"]["best"]["user_emb.weight"]  # (num_users, 1, d)
    ckpt["engine"] = {}  # what the Flower engines checkpoint: the devices keep their own state
    torch.save(ckpt, out / "server.pt")
    for i in range(2):
        store = {"table": {"user_emb.weight": best[i::2].clone()}, "best": {"user_emb.weight": best[i::2].clone()}}
        (out / "devices" / f"partition-{i}").mkdir(parents=True)
        torch.save({"session": "s", "round": 2, "store": store}, out / "devices" / f"partition-{i}" / "round-000002.pt")
    (out / "metrics.json").touch()  # still the last file written: the run is finished
    assert [r.item for r in load_trained(out).recommend("u7", k=5).items] == \
        [r.item for r in load_trained(src).recommend("u7", k=5).items]
    assert torch.equal(load_trained(out).personal["user_emb.weight"], best)
