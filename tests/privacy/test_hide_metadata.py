"""federated.hide_metadata: records claim weight 1 and no loss, whatever the user's history; default unchanged."""

import math

import numpy as np
import pytest
import torch

from ffmrec.errors import ConfigError
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.config import FederatedConfig
from ffmrec.federated.engines.cohort import Cohort
from ffmrec.federated.engines.fast import FastSimulator
from ffmrec.federated.observers.recorder import load_round
from ffmrec.federated.run import build_observers
from ffmrec.federated.server import run_server
from ffmrec.federated.strategies import build_strategy
from ffmrec.federated.transforms import build_transform
from ffmrec.federated.transforms.metadata import HideMetadata
from ffmrec.federated.transforms.noise import Compose
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.tasks.sequential import SequentialTask

ITEMS = 30


def _task(users=12, seed=0):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, ITEMS + 1, size=int(n)) for n in rng.integers(5, 14, size=users)]
    cfg = SASRecConfig(max_len=10, hidden_size=8, num_heads=1, num_layers=1, inner_size=16, dropout=0.0)
    return SequentialTask(LeaveOneOut(seqs), lambda nu: SASRec(cfg, ITEMS, nu), seed=seed, ks=(10,))


def test_hide_metadata_is_built_composes_and_leaves_the_update_unchanged():
    assert isinstance(build_transform(FederatedConfig(hide_metadata=True)), HideMetadata)
    both = build_transform(FederatedConfig(hide_metadata=True, client_clip_norm=1.0, client_noise_multiplier=0.1))
    assert isinstance(both, Compose) and isinstance(both.transforms[-1], HideMetadata)
    weight, metrics = both.metadata(17, {"loss": 3.2})
    assert weight == 1 and list(metrics) == ["loss"] and math.isnan(metrics["loss"])
    ldp_only = build_transform(FederatedConfig(client_clip_norm=1.0, client_noise_multiplier=0.1))
    assert ldp_only.metadata(17, {"loss": 3.2}) == (17, {"loss": 3.2})  # default: the true metadata
    update = {"w": torch.randn(3, 4)}
    assert HideMetadata()(update, []) is update
    with pytest.raises(ConfigError, match="hide_metadata"):
        FederatedConfig(hide_metadata="yes")


@pytest.mark.parametrize("hide", [False, True])
def test_cohort_records_carry_no_history_length_or_loss_when_hidden(hide):
    task = _task()
    transform = build_transform(FederatedConfig(hide_metadata=hide))
    cohort = Cohort(task, chunk_size=5, transform=transform)
    ids = list(range(task.num_clients))
    records, partials, failures = cohort.train(1, ids, task.initial_shared(), ClientConfig(lr=0.1), want_records=True)
    assert not failures and not partials and len(records) == task.num_clients
    lengths = [task.weight(r.client_id) for r in records]
    assert len(set(lengths)) > 1  # the users' histories differ in length
    if hide:
        assert [r.weight for r in records] == [1] * len(records)
        assert all(math.isnan(r.metrics["loss"]) for r in records)
    else:
        assert [r.weight for r in records] == lengths
        assert all(math.isfinite(r.metrics["loss"]) for r in records)
    # a partial sum (no records wanted) weighs clients alike too
    _, partials, _ = Cohort(task, chunk_size=5, transform=transform).train(
        1, ids, task.initial_shared(), ClientConfig(lr=0.1), want_records=False)
    assert sum(p.weight for p in partials) == (len(ids) if hide else sum(lengths))


def test_recorded_run_with_hidden_metadata_has_constant_weights_and_trains(tmp_path):
    task = _task(users=16)
    fed = FederatedConfig(rounds=2, clients_per_round=8, eval_every=2, strategy="fedavg", server_lr=1.0,
                          hide_metadata=True, client_clip_norm=1.0, record_rounds=[1, 2])
    fed.client.lr = 0.1
    engine = FastSimulator(task, chunk_size=4, transform=build_transform(fed))
    result = run_server(task, engine, build_strategy(fed), fed, tmp_path, 0,
                        observers=build_observers(fed, task, tmp_path), progress=False)
    for rnd in (1, 2):
        data = load_round(tmp_path, rnd)
        assert data["weights"].tolist() == [1] * len(data["client_ids"])
        assert bool(torch.isnan(data["metrics"]["loss"]).all())
    assert result.rounds_run == 2 and result.failures == 0
    assert result.test and all(math.isfinite(v) for v in result.test.values())  # uniform weights still train


def test_inferred_rows_do_not_need_the_stated_weight():
    from ffmrec.privacy.attacks import _inferred_rows

    norms = torch.ones(4, 6)
    norms[0, [1, 2]] = 5.0  # client 0 moved rows 1 and 2 five times as much as the typical client
    norms[1, 4] = 3.0
    stated = _inferred_rows(norms, torch.tensor([1, 3, 1, 1]))
    assert stated[0].tolist() == [0, 1, 0, 0, 0, 0] and stated[1].sum() == 3 and stated[1, 4] == 1
    hidden = _inferred_rows(norms, torch.ones(4, dtype=torch.long))  # weights say nothing: rows moved >= 2x
    assert hidden[0].tolist() == [0, 1, 1, 0, 0, 0] and hidden[1].tolist() == [0, 0, 0, 0, 1, 0]
    assert hidden[2].sum() == 1  # at least one row per client
