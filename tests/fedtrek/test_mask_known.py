"""``task.mask_known``: KTO trains the policy that recommends, the catalogue softmax without the movies already in the
user's PKG before the turn (hand-computed log-probabilities and KL; the tiny ReDial data's known movies)."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ffmrec.data.redial_examples import load_redial_users
from ffmrec.errors import ConfigError
from ffmrec.fm.catalog_policy import CatalogPolicy, CatalogPolicyConfig
from ffmrec.fm.causal_lm import set_adapter_state
from ffmrec.fm.kto import kto_loss
from ffmrec.tasks.kto import KTOTask, KTOTaskConfig


def test_excluded_movies_leave_the_softmax_hand_computed():
    torch.set_num_threads(1)
    policy = CatalogPolicy(CatalogPolicyConfig(temperature=0.5), ["a", "b", "c"], seed=0, max_tokens=64)
    policy.movie_embeddings = torch.eye(3, policy.movie_embeddings.shape[1])
    x = torch.eye(1, policy.movie_embeddings.shape[1]).repeat(2, 1)  # cosines 1, 0, 0 -> logits 2, 0, 0
    logp = policy.log_probs_of(x, exclude=[[1], []])
    z = math.exp(2) + 1  # row 0: softmax over (e^2, 1) for movies 0 and 2
    assert logp[0, 0].item() == pytest.approx(2 - math.log(z), rel=1e-5) and logp[0, 1].item() == -math.inf
    assert logp[0, 2].item() == pytest.approx(-math.log(z), rel=1e-5)
    assert logp[1].tolist() == pytest.approx(policy.log_probs_of(x[1:])[0].tolist(), rel=1e-6)  # nothing excluded
    # exact KL over the movies both keep: p = (3/4, -, 1/4) against q = (1/2, -, 1/2)
    p = torch.log(torch.tensor([[0.75, 0.0, 0.25]]))
    q = torch.log(torch.tensor([[0.5, 0.0, 0.5]]))
    assert policy.kl(p, q).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)
    assert policy.kl(p, p).item() == 0.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pkg"))
    from redial_tiny import write_tiny_redial

    torch.set_num_threads(1)
    folder = write_tiny_redial(tmp_path_factory.mktemp("redial") / "redial")
    config = KTOTaskConfig(max_tokens=128, pkg_tokens=48, exclude_known=True, mask_known=True)
    catalog, users = load_redial_users(folder, config)
    policy = CatalogPolicy(CatalogPolicyConfig(), [catalog.text(m) for m in catalog.ids], seed=0, max_tokens=128)
    return catalog, users, policy, config


def test_mask_known_needs_exclude_known():
    with pytest.raises(ConfigError, match="exclude_known"):
        KTOTaskConfig(mask_known=True)


def test_kto_objective_runs_over_the_movies_not_yet_in_the_pkg(tiny):
    catalog, users, policy, config = tiny
    task = KTOTask(users, catalog, policy, config, seed=0)
    client = next(c for c, u in enumerate(users) if u.user_id == 100)
    train = users[client].train
    # user 100 trains on Beta (turn 1, PKG: Alpha), Alpha+Gamma (undesirable, turn 3, PKG: Alpha, Beta),
    # Epsilon (turn 5, PKG: Alpha, Beta, Gamma)
    assert [(e.movies, e.desirable) for e in train] == [(("2",), True), (("1", "3"), False), (("5",), True)]
    idx = catalog.index
    known = [[idx["1"]], [idx["1"], idx["2"]], [idx["1"], idx["2"], idx["3"]]]
    assert [sorted(task._known(client, e)) for e in train] == [sorted(k) for k in known]
    assert task.train_indices(client) == [0, 1, 2]  # the negative has a new movie, Gamma: it stays
    prompts = [task.prompt(client, "train", i, e) for i, e in enumerate(train)]
    keys = [(client, "train", i) for i in range(len(train))]
    g = torch.Generator().manual_seed(0)  # adapters away from the reference, so that rewards and KL are not 0
    set_adapter_state(policy.model, {**task._frozen, **{k: 0.05 * torch.randn(v.shape, generator=g)
                                                         for k, v in task.initial_shared().items()}})
    with torch.no_grad():
        loss, stats = task.objective_of(prompts, train, keys)
        logp = policy.log_probs(prompts, exclude=known)
        ref = policy.log_probs(prompts, reference=True, exclude=known)
        assert torch.isneginf(logp[1, known[1]]).all() and torch.allclose(logp.exp().sum(-1), torch.ones(3))
        completions = [[idx["2"]], [idx["3"]], [idx["5"]]]  # Alpha, already liked, leaves the negative's completion
        kl = (logp.exp() * (logp - ref).nan_to_num(0.0)).sum(-1).mean()
        expected, _ = kto_loss(policy.completion_logps(logp, completions), policy.completion_logps(ref, completions),
                               torch.tensor([True, False, True]), kl, config.beta, config.desirable_weight,
                               config.undesirable_weight)
        unmasked, _ = KTOTask(users, catalog, policy, replace(config, mask_known=False), 0).objective_of(
            prompts, train, keys)
    assert stats["kl"] > 0 and float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(unmasked) != pytest.approx(float(loss), rel=1e-3)  # the mask changes the objective


def test_mask_known_drops_negatives_of_known_movies_only(tiny):
    catalog, users, policy, config = tiny
    client = next(c for c, u in enumerate(users) if u.user_id == 100)
    user = users[client]
    # the recommender repeating only Alpha, already liked at turn 0: nothing left to push down under the mask
    known = replace(user, train=[user.train[0], replace(user.train[1], movies=("1",)), user.train[2]])
    changed = [known if c == client else u for c, u in enumerate(users)]
    task = KTOTask(changed, catalog, policy, replace(config, known_negatives=True), 0)
    assert task.train_indices(client) == [0, 2] and task.weight(client) == 2
    train = known.train
    prompts = [task.prompt(client, "train", i, e) for i, e in enumerate(train)]
    with torch.no_grad():  # given anyway, the known-only negative does not count: the mean runs over the other two
        loss, stats = task.objective_of(prompts, train, [(client, "train", i) for i in range(3)])
        alone, _ = task.objective_of([prompts[0], prompts[2]], [train[0], train[2]],
                                     [(client, "train", 0), (client, "train", 2)])
    assert float(loss) == pytest.approx(float(alone), rel=1e-6) and stats["rewards/undesirable"] == 0.0


def test_a_client_left_without_training_points_sits_out_the_round(tiny):
    """Under ``mask_known`` a seeker whose every training point is a known-only negative has weight 0: the engine
    trains the round's other clients and sends nothing for it (no record, no failure); a round of it alone is skipped
    by the driver's ``min_clients``, not failed."""
    from ffmrec.federated.client import ClientConfig
    from ffmrec.federated.engines.fast import FastSimulator

    catalog, users, policy, config = tiny
    client = next(c for c, u in enumerate(users) if u.user_id == 100)
    user = users[client]
    # every training point: the recommender repeating Alpha, liked before turn 1, as an undesirable completion
    only_known = [replace(e, movies=("1",), desirable=False) for e in user.train[1:]]
    changed = [replace(user, train=only_known) if c == client else u for c, u in enumerate(users)]
    task = KTOTask(changed, catalog, policy, replace(config, known_negatives=True), 0)
    assert task.train_indices(client) == [] and task.weight(client) == 0
    other = next(c for c in range(task.num_clients) if c != client and task.weight(c) > 0)
    engine = FastSimulator(task, chunk_size=4)
    cfg = ClientConfig(local_steps=1, lr=1e-3, optimizer="adam")
    result = engine.train_round(1, [client, other], task.initial_shared(), cfg, True)
    assert [r.client_id for r in result.records] == [other] and result.failures == []
    assert result.records[0].weight == task.weight(other)
    alone = engine.train_round(2, [client], task.initial_shared(), cfg, True)
    assert alone.records == [] and alone.partials == [] and alone.failures == []
