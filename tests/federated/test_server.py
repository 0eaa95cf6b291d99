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
    return run_server(task, engine, strategy or FedAdam(0.01), cfg, out, seed=7, progress=False), engine


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


def test_egress_audit_passes_for_fedsasrec_and_catches_a_leaking_client(make_task, tmp_path):
    from ffmrec.federated.engines.base import RoundResult
    from ffmrec.federated.observers import ByteCounter, EgressAudit, EgressViolation
    from ffmrec.federated.records import ClientRecord

    task = make_task(dropout=0.2)
    cfg = FederatedConfig(rounds=2, clients_per_round=8, eval_every=2, client=ClientConfig(lr=1.0))
    engine = FastSimulator(task)
    audit, counter = EgressAudit(task, lambda c: engine.cohort.store.rows([c])), ByteCounter()
    run_server(task, engine, FedAdam(0.01), cfg, tmp_path, seed=7, observers=[counter, audit], progress=False)
    assert audit.audited == sum(task.weight(c) > 0 for r in (1, 2) for c in sample_clients(30, 8, r, 7))
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    per_client = sum(v.numel() * 4 for v in task.initial_shared().values())
    assert [line["bytes_down"] for line in lines] == [8 * per_client] * 2

    c = next(c for c in range(30) if task.weight(c) > 0)
    shared = task.initial_shared()
    raw = {k: v for k, v in shared.items()}
    raw["item_emb.weight"] = torch.zeros_like(shared["item_emb.weight"])
    personal = engine.cohort.store.rows([c])["user_emb.weight"]
    raw["ln_out.weight"] = personal.reshape(-1).clone()  # the client's own personal row, sent as a shared tensor
    with pytest.raises(EgressViolation, match="private 'personal/user_emb.weight'"):
        audit.on_round(1, [c], shared, RoundResult(records=[ClientRecord(c, raw, task.weight(c))]), {})
    extra = {**shared, "user_emb.weight": personal}
    with pytest.raises(EgressViolation, match="personal parameters"):
        audit.on_round(1, [c], shared, RoundResult(records=[ClientRecord(c, extra, task.weight(c))]), {})
