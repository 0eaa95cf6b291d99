"""The attack wrapper and the noise sit in the client task, so Flower's simulation engine runs them unchanged: the same
malicious clients, fake histories, noisy histories and honest-user metrics as the fast engine."""

import numpy as np
import pytest
import torch

from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe


def write_interactions(path, num_users=24, num_items=20, seed=3):
    rng = np.random.default_rng(seed)
    rows = ["user,item,timestamp"]
    for u in range(num_users):
        for t, i in enumerate(rng.integers(1, num_items + 1, size=rng.integers(5, 10))):
            rows.append(f"{u},{i},{t}")
    path.write_text("\n".join(rows) + "\n")
    return path


SETTINGS = ["model.max_len=8", "model.hidden_size=16", "model.inner_size=32", "model.dropout=0.0",
            "federated.rounds=3", "federated.clients_per_round=12", "federated.eval_every=1",
            "federated.server_lr=1.0", "federated.strategy=fedavg", "federated.client.lr=0.5",
            "federated.num_supernodes=3", "federated.chunk_size=4", "federated.client_timeout=120",
            "federated.adversary.fraction=0.2", "federated.adversary.boost=2.0", "federated.noise.p=0.3"]


@pytest.mark.slow
def test_attack_and_noise_give_the_same_run_in_the_fast_and_flower_simulation_engines(tmp_path, monkeypatch):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_interactions(tmp_path / "interactions.csv")
    runs = {}
    for engine in ("fast", "flower-sim"):
        config = load_recipe("fedsasrec", str(data), [*SETTINGS, f"federated.engine={engine}"])
        runs[engine] = pipeline(config, tmp_path / engine, progress=False)
    fast, flower = runs["fast"], runs["flower-sim"]
    assert "ER@10" in fast.metrics
    assert flower.metrics == pytest.approx(fast.metrics, abs=1e-9)
    a = torch.load(fast.out_dir / "server.pt", weights_only=False)
    b = torch.load(flower.out_dir / "server.pt", weights_only=False)
    for name, value in a["params"].items():
        torch.testing.assert_close(b["params"][name], value, atol=2e-6, rtol=1e-5)
