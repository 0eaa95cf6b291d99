"""The fast simulator runs the same client update as a per-client loop (which is what a Flower node in per-user mode
runs), with the same per-client randomness, on the fused and on the vectorised path."""

import numpy as np
import pytest
import torch

from ffmrec.federated.aggregation import WeightedSum
from ffmrec.federated.client import ClientConfig, local_update
from ffmrec.federated.engines.fast import FastSimulator
from ffmrec.federated.server import aggregate
from ffmrec.federated.strategies import FedAdam, FedAvg


def per_client_reference(task, clients, shared, cfg, server_round=1):
    """One client at a time, no batching: ``(deltas, weights, personal rows)``."""
    deltas, weights, personal = {}, {}, {}
    for c in clients:
        if task.weight(c) == 0:
            continue
        d, own, _ = local_update(task.objective, shared, task.initial_personal(c), task.prepare(c, server_round), cfg)
        deltas[c], weights[c], personal[c] = d, task.weight(c), own
    return deltas, weights, personal


def round_mean(sim, clients, shared, cfg, want_records=False, server_round=1):
    result = sim.train_round(server_round, clients, shared, cfg, want_records)
    return aggregate(result, FedAvg())[0], result


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("model", [dict(), dict(dropout=0.3), dict(loss="sampled_ce", dropout=0.2),
                                   dict(loss="bce")])
def test_round_mean_matches_per_client_loop(make_task, fused, model):
    task = make_task(**model)
    shared = task.initial_shared()
    clients = list(range(0, 30, 2))
    cfg = ClientConfig(lr=0.5, personal_lr=0.1)
    deltas, weights, personal = per_client_reference(task, clients, shared, cfg)
    acc = WeightedSum()
    for c in sorted(deltas):
        acc.add(deltas[c], weights[c])
    expected = acc.mean()
    sim = FastSimulator(task, chunk_size=4, fused=fused)
    mean, result = round_mean(sim, clients, shared, cfg)
    assert sum(p.count for p in result.partials) == len(deltas)
    for k in shared:
        torch.testing.assert_close(mean[k], expected[k], atol=1e-6, rtol=1e-5)
    store = sim.cohort.store
    for c, own in personal.items():  # personal rows updated on the simulated device, nowhere else
        torch.testing.assert_close(store.rows([c])["user_emb.weight"][0], own["user_emb.weight"], atol=1e-6,
                                   rtol=1e-5)
    for c in (c for c in range(30) if c not in clients):
        torch.testing.assert_close(store.rows([c])["user_emb.weight"][0], task.initial_personal(c)["user_emb.weight"])


def test_fused_path_is_taken_only_when_the_task_declares_a_position_mean(make_task):
    task = make_task()
    sim = FastSimulator(task)
    assert sim.cohort.can_fuse(ClientConfig(), want_records=False)
    assert not sim.cohort.can_fuse(ClientConfig(), want_records=True)  # an observer or strategy needs records
    assert not sim.cohort.can_fuse(ClientConfig(local_steps=2), want_records=False)

    other = make_task()
    other.fusable = False  # e.g. a loss with an InfoNCE term or in-batch negatives
    calls = []
    sim = FastSimulator(other)
    sim.cohort._fused = lambda *a: calls.append(a)  # noqa: SLF001 - would record a fused call
    result = sim.train_round(1, list(range(8)), other.initial_shared(), ClientConfig(), want_records=False)
    assert not calls and sum(p.count for p in result.partials) == sum(other.weight(c) > 0 for c in range(8))


@pytest.mark.parametrize("cfg", [
    ClientConfig(lr=0.3, local_steps=3),
    ClientConfig(lr=0.01, local_steps=2, optimizer="adam", proximal_mu=0.5),
])
def test_per_client_records_match_for_multi_step_training(make_task, cfg):
    task = make_task(dropout=0.2)
    shared = task.initial_shared()
    clients = [1, 4, 7, 8, 20]
    deltas, weights, _ = per_client_reference(task, clients, shared, cfg)
    result = FastSimulator(task, chunk_size=3).train_round(1, clients, shared, cfg, want_records=True)
    by_client = {r.client_id: r for r in result.records}
    assert set(by_client) == set(deltas)
    # The key part of the qkv bias has an exactly-zero true gradient (softmax ignores a shift shared by all keys); Adam
    # turns the rounding noise there into +-lr steps whose sign depends on summation order, so it is left out.
    names = [k for k in shared if not (cfg.optimizer == "adam" and k.endswith("qkv.bias"))]
    for c, d in deltas.items():
        assert by_client[c].weight == weights[c]
        for k in names:
            torch.testing.assert_close(by_client[c].tensors[k], d[k], atol=1e-5, rtol=1e-4)


def test_fedadam_round_equals_centralized_adam_step(make_task):
    """One SGD step per client + weighted mean + FedAdam = torch.optim.Adam on the pooled loss of those users."""
    task = make_task(user_embedding=False)
    shared = task.initial_shared()
    clients = list(range(12))
    mean, _ = round_mean(FastSimulator(task, chunk_size=5), clients, shared, ClientConfig(lr=1.0))
    new = FedAdam(server_lr=0.01).apply(shared, mean)

    from ffmrec.data.batching import next_item_batch
    model = task.build_model(1)
    model.load_state_dict(shared)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = next_item_batch([task.histories[c] for c in clients], np.array(clients), task.max_len)
    model.calculate_loss(batch).backward()
    opt.step()
    for k, p in model.named_parameters():
        if k.endswith("qkv.bias"):  # zero true gradient on the key bias: Adam amplifies rounding noise (see above)
            continue
        torch.testing.assert_close(new[k], p.detach(), atol=1e-6, rtol=1e-5)


def test_clients_draw_their_own_noise_and_training_is_reproducible(make_task):
    task = make_task(dropout=0.3)
    c, other = [u for u in range(task.num_clients) if task.weight(u) > 0][:2]
    a, b = task.prepare(c, 5), task.prepare(c, 5)
    assert all(torch.equal(a["noise"][k], b["noise"][k]) for k in a["noise"])
    assert not torch.equal(task.prepare(other, 5)["noise"]["emb"][-1], a["noise"]["emb"][-1])
    assert not torch.equal(task.prepare(c, 6)["noise"]["emb"], a["noise"]["emb"])
    shared = task.initial_shared()
    m1, _ = round_mean(FastSimulator(task, chunk_size=4, fused=False), list(range(10)), shared, ClientConfig())
    m2, _ = round_mean(FastSimulator(task, chunk_size=7, fused=True), list(range(10)), shared, ClientConfig())
    for k in shared:  # chunking and the fused path change nothing: the noise belongs to the client
        torch.testing.assert_close(m1[k], m2[k], atol=1e-6, rtol=1e-5)


def test_evaluation_uses_personal_rows(task):
    shared = task.initial_shared()
    sim = FastSimulator(task)
    users = np.arange(10)
    ranks = sim.evaluate("valid", shared, users)["rank"]
    one_by_one = [int(task.evaluate("valid", shared, {k: v.unsqueeze(0) for k, v in task.initial_personal(c).items()},
                                    np.array([c]))["rank"][0]) for c in users]
    assert ranks.tolist() == one_by_one
