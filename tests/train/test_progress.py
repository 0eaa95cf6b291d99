"""What a run shows while it runs and draws when it ends: progress within an epoch (not an ETA to the epoch cap), no
best score before there is one, a rounds bar for Flower's engines, whole-numbered plot axes and the training loss."""

import json
import threading
import time

import numpy as np
import torch

from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.eval.ranking import EvalConfig
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.train.trainer import TrainConfig, train


def tiny_split(users=24, items=15, seed=0):
    rng = np.random.default_rng(seed)
    return LeaveOneOut([rng.integers(1, items + 1, size=rng.integers(5, 9)) for _ in range(users)]), items


def test_trainer_bar_counts_batches_within_the_epoch_not_epochs_to_the_cap(tmp_path, capsys):
    split, items = tiny_split()
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(max_len=8, hidden_size=16, inner_size=32, num_heads=1, num_layers=1), items, 24)
    train(model, split, TrainConfig(epochs=200, batch_size=8, patience=1, eval_every=2), EvalConfig(ks=(10,)),
          tmp_path, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/200 (or early stop)" in err
    assert "3/3 [" in err  # 24 users / 8 per batch: the batches of one epoch, with their own ETA
    assert "/200 [" not in err  # no bar (and no ETA) over the 200-epoch cap
    assert "best=not validated yet" in err and "-1.0000" not in err
    assert "best=" in err and "(epoch 2)" in err


def test_round_postfix_shows_no_best_before_the_first_validation():
    from ffmrec.federated.server import round_postfix

    assert round_postfix({"loss": 1.25}, {"best": -float("inf"), "best_round": 0}) == {
        "loss": "1.250", "best": "not validated yet"}
    assert round_postfix({"loss": 1.0}, {"best": 0.5, "best_round": 10})["best"] == "0.5000 (round 10)"


def test_flower_engines_show_a_rounds_bar_that_follows_the_history(tmp_path, capsys):
    from ffmrec.federated.run import history_progress

    path = tmp_path / "history.jsonl"

    def driver():  # what the ServerApp does, in another thread or process
        for rnd in range(1, 4):
            line = {"round": rnd, "loss": 2.0 / rnd, **({"valid/NDCG@10": 0.25} if rnd == 2 else {})}
            with open(path, "a") as f:
                f.write(json.dumps(line) + "\n")
            time.sleep(0.05)

    with history_progress(path, rounds=3, every=0.02):
        thread = threading.Thread(target=driver)
        thread.start()
        thread.join()
    err = capsys.readouterr().err
    assert "rounds" in err and "3/3" in err and "0.2500 (round 2)" in err


def test_flower_engine_run_shows_the_rounds_bar(tmp_path, monkeypatch, capsys):
    import ffmrec.federated.engines.flower.engine as flower
    from ffmrec.federated.run import run_federated
    from ffmrec.recipes import load_recipe

    def fake_simulation(config, out_dir, num_users):
        with open(out_dir / "history.jsonl", "a") as f:
            for rnd in (1, 2):
                f.write(json.dumps({"round": rnd, "loss": 1.0}) + "\n")
        return "result"

    monkeypatch.setattr(flower, "run_flower_simulation", fake_simulation)
    config = load_recipe("fedsasrec", "beauty", ["federated.engine=flower-sim", "federated.rounds=2"])
    task = type("Task", (), {"num_clients": 5})()
    assert run_federated(config, task, tmp_path, progress=True) == "result"
    assert "2/2" in capsys.readouterr().err


def test_short_run_plot_has_a_visible_point_on_a_whole_numbered_axis():
    from ffmrec.report import curves_figure

    fig = curves_figure({"NDCG@10": [(1, 0.1)]}, "epoch", "validation metric")
    (ax,) = fig.axes
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_xlim()[0] < 1 < ax.get_xlim()[1]
    (line,) = ax.lines
    assert line.get_marker() == "o" and line.get_markersize() >= 6


def test_report_plots_the_training_loss(tmp_path):
    from ffmrec.report import write_report

    history = [{"epoch": e, "loss": 3.0 - e / 2, **({"valid/NDCG@10": 0.1 * e} if e % 2 == 0 else {})}
               for e in (1, 2, 3)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    config = type("Config", (), {"setting": "centralized", "method": "sasrec", "dataset": "toy",
                                 "eval": EvalConfig()})()
    write_report(tmp_path, config, {"NDCG@10": 0.2}, {"dataset": {"items": 15}})
    assert (tmp_path / "training_loss.png").stat().st_size > 1000
    assert "![training loss](training_loss.png)" in (tmp_path / "report.md").read_text()
