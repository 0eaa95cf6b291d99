"""PyKEEN baselines on the tiny ReDial folder: triples from the training PKG only, centralized and federated."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ffmrec.data.redial_examples import RedialExamplesConfig, load_redial_users
from ffmrec.pkg.kge import (
    CONFIGS,
    FederatedKGEConfig,
    KGEConfig,
    fede_average,
    kg_triples,
    kge_rankings,
    preference_triples,
    train_kge,
    train_kge_federated,
)


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
def test_centralized_rankings_cover_the_whole_catalogue(tiny_users, name):
    """Every movie is ranked once, known ones included: the task's exclude_known rule removes those at query time
    (a top 10 cut here, before that rule, left fewer than 10 recommendations once a later turn's PKG grew)."""
    torch.set_num_threads(1)
    catalog, users = tiny_users
    config = KGEConfig(dim=8, epochs=1, loss=CONFIGS[name].loss, loss_kwargs=CONFIGS[name].loss_kwargs)
    model, factory = train_kge(name, preference_triples(users) + kg_triples(catalog), config, seed=0)
    ranks = kge_rankings(model, factory, users, catalog)
    assert all(sorted(r) == list(range(len(catalog))) for r in ranks.values())


def test_rankings_put_the_most_plausible_tail_first(tiny_users):
    """TransE with hand-set embeddings: score -|u + liked - m|_1, so the movie nearest u + liked ranks first; a
    movie absent from the triples comes last, in catalogue order."""
    catalog, users = tiny_users
    triples = [t for t in preference_triples(users) + kg_triples(catalog) if t[2] != "movie:8" and t[0] != "movie:8"]
    model, factory = train_kge("TransE", triples, KGEConfig(dim=1, epochs=0), seed=0)
    entity = model.entity_representations[0]._embeddings.weight
    relation = model.relation_representations[0]._embeddings.weight
    with torch.no_grad():
        entity.zero_()
        relation.zero_()
        relation[factory.relation_to_id["liked"]] = 0.5
        for movie, x in {"3": 0.5, "5": 0.4, "1": 0.9, "2": -1.0}.items():  # distance to 0.5: 0, 0.1, 0.4, 1.5
            entity[factory.entity_to_id[f"movie:{movie}"]] = x
    ranks = kge_rankings(model, factory, users, catalog)
    first = [catalog.ids[i] for i in ranks[next(c for c, u in enumerate(users) if u.user_id == 100)]]
    assert first[:3] == ["3", "5", "1"] and first[-2:] == ["2", "8"]  # the others at distance 0.5 between


def test_fede_average_weighs_each_row_by_the_participants_holding_it():
    start = {"ent": torch.tensor([[0.0], [0.0], [7.0]]), "rel": torch.tensor([[1.0]]), "step": torch.tensor(3)}
    a = {"ent": torch.tensor([[2.0], [5.0], [9.0]]), "rel": torch.tensor([[3.0]]), "step": torch.tensor(4)}
    b = {"ent": torch.tensor([[4.0], [6.0], [9.0]]), "rel": torch.tensor([[5.0]]), "step": torch.tensor(4)}
    merged = fede_average(start, [(a, torch.tensor([1.0, 1.0, 0.0])), (b, torch.tensor([1.0, 0.0, 0.0]))], 3)
    assert merged["ent"].tolist() == [[3.0], [5.0], [7.0]]  # both; a alone; nobody holds it: unchanged
    assert merged["rel"].tolist() == [[4.0]] and merged["step"].item() == 3


def test_federated_moves_only_the_sampled_clients_user_row(tiny_users):
    torch.set_num_threads(1)
    catalog, users = tiny_users
    config = KGEConfig(dim=8)
    untrained = FederatedKGEConfig(rounds=0, user_refit_epochs=0)
    start, factory = train_kge_federated("TransE", users, catalog, untrained, config, seed=0)
    before = start.entity_representations[0](indices=None).detach().clone()
    one = FederatedKGEConfig(rounds=1, clients_per_round=1, local_epochs=2, user_refit_epochs=0)
    fed, fed_factory = train_kge_federated("TransE", users, catalog, one, config, seed=0)
    after = fed.entity_representations[0](indices=None).detach()
    assert fed_factory.entity_to_id == factory.entity_to_id  # ids from sorted labels: deterministic
    users_rows = [i for label, i in factory.entity_to_id.items() if label.startswith("user:")]
    moved = [i for i in users_rows if not torch.allclose(before[i], after[i])]
    assert len(moved) == 1  # the one sampled client's own user row, no other
    assert not torch.allclose(before, after)
    assert len(kge_rankings(fed, fed_factory, users, catalog)[0]) == len(catalog)


def test_user_refit_changes_every_user_row_and_nothing_else(tiny_users):
    torch.set_num_threads(1)
    catalog, users = tiny_users
    config = KGEConfig(dim=8)
    one = FederatedKGEConfig(rounds=1, clients_per_round=1, local_epochs=2, user_refit_epochs=0)
    plain, factory = train_kge_federated("TransE", users, catalog, one, config, seed=0)
    refit, _ = train_kge_federated("TransE", users, catalog, replace(one, user_refit_epochs=2), config, seed=0)
    before = plain.entity_representations[0](indices=None).detach()
    after = refit.entity_representations[0](indices=None).detach()
    holders = {factory.entity_to_id[f"user:{u.user_id}"] for u in users
               if u.history.snapshot(u.train_cutoff).relations}
    assert holders  # the tiny data has users with a PKG at their cutoff
    for label, i in factory.entity_to_id.items():
        if i in holders:  # each device's own row, refit to the final model
            assert not torch.allclose(before[i], after[i]), label
        else:  # movies, attributes and users without triples: the federated model's rows, untouched
            assert torch.equal(before[i], after[i]), label
    assert torch.equal(plain.relation_representations[0](indices=None), refit.relation_representations[0](indices=None))


def test_federated_participants_start_from_the_global_model(tiny_users):
    # with a zero learning rate a participant's training changes nothing, so a round must return its start; PyKEEN's
    # loop re-initializes the weights unless told otherwise, which this catches (every held row would be redrawn)
    torch.set_num_threads(1)
    catalog, users = tiny_users
    config = KGEConfig(dim=8, lr=0.0)
    untrained = FederatedKGEConfig(rounds=0, user_refit_epochs=0)
    start, _ = train_kge_federated("TransE", users, catalog, untrained, config, seed=0)
    one, _ = train_kge_federated("TransE", users, catalog, FederatedKGEConfig(rounds=1, clients_per_round=2,
                                                                             local_epochs=1), config, seed=0)
    for k, v in start.state_dict().items():
        assert torch.allclose(v, one.state_dict()[k], atol=1e-6), k
