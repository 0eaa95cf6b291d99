"""Every history line of a tracked run folder also becomes TensorBoard scalars."""

from ffmrec.utils.io import History
from ffmrec.utils.tracking import close_writers, enable_tensorboard, read_scalars, scalars


def test_scalars_keep_finite_numbers_at_the_line_step():
    step, values = scalars({"round": 3, "clients": 8, "failed": 1, "bytes_up": 1024, "loss": float("nan"),
                            "errors": ["boom"], "valid/NDCG@10": 0.25, "skipped": "why"})
    assert step == 3
    assert values == {"clients": 8.0, "failed": 1.0, "bytes_up": 1024.0, "valid/NDCG@10": 0.25}


def test_history_lines_of_a_tracked_run_reach_tensorboard(tmp_path):
    enable_tensorboard(tmp_path)
    history = History(tmp_path / "history.jsonl")
    history.append({"round": 1, "bytes_up": 100, "failed": 0, "loss": 2.0})
    history.append({"round": 2, "bytes_up": 300, "failed": 2, "loss": 1.5, "valid/HR@10": 0.1})
    close_writers()
    tb = read_scalars(tmp_path)
    assert tb["bytes_up"] == [(1, 100.0), (2, 300.0)]
    assert tb["failed"] == [(1, 0.0), (2, 2.0)]
    assert [s for s, _ in tb["loss"]] == [1, 2]
    assert tb["valid/HR@10"][0][0] == 2 and abs(tb["valid/HR@10"][0][1] - 0.1) < 1e-6


def test_untracked_run_writes_no_event_files(tmp_path):
    History(tmp_path / "history.jsonl").append({"epoch": 1, "loss": 1.0})
    assert not (tmp_path / "tensorboard").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.jsonl"]
