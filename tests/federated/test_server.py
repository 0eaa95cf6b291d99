"""The driver loop: checkpoint/resume exactness, faulty clients, min_clients."""

import json

import numpy as np
import pytest
import torch

from ffmrec.errors import FFMRecError
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.config import FederatedConfig
from ffmrec.federated.engines.fast import FastSimulator
from ffmrec.federated.sampling import sample_clients
from ffmrec.federated.server import run_server
from ffmrec.federated.strategies import FedAdam, Median


def run(task, out, rounds, strategy=None, **kw):
    cfg = FederatedConfig(rounds=rounds, clients_per_round=8, eval_every=2, chunk_size=3,
                          client=ClientConfig(lr=1.0, personal_lr=0.1), **kw)
    engine = FastSimulator(task, chunk_size=cfg.chunk_size)
    return run_server(task.num_clients, task.initial_shared(), engine, strategy or FedAdam(0.01), cfg, (10,), out,
                      seed=7, progress=False), engine


class Stop(Exception):
    pass


def test_resume_after_interruption_is_exact(make_task, tmp_path, monkeypatch):
    full, _ = run(make_task(dropout=0.2), tmp_path / "full", rounds=6)

    # Interrupt the second run after round 3's checkpoint, as a kill would.
    import ffmrec.federated.server as server
    real_save, calls = server.save_checkpoint, {"n": 0}

    def save_then_die(path, obj):
        real_save(path, obj)
        calls["n"] += 1
        if calls["n"] == 3:
            raise Stop

    monkeypatch.setattr(server, "save_checkpoint", save_then_die)
    with pytest.raises(Stop):
        run(make_task(dropout=0.2), tmp_path / "resumed", rounds=6)
    monkeypatch.setattr(server, "save_checkpoint", real_save)
    resumed, _ = run(make_task(dropout=0.2), tmp_path / "resumed", rounds=6)

    assert resumed.test == full.test
    lines = [json.loads(x) for x in (tmp_path / "resumed" / "history.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [1, 2, 3, 4, 5, 6]
    a = torch.load(tmp_path / "full" / "server.pt", weights_only=False)["params"]
    b = torch.load(tmp_path / "resumed" / "server.pt", weights_only=False)["params"]
    for k in a:
        assert torch.equal(a[k], b[k])


def test_faulty_client_does_not_kill_the_round(make_task, tmp_path):
    task = make_task()
    task.histories[1] = np.array([1, 999, 2, 5])  # item id out of range: this device's update raises
    result, _ = run(task, tmp_path, rounds=4)
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    failed_rounds = [line for line in lines if line["failed"]]
    sampled_3 = [r for r in range(1, 5) if 1 in sample_clients(30, 8, r, 7)]
    assert sampled_3, "the seed must sample the faulty client at least once"
    assert [line["round"] for line in failed_rounds] == sampled_3
    for line in failed_rounds:
        assert line["ok"] == 7 and "IndexError" in line["errors"][0]
    assert result.failures == len(sampled_3)


def test_min_clients_skips_round_without_update(make_task, tmp_path):
    task = make_task()
    for u in range(task.num_clients):
        task.histories[u] = np.array([1, 999, 3])  # every device fails
    with pytest.raises(FFMRecError, match="no round"):
        run(task, tmp_path, rounds=2)
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert all("skipped" in line for line in lines)


def test_robust_strategy_gets_every_update(make_task, tmp_path):
    result, _ = run(make_task(), tmp_path, rounds=2, strategy=Median(server_lr=1.0))
    assert set(result.test) == {"HR@10", "NDCG@10", "MRR"}
