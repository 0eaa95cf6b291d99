"""LUMOS in ffmrec's fast simulator and in Flower's simulation engine: the same views on the devices (drawn from
(seed, round, client)), hence the same global model and metrics."""

import json

import pytest
import torch
from lumos_helpers import write_text_dataset

from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe

SMALL = ["model.max_len=8", "model.hidden_size=16", "model.inner_size=32", "model.dropout=0.2",
         "federated.rounds=2", "federated.clients_per_round=7", "federated.eval_every=1", "federated.server_lr=1.0",
         "federated.strategy=fedavg", "federated.client.lr=0.5", "federated.client.personal_lr=0.2",
         "federated.num_supernodes=3", "federated.chunk_size=3", "federated.client_timeout=120"]


@pytest.mark.slow
def test_fast_simulator_matches_flower_simulation_for_lumos(tmp_path, monkeypatch):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "data"
    folder.mkdir()
    data = write_text_dataset(folder)
    runs = {}
    for engine in ("fast", "flower-sim"):
        config = load_recipe("lumos", str(data), [*SMALL, f"federated.engine={engine}"])
        runs[engine] = pipeline(config, tmp_path / engine, progress=False)
    a = torch.load(runs["fast"].out_dir / "server.pt", weights_only=False)
    b = torch.load(runs["flower-sim"].out_dir / "server.pt", weights_only=False)
    for name, value in a["params"].items():
        torch.testing.assert_close(b["params"][name], value, atol=2e-6, rtol=1e-5)
    h_a = [json.loads(x) for x in (runs["fast"].out_dir / "history.jsonl").read_text().splitlines()]
    h_b = [json.loads(x) for x in (runs["flower-sim"].out_dir / "history.jsonl").read_text().splitlines()]
    for x, y in zip(h_a, h_b, strict=True):
        assert x["ok"] == y["ok"] == 7
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
    assert runs["flower-sim"].metrics == pytest.approx(runs["fast"].metrics, abs=1e-9)
