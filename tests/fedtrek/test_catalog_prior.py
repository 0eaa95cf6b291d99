"""The catalog policy's popularity prior and movie adapter (hand-computed log-probabilities, the reference untouched),
and baselines scored with the same exclusion of known movies as the policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ffmrec.data.redial_examples import load_redial_users
from ffmrec.errors import ConfigError
from ffmrec.federated.client import ClientConfig
from ffmrec.fm.catalog_policy import CatalogPolicy, CatalogPolicyConfig, log_prior
from ffmrec.tasks.kto import KTOTask, KTOTaskConfig, desirable_counts, popularity_ranking


def test_log_prior_hand_computed():
    assert log_prior(torch.tensor([0, 1, 3]), 2.0).tolist() == pytest.approx([0.0, 2 * math.log(2), 2 * math.log(4)])
    assert log_prior(torch.tensor([5, 7]), 0.0).tolist() == [0.0, 0.0]


def test_prior_adds_weighted_log_counts_to_policy_and_reference():
    torch.set_num_threads(1)
    config = CatalogPolicyConfig(prior_weight=1.0, temperature=0.5)
    policy = CatalogPolicy(config, ["a", "b", "c"], seed=0, max_tokens=64, prior_counts=[0, 1, 3])
    policy.movie_embeddings = torch.eye(3, policy.movie_embeddings.shape[1])  # cosines 1, 0, 0 for the first axis
    x = torch.eye(1, policy.movie_embeddings.shape[1])
    # logits 1/0.5 + log 1, 0 + log 2, 0 + log 4 -> softmax over (e^2, 2, 4)
    z = math.exp(2) + 6
    expected = [2 - math.log(z), math.log(2 / z), math.log(4 / z)]
    assert policy.log_probs_of(x)[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert policy.log_probs_of(x, reference=True)[0].tolist() == pytest.approx(expected, rel=1e-5)
    plain = CatalogPolicy(CatalogPolicyConfig(temperature=0.5), ["a", "b", "c"], seed=0, max_tokens=64)
    plain.movie_embeddings = policy.movie_embeddings
    z0 = math.exp(2) + 2  # no prior: softmax over (e^2, 1, 1)
    assert plain.log_probs_of(x)[0].tolist() == pytest.approx([2 - math.log(z0), -math.log(z0), -math.log(z0)], rel=1e-5)


def test_prior_config_errors():
    with pytest.raises(ConfigError, match="prior_weight"):
        CatalogPolicyConfig(prior_weight=-1.0)
    with pytest.raises(ConfigError, match="one training count per movie"):
        CatalogPolicy(CatalogPolicyConfig(prior_weight=1.0), ["a", "b"], seed=0, max_tokens=64, prior_counts=[1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pkg"))
    from redial_tiny import write_tiny_redial

    torch.set_num_threads(1)
    folder = write_tiny_redial(tmp_path_factory.mktemp("redial") / "redial")
    config = KTOTaskConfig(max_tokens=128, pkg_tokens=48, exclude_known=True)
    catalog, users = load_redial_users(folder, config)
    return catalog, users, config


def test_desirable_counts_of_the_tiny_data(tiny):
    catalog, users, _ = tiny
    # training desirable points: user 100 -> Beta (2), Epsilon (5); user 200 (no test queries) -> Alpha (1)
    counts = desirable_counts(users, catalog)
    assert {m: int(counts[catalog.index[m]]) for m in catalog.ids if counts[catalog.index[m]]} == {"1": 1, "2": 1, "5": 1}
    assert popularity_ranking(users, catalog)[:3] == sorted(catalog.index[m] for m in ("1", "2", "5"))


def test_movie_adapter_trains_and_travels_while_the_reference_stays(tiny):
    catalog, users, config = tiny
    texts = [catalog.text(m) for m in catalog.ids]
    policy = CatalogPolicy(CatalogPolicyConfig(movie_adapter=True, prior_weight=0.5), texts, seed=0, max_tokens=128,
                           prior_counts=desirable_counts(users, catalog).tolist())
    task = KTOTask(users, catalog, policy, config, seed=0)
    assert any("movie_projection" in n and "lora_A" in n for n in task.shared_names)
    frozen = policy.movie_embeddings.clone()
    prompts = ["User: I like comedies like Alpha (2001)"]
    with torch.no_grad():  # B starts at zero: the projection is the identity, the policy starts at the reference
        assert torch.allclose(policy.movies(), frozen, atol=1e-6)
        assert torch.allclose(policy.log_probs(prompts), policy.log_probs(prompts, reference=True), atol=1e-5)
    client = next(c for c, u in enumerate(users) if u.user_id == 100)
    delta, _, _ = task.train_stateful(client, 1, task.initial_shared(), {}, ClientConfig(local_steps=3, lr=0.02,
                                                                                          optimizer="adam"))
    assert any(float(d.abs().max()) > 0 for n, d in delta.items() if "movie_projection" in n and "lora_B" in n)
    with torch.no_grad():
        assert not torch.allclose(policy.movies(), frozen, atol=1e-4)  # the adapted movie embeddings moved
        assert torch.equal(policy.movies(reference=True), frozen)  # the reference's never do
        assert torch.allclose(policy.movies().norm(dim=-1), torch.ones(len(frozen)), atol=1e-5)


def test_baselines_skip_known_movies_like_the_policy(tiny):
    catalog, users, config = tiny
    policy = CatalogPolicy(CatalogPolicyConfig(), [catalog.text(m) for m in catalog.ids], seed=0, max_tokens=128)
    client = next(c for c, u in enumerate(users) if u.user_id == 100)
    # user 100's validation query recommends Zeta (6) at turn 7; its PKG then holds Alpha, Beta, Gamma, Epsilon
    ranking = [catalog.index[m] for m in ("1", "2", "3", "4", "5", "6", "7", "8")]
    for exclude, rank in ((False, 6), (True, 2)):  # 1 2 3 4 5 [6] vs 4 [6] 7 8
        task = KTOTask(users, catalog, policy, KTOTaskConfig(max_tokens=128, pkg_tokens=48, exclude_known=exclude), 0)
        cols = task.ranker_columns("valid", np.array([client]), ranking)
        assert task.summarize(cols)["MRR"] == pytest.approx(1 / rank)


def test_centering_subtracts_the_mean_training_prompt_embedding(tiny):
    from ffmrec.fm.catalog_policy import centered
    from ffmrec.tasks.kto import center_prompts

    x = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    c = torch.tensor([0.6, 0.0])  # (0.4, 0) -> (1, 0); (0, 0.8) -> (0, 1)
    assert centered(x, c).flatten().tolist() == pytest.approx([1.0, 0.0, 0.0, 1.0])
    assert torch.equal(centered(x, torch.zeros(2)), x)

    catalog, users, config = tiny
    policy = CatalogPolicy(CatalogPolicyConfig(center_prompts=8), [catalog.text(m) for m in catalog.ids], seed=0,
                           max_tokens=128)
    task = KTOTask(users, catalog, policy, config, seed=0, clients=np.zeros(0, dtype=np.int64))  # serves no client
    prompts = ["User: I like comedies like Alpha (2001)", "User: horror please"]
    raw = policy.reference_embeddings(prompts)
    center = center_prompts(task, 8, seed=0)  # all 4 training points of the tiny data (fewer than 8)
    task.pkg_documents = {c: u.history.to_jsonld() for c, u in enumerate(users)}  # (to render them here)
    train = [task.prompt(c, "train", i, e) for c, u in enumerate(users) for i, e in enumerate(u.train)]
    assert len(train) == 4
    policy.center = torch.zeros_like(center)
    assert torch.allclose(center, policy.reference_embeddings(train).mean(0), atol=1e-6)
    policy.center = center
    expected = torch.nn.functional.normalize(raw - center, dim=-1)
    assert torch.allclose(policy.reference_embeddings(prompts), expected, atol=1e-6)
    with torch.no_grad():  # the policy (adapters at their start) and the reference are centered alike
        assert torch.allclose(policy.log_probs(prompts), policy.log_probs(prompts, reference=True), atol=1e-5)


def test_known_negatives_can_be_left_out_of_training(tiny):
    from dataclasses import replace

    catalog, users, config = tiny
    client = next(c for c, u in enumerate(users) if u.user_id == 100)
    user = users[client]
    # user 100 trains on Beta (desirable, turn 1), Alpha+Gamma (undesirable, turn 3; Gamma is new), Epsilon (turn 5)
    assert [(e.movies, e.desirable) for e in user.train] == [(("2",), True), (("1", "3"), False), (("5",), True)]
    policy = CatalogPolicy(CatalogPolicyConfig(), [catalog.text(m) for m in catalog.ids], seed=0, max_tokens=128)
    for known_negatives in (True, False):  # a negative with a new movie always stays
        task = KTOTask(users, catalog, policy, replace(config, known_negatives=known_negatives), 0)
        assert task.train_indices(client) == [0, 1, 2]
    # the recommender repeating only Alpha, already liked at turn 0: a known negative
    known = replace(user, train=[user.train[0], replace(user.train[1], movies=("1",)), user.train[2]])
    changed = [known if c == client else u for c, u in enumerate(users)]
    kept = KTOTask(changed, catalog, policy, replace(config, known_negatives=True), 0)
    dropped = KTOTask(changed, catalog, policy, replace(config, known_negatives=False, examples_per_client=2), 0)
    assert kept.train_indices(client) == [0, 1, 2] and dropped.train_indices(client) == [0, 2]
    assert dropped.weight(client) == 2 and dropped.prepare(client, 1)["examples"].tolist() == [0, 2]
