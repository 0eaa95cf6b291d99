"""ffmrec's fast simulator and Flower's engines, same seed and sampled clients: the same global model and metrics.

Flower's simulation engine (Ray, in-process) for the FedAvg family, a robust rule, per-client dropout, per-client
sampled negatives and CL4SRec's per-client augmented views; Flower's deployment engine (a SuperLink and 2 SuperNodes
as processes, cohort messages) once per recipe, with all of the per-client randomness at once: each deployment run
costs about a minute. (``tests/cli/test_flower_resume.py`` also compares a killed and resumed run of either Flower
engine with the fast one.)
"""

import json

import pytest
import torch
from engine_data import write_interactions

from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe

COMMON = ["model.max_len=8", "model.hidden_size=16", "model.inner_size=32", "model.dropout=0.0",
          "federated.rounds=3", "federated.clients_per_round=7", "federated.eval_every=1", "federated.server_lr=1.0",
          "federated.client.lr=0.5", "federated.client.personal_lr=0.2", "federated.num_supernodes=3",
          "federated.chunk_size=3", "federated.client_timeout=120", "federated.deploy_timeout=600"]
DROPOUT = ["model.dropout=0.2"]  # per-client dropout noise, drawn from (seed, round, client) in every engine
SAMPLED_CE = ["model.loss=sampled_ce", "model.num_negatives=5"]  # per-client sampled negatives


def run_engines(recipe, engines, extra, tmp_path, monkeypatch):
    """Run ``recipe`` on the tiny dataset with each engine; ``{engine: RunResult}``."""
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_interactions(tmp_path / "interactions.csv")
    runs = {}
    for engine in engines:
        config = load_recipe(recipe, str(data), [*COMMON, *extra, f"federated.engine={engine}"])
        runs[engine] = pipeline(config, tmp_path / engine, progress=False)
    return runs


def assert_same_run(reference, other, clients=7):
    """The same global model (float32 sums in another order: 2e-6), training losses and validation/test metrics."""
    a = torch.load(reference.out_dir / "server.pt", weights_only=False)
    b = torch.load(other.out_dir / "server.pt", weights_only=False)
    assert a["state"]["round"] == b["state"]["round"]
    assert a["state"]["best_round"] == b["state"]["best_round"]
    for key in ("params", "best_params"):
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name], value, atol=2e-6, rtol=1e-5)
    # personal rows live on the devices (a SuperNode's files on Flower), so validation ranks agree too
    h_a = [json.loads(x) for x in (reference.out_dir / "history.jsonl").read_text().splitlines()]
    h_b = [json.loads(x) for x in (other.out_dir / "history.jsonl").read_text().splitlines()]
    assert [h["round"] for h in h_a] == [h["round"] for h in h_b] == list(range(1, a["state"]["round"] + 1))
    for x, y in zip(h_a, h_b):
        assert x["ok"] == y["ok"] == clients and x["failed"] == y["failed"] == 0
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x.get("valid/NDCG@10") == pytest.approx(y.get("valid/NDCG@10"), abs=1e-9)
    assert other.metrics == pytest.approx(reference.metrics, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("recipe,strategy,extra", [
    ("fedsasrec", "fedavg", []),
    ("fedsasrec", "median", []),
    ("fedsasrec", "fedavg", DROPOUT),
    ("fedsasrec", "fedavg", SAMPLED_CE),
    ("fedcl4srec", "fedavg", DROPOUT),  # augmented views drawn on the device from (seed, round, client)
], ids=["fedavg", "median", "dropout", "sampled_ce", "fedcl4srec"])
def test_fast_simulator_matches_flower_simulation(recipe, strategy, extra, tmp_path, monkeypatch):
    runs = run_engines(recipe, ("fast", "flower-sim"), [f"federated.strategy={strategy}", *extra], tmp_path,
                       monkeypatch)
    assert_same_run(runs["fast"], runs["flower-sim"])


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("recipe,extra", [
    ("fedsasrec", [*DROPOUT, *SAMPLED_CE]),
    ("fedcl4srec", DROPOUT),
], ids=["fedsasrec-dropout-sampled_ce", "fedcl4srec-dropout"])
def test_fast_simulator_matches_flower_deployment(recipe, extra, tmp_path, monkeypatch):
    """Cohort messages: each of the 2 SuperNodes trains its sampled users as one vectorised cohort, as the fast
    simulator does all of them. Every message starts a ``flwr-clientapp`` process (seconds of CPU), so 2 rounds and
    one validation."""
    settings = ["federated.strategy=fedavg", "federated.num_supernodes=2", "federated.rounds=2",
                "federated.eval_every=2", *extra]
    runs = run_engines(recipe, ("fast", "flower-deploy"), settings, tmp_path, monkeypatch)
    assert_same_run(runs["fast"], runs["flower-deploy"])
