"""The attack and a defence end to end on a tiny synthetic dataset (the fast engine, the one driver loop)."""

import numpy as np
import pytest

from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.federated.adversary import AdversaryConfig, build_adversary
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.config import FederatedConfig
from ffmrec.federated.engines.fast import FastSimulator
from ffmrec.federated.server import run_server
from ffmrec.federated.strategies import build_strategy
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.tasks.sequential import SequentialTask

NUM_ITEMS = 120


def synthetic_split(num_users=150, seed=0):
    """Users walk the catalogue in small steps (item i is mostly followed by i+1 or i+2): a learnable pattern, and
    items near the end of the id range are rarely reached."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(num_users):
        start, length = rng.integers(1, 60), rng.integers(8, 20)
        steps = rng.choice([1, 2], size=length)
        sequences.append(np.minimum(start + np.cumsum(steps), NUM_ITEMS))
    return LeaveOneOut(sequences)


def run(strategy_overrides: dict, tmp_path, name: str) -> dict[str, float]:
    split = synthetic_split()
    cfg = SASRecConfig(max_len=16, hidden_size=16, num_heads=2, inner_size=32, dropout=0.0, user_embedding=True)
    task = SequentialTask(split, lambda nu: SASRec(cfg, NUM_ITEMS, nu), seed=0, ks=(10, 20))
    adversary = AdversaryConfig(fraction=0.1, target_item=110, popular_items=30)
    task = build_adversary(task, adversary, split.sequences, NUM_ITEMS, seed=0)
    settings = {"strategy": "fedavg", "server_lr": 1.0, **strategy_overrides}
    fed = FederatedConfig(rounds=30, clients_per_round=30, eval_every=10, client=ClientConfig(lr=1.0, personal_lr=0.01),
                          adversary=adversary, **settings)
    engine = FastSimulator(task, chunk_size=30)
    result = run_server(task, engine, build_strategy(fed), fed, tmp_path / name, seed=0, progress=False)
    print(name, result.test)
    return result.test


@pytest.mark.slow
def test_undefended_attack_exposes_the_target_and_krum_keeps_it_hidden(tmp_path):
    undefended = run({}, tmp_path, "fedavg")
    defended = run({"strategy": "krum", "krum_malicious": 6, "krum_multi": 20}, tmp_path, "krum")
    assert undefended["ER@10"] >= 0.5  # 10% attackers put the target into most honest users' top 10
    assert defended["ER@10"] <= 0.05
    assert defended["NDCG@10"] > 0.1  # the defended model still learnt the users' pattern
