"""PyKEEN baselines on the tiny ReDial folder: triples from the training PKG only, centralized and federated."""

from __future__ import annotations

import pytest
import torch

from ffmrec.data.redial_examples import RedialExamplesConfig, load_redial_users
from ffmrec.pkg.kge import kg_triples, kge_rankings, preference_triples, train_kge, train_kge_federated


@pytest.fixture
def tiny_users(tiny_redial):
    return load_redial_users(tiny_redial, RedialExamplesConfig())


def test_triples_use_the_pkg_at_the_training_cutoff(tiny_users):
    catalog, users = tiny_users
    triples = preference_triples(users)
    assert ("user:100", "liked", "movie:2") in triples
    assert not any(t[2] in ("movie:6", "movie:7") and t[0] == "user:100" for t in triples)  # validation/test turns
    assert ("movie:1", "director", "person:Dee One") in kg_triples(catalog)


@pytest.mark.parametrize("name", ["TransE", "RotatE", "DistMult"])
def test_centralized_rankings(tiny_users, name):
    torch.set_num_threads(1)
    catalog, users = tiny_users
    model, factory = train_kge(name, preference_triples(users) + kg_triples(catalog), dim=8, epochs=1, seed=0)
    ranks = kge_rankings(model, factory, users, catalog)
    known = {catalog.index[m] for m in users[0].history.snapshot(users[0].train_cutoff).relations}
    assert len(ranks[0]) == len(catalog) - len(known) and not known & set(ranks[0])


def test_federated_keeps_user_rows_on_their_devices(tiny_users):
    torch.set_num_threads(1)
    catalog, users = tiny_users
    start, factory = train_kge_federated("TransE", users, catalog, rounds=0, dim=8, seed=0)
    before = start.entity_representations[0](indices=None).detach().clone()
    fed, fed_factory = train_kge_federated("TransE", users, catalog, rounds=1, clients_per_round=1, dim=8, seed=0)
    after = fed.entity_representations[0](indices=None).detach()
    assert fed_factory.entity_to_id == factory.entity_to_id  # ids from sorted labels: deterministic
    users_rows = [i for label, i in factory.entity_to_id.items() if label.startswith("user:")]
    moved = [i for i in users_rows if not torch.allclose(before[i], after[i])]
    assert len(moved) <= 1  # only the one sampled client's own user row may move
    assert not torch.allclose(before, after)
    assert len(kge_rankings(fed, fed_factory, users, catalog)[0]) > 0
