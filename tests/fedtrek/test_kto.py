"""KTO (hand-computed), the catalog policy (LoRA trains, the base and the reference stay) and the fedtrek client task
(a corrupted PKG fails its client alone)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ffmrec.data.redial_examples import load_redial_users
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.cohort import Cohort
from ffmrec.fm.catalog_policy import CatalogPolicy, CatalogPolicyConfig
from ffmrec.fm.causal_lm import get_adapter_state
from ffmrec.fm.kto import kto_loss
from ffmrec.tasks.kto import KTOTask, KTOTaskConfig, choose_set_size


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_kto_loss_hand_computed():
    policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    reference = torch.tensor([-1.5, -1.0])
    loss, stats = kto_loss(policy, reference, torch.tensor([True, False]), torch.tensor(0.2), beta=0.5,
                           desirable_weight=4.0, undesirable_weight=3.0)
    # rewards 0.5 and -1.0, z0 = 0.2
    expected = (4 * (1 - sigmoid(0.5 * (0.5 - 0.2))) + 3 * (1 - sigmoid(0.5 * (0.2 + 1.0)))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert stats["rewards/desirable"] == pytest.approx(0.5) and stats["rewards/undesirable"] == pytest.approx(-1.0)
    loss.backward()
    assert policy.grad[0] < 0 < policy.grad[1]  # raise the desirable completion, lower the undesirable one


def test_kto_reference_point_is_clamped_and_detached():
    kl = torch.tensor(-3.0, requires_grad=True)
    policy = torch.tensor([0.0], requires_grad=True)
    loss, stats = kto_loss(policy, torch.tensor([0.0]), torch.tensor([True]), kl, beta=1.0)
    assert float(loss) == pytest.approx(0.5) and stats["kl"] == 0.0
    loss.backward()
    assert kl.grad is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pkg"))
    from redial_tiny import write_tiny_redial

    torch.set_num_threads(1)
    folder = write_tiny_redial(tmp_path_factory.mktemp("redial") / "redial")
    config = KTOTaskConfig(max_tokens=128, pkg_tokens=48)
    catalog, users = load_redial_users(folder, config)
    policy = CatalogPolicy(CatalogPolicyConfig(), [catalog.text(m) for m in catalog.ids], seed=0, max_tokens=128)
    return catalog, users, policy, config


def test_policy_starts_at_the_reference_and_only_adapters_train(tiny):
    catalog, users, policy, config = tiny
    task = KTOTask(users, catalog, policy, config, seed=0)
    prompts = ["User: I like comedies like Alpha (2001)"]
    with torch.no_grad():
        assert torch.allclose(policy.log_probs(prompts), policy.log_probs(prompts, reference=True), atol=1e-6)
    base = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_" not in n}
    shared = task.initial_shared()
    delta, personal, loss = task.train_stateful(0, 1, shared, {}, ClientConfig(local_steps=3, lr=0.01, optimizer="adam"))
    assert personal == {} and math.isfinite(loss)
    assert set(delta) == set(task.shared_names) and all("lora_" in n for n in delta)
    assert any(float(d.abs().max()) > 0 for n, d in delta.items() if "lora_B" in n)
    after = {n: p for n, p in policy.model.named_parameters() if "lora_" not in n}
    assert all(torch.equal(base[n], after[n]) for n in base)  # the base never moves
    with torch.no_grad():  # adapters disabled still gives the untouched base: the KTO reference
        reference = policy.log_probs(prompts, reference=True)
        fresh = CatalogPolicy(CatalogPolicyConfig(), [catalog.text(m) for m in catalog.ids], 0, 128)
        assert torch.allclose(reference, fresh.log_probs(prompts), atol=1e-5)


def test_kto_step_raises_the_desirable_completion(tiny):
    catalog, users, policy, config = tiny
    task = KTOTask(users, catalog, policy, config, seed=0)
    shared = task.initial_shared()
    client = next(c for c, u in enumerate(users) if u.user_id == 100)
    train = users[client].train
    prompts = [task.prompt(client, "train", i, e) for i, e in enumerate(train)]
    from ffmrec.fm.causal_lm import set_adapter_state

    def rewards(state):
        set_adapter_state(policy.model, {**task._frozen, **state})
        with torch.no_grad():
            logp, ref = policy.log_probs(prompts), policy.log_probs(prompts, reference=True)
        idx = [[catalog.index[m] for m in e.movies] for e in train]
        return (policy.completion_logps(logp, idx) - policy.completion_logps(ref, idx)).tolist()

    delta, _, _ = task.train_stateful(client, 1, shared, {}, ClientConfig(local_steps=5, lr=0.02, optimizer="adam"))
    after = rewards({k: shared[k] + delta[k] for k in shared})
    for e, r in zip(train, after):
        assert (r > 0) == e.desirable, (e, r)


def test_ffa_lora_shares_only_b(tiny):
    catalog, users, _, config = tiny
    policy = CatalogPolicy(CatalogPolicyConfig(freeze_a=True), [catalog.text(m) for m in catalog.ids], 0, 128)
    task = KTOTask(users, catalog, policy, config, seed=0)
    assert task.shared_names and all("lora_B" in n for n in task.shared_names)
    a_before = {k: v for k, v in get_adapter_state(policy.model).items() if "lora_A" in k}
    delta, _, _ = task.train_stateful(0, 1, task.initial_shared(), {}, ClientConfig(lr=0.01, optimizer="adam"))
    a_after = {k: v for k, v in get_adapter_state(policy.model).items() if "lora_A" in k}
    assert all(torch.equal(a_before[k], a_after[k]) for k in a_before)


def test_corrupted_pkg_fails_its_client_alone(tiny):
    catalog, users, policy, config = tiny
    task = KTOTask(users, catalog, policy, config, seed=0)
    bad = next(c for c, u in enumerate(users) if u.user_id == 200)
    task.pkg_documents[bad] = task.pkg_documents[bad][:-7]  # a truncated JSON-LD file on that device
    cohort = Cohort(task)
    records, _, failures = cohort.train(1, [0, 1], task.initial_shared(), ClientConfig(lr=0.01), want_records=True)
    assert [r.client_id for r in records] == [1 - bad]
    assert len(failures) == 1 and failures[0][0] == bad and "PKG of user 200" in failures[0][1]
    assert "not valid JSON-LD" in failures[0][1]
    # in evaluation its queries would score 0 and stay in the denominators; user 100 still gets scored
    cols = task.evaluate("test", task.initial_shared(), {}, np.array([0, 1]))
    assert cols["queries"].sum() == 1 and 0 <= task.summarize(cols)["Hits@10"] <= 1


def test_set_size_is_chosen_on_validation_columns(tiny):
    catalog, users, policy, config = tiny
    task = KTOTask(users, catalog, policy, config, seed=0)
    cols = task.failed_columns(2)
    cols["queries"][:] = [1, 1]
    cols["relevant"][:] = [2, 2]
    for n in range(1, 11):  # hits: 0 at size 1, 2 at size >= 2 (per client) -> F1 is best at size 2
        cols[f"hits@{n}"][:] = 0 if n == 1 else 2
    assert choose_set_size(task, cols) == 2
    assert task.summarize(cols, 2)["F1"] == pytest.approx(1.0)
