"""``ffmrec run --seeds N --tensorboard`` is a thin layer over ``ffmrec.run``: seed subfolders, their mean ± std,
event files in each run folder."""

import json

from api_helpers import write_interactions

from ffmrec.cli import main
from ffmrec.utils.tracking import close_writers, read_scalars

TINY = ["model.max_len=8", "model.hidden_size=16", "model.inner_size=32", "model.num_layers=1", "threads=1",
        "train.epochs=2", "train.eval_every=1"]


def test_run_with_seeds_and_tensorboard(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_interactions(tmp_path / "interactions.csv")
    out = tmp_path / "runs" / "s"
    assert main(["run", "sasrec", "--dataset", str(data), "--set", *TINY, "--seeds", "2", "--tensorboard",
                 "--out", str(out), "--quiet"]) == 0
    close_writers()
    printed = capsys.readouterr().out
    assert "NDCG@10=" in printed and "±" in printed and "seeds.json" in printed
    info = json.loads((out / "seeds.json").read_text())
    assert info["seeds"] == [42, 43] and info["runs"] == ["seed-42", "seed-43"]
    per_seed = [s["NDCG@10"] for s in info["per_seed"]]
    assert abs(info["mean"]["NDCG@10"] - sum(per_seed) / 2) < 1e-12
    for name in info["runs"]:
        assert [step for step, _ in read_scalars(out / name)["loss"]] == [1, 2]
    assert main(["recommend", str(out), "--user", "u1"]) == 2
    assert "one run per seed" in capsys.readouterr().err


def test_bad_seeds_value_is_one_clear_error(tmp_path, capsys):
    assert main(["run", "sasrec", "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
    assert "seeds=0 must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
