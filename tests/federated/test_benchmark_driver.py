"""The Flower timing driver of benchmarks/federated_throughput.py, on the in-process fake Grid (no Ray)."""

from __future__ import annotations

from test_flower_sim import FakeGrid, task_identity  # noqa: F401 - the fixture Message() needs

from ffmrec.federated.engines.flower.benchmark_driver import planned_rounds, shared_task_factory, timing_driver
from ffmrec.federated.engines.flower.engine import RESOLVER_KEY, RUN_DIR_KEY
from ffmrec.federated.engines.flower.executor import FlowerGridExecutor


def flat(tmp_path, mode):
    return {RESOLVER_KEY: "ffmrec.federated.engines.flower.benchmark_driver:linear_from_flat", RUN_DIR_KEY: str(tmp_path),
            "num-users": 9, "message-mode": mode, "chunk-size": 4, "benchmark-sizes": "3,5", "benchmark-repeats": 2,
            "benchmark-warmup": 2, "task-factory": "ffmrec.federated.engines.flower.benchmark_driver:shared_task_factory"}


def test_timing_driver_times_every_size_without_failures(tmp_path):
    for mode in ("cohort", "per-user"):
        config = flat(tmp_path / mode, mode)
        grid = FakeGrid(3, config)
        out = timing_driver(config, FlowerGridExecutor(grid, timeout=5, discovery_timeout=5))
        assert sorted(out["rounds"]) == ["3", "5"] and out["num_clients"] == 9 and not out["skipped"]
        assert all(r["ok"] == [int(n)] * 2 and r["failed"] == [0, 0] for n, r in out["rounds"].items())
        trains = [ids for _, kind, ids in grid.sent if kind == "train"]
        timed = [u for _, _, ids in planned_rounds(9, [3, 5], 2, 0) for u in ids]
        assert sum(len(ids) for ids in trains) == 2 + len(timed)  # the warm-up's 2 clients, then the planned rounds
        if mode == "per-user":
            assert all(len(ids) == 1 for ids in trains)


def test_a_size_predicted_over_budget_is_skipped(tmp_path):
    config = {**flat(tmp_path, "cohort"), "benchmark-sizes": "3,9", "benchmark-repeats": 1,
              "benchmark-max-round-seconds": 1e-9}
    out = timing_driver(config, FlowerGridExecutor(FakeGrid(3, config), timeout=5, discovery_timeout=5))
    assert list(out["rounds"]) == ["3"] and "9" in out["skipped"]


def test_shared_task_factory_builds_the_task_once_per_process(tmp_path):
    config = flat(tmp_path, "per-user")
    assert shared_task_factory(config, (0, 3))[0] is shared_task_factory(config, (2, 3))[0]


def test_paired_fast_rounds_follow_every_flower_round(tmp_path):
    import torch

    threads = torch.get_num_threads()
    config = {**flat(tmp_path, "cohort"), "benchmark-fast-threads": 1}
    try:
        out = timing_driver(config, FlowerGridExecutor(FakeGrid(3, config), timeout=5, discovery_timeout=5))
    finally:
        torch.set_num_threads(threads)
    assert all(len(r["fast_seconds"]) == 2 for r in out["rounds"].values())
    assert len(out["flower_intervals"]) == 4 and out["fast_started_at"] >= out["flower_intervals"][0][1]
