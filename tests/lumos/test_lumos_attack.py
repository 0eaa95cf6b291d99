"""The poisoning attack on LUMOS: with ``federated.adversary.auxiliary=false`` an attacker trains only the model's own
next-item loss on its poisoned data (boosted), while honest devices keep the full tri-view objective."""

import numpy as np
import torch
from lumos_helpers import NUM_ITEMS, knowledge

from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.federated.adversary import AdversaryConfig, build_adversary
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.fast import FastSimulator
from ffmrec.fm.views import EmbeddingViewConfig, EmbeddingViews
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.tasks.lumos import LUMOSConfig, LUMOSTask
from ffmrec.tasks.sequential import SequentialTask


def poisoned_lumos(auxiliary: bool, boost: float = 3.0):
    know = knowledge(NUM_ITEMS)
    rng = np.random.default_rng(0)
    split = LeaveOneOut([rng.integers(1, NUM_ITEMS + 1, size=rng.integers(4, 12)) for _ in range(20)])
    model_cfg = SASRecConfig(max_len=8, hidden_size=16, num_heads=2, inner_size=32, dropout=0.2,
                             user_embedding=True, item_repr="hybrid")
    config = LUMOSConfig()
    task = LUMOSTask(split, lambda nu: SASRec(model_cfg, NUM_ITEMS, nu, know.table), seed=0, cfg=config,
                     generator=EmbeddingViews(know, EmbeddingViewConfig(), config.kinds))
    adversary = AdversaryConfig(fraction=0.2, boost=boost, auxiliary=auxiliary)
    return build_adversary(task, adversary, split.sequences, NUM_ITEMS, seed=0)


def one_client_losses(task, client):
    """(the wrapper's objective, LUMOS's objective, the model's own loss) of one client's batch, at the same params."""
    params = {k: v for k, v in task.unwrapped.model.named_parameters()}
    batch = task.collate([task.prepare(client, 1)])
    inner = {k: v for k, v in batch.items() if k not in ("boost", "attacker")}
    plain = SequentialTask.objective(task.unwrapped, params, {k: v for k, v in inner.items() if k != "views"})
    with torch.no_grad():
        return (float(task.objective(params, batch)), float(task.inner.objective(params, inner)), float(plain))


def test_an_attacker_without_auxiliary_terms_trains_the_boosted_model_loss_and_honest_clients_keep_lumos():
    off, on = poisoned_lumos(auxiliary=False), poisoned_lumos(auxiliary=True)
    attacker = min(off.malicious)
    honest = min(c for c in range(off.num_clients) if c not in off.malicious)
    wrapped, lumos, plain = one_client_losses(off, attacker)
    assert lumos > plain + 1e-3  # the tri-view term is there to drop
    assert abs(wrapped - 3.0 * plain) < 1e-5 * max(1.0, abs(plain))
    wrapped, lumos, _ = one_client_losses(on, attacker)  # the default: the attacker runs LUMOS's objective
    assert abs(wrapped - 3.0 * lumos) < 1e-5 * max(1.0, abs(lumos))
    wrapped, lumos, plain = one_client_losses(off, honest)  # an honest device: LUMOS's objective, boost 1
    assert abs(wrapped - lumos) < 1e-6 * max(1.0, abs(lumos)) and lumos > plain + 1e-3


def test_the_fast_engine_trains_attackers_without_auxiliary_terms_and_leaves_honest_updates_alone():
    def records(task):
        engine = FastSimulator(task, chunk_size=8)  # vmapped over clients: the choice must be tensor arithmetic
        result = engine.train_round(1, list(range(task.num_clients)), task.initial_shared(), ClientConfig(lr=0.5),
                                    want_records=True)
        assert not result.failures
        return {r.client_id: r.tensors for r in result.records}

    off, on = poisoned_lumos(auxiliary=False), poisoned_lumos(auxiliary=True)
    a, b = records(off), records(on)
    for client in a:
        same = all(torch.allclose(a[client][k], b[client][k], rtol=1e-4, atol=1e-6) for k in a[client])
        assert same == (client not in off.malicious)
