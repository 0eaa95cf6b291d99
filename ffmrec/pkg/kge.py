"""Knowledge-graph-embedding baselines for PKG recommendation (PyKEEN): TransE (Bordes et al., NeurIPS 2013), RotatE
(Sun et al., ICLR 2019) and DistMult (Yang et al., ICLR 2015), trained on the users' preference triples plus the movie
KG, and scored on the same test queries as the policies.

Triples: ``(user:<id>, <relation>, movie:<id>)`` for each user's PKG as it was at its training cutoff (nothing from a
test turn or later), and ``(movie:<id>, genre|director|actor, genre:<g>|person:<name>)`` from the CFCRS movie KG.
Entity and relation ids come from PyKEEN's sorted labels (deterministic; movie labels are ReDial ids, never titles).
A query of user ``u`` ranks every movie ``m`` by the score of ``(user:u, liked, movie:m)``; movies already in the
user's training PKG are not recommended (the user stated them already).

Federated training (FedE-style, Chen et al., IJCKG 2021): each client trains on its own preference triples plus the
public movie KG; relation and movie/attribute embeddings are averaged across clients each round, user entities stay
local.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ffmrec.data.redial_examples import UserData
from ffmrec.data.redial_kg import MovieCatalog, movie_kg_triples

MODELS = ("TransE", "RotatE", "DistMult")


def preference_triples(users: Sequence[UserData]) -> list[tuple[str, str, str]]:
    """Each user's PKG at its training cutoff as ``(user:u, relation, movie:m)`` triples."""
    out = []
    for u in users:
        pkg = u.history.snapshot(u.train_cutoff)
        out += [(f"user:{u.user_id}", r, f"movie:{m}") for m, r in sorted(pkg.relations.items(), key=lambda t: int(t[0]))]
    return out


def kg_triples(catalog: MovieCatalog) -> list[tuple[str, str, str]]:
    return [(f"movie:{m}", r, a) for m, r, a in movie_kg_triples(catalog)]


def _model(name: str, factory, dim: int, seed: int):
    from pykeen.models import DistMult, RotatE, TransE

    cls = {"TransE": TransE, "RotatE": RotatE, "DistMult": DistMult}[name]
    return cls(triples_factory=factory, embedding_dim=dim, random_seed=seed)


def train_kge(name: str, triples: list[tuple[str, str, str]], dim: int = 64, epochs: int = 20, lr: float = 0.01,
              batch_size: int = 2048, seed: int = 0):
    """``(model, factory)`` of a PyKEEN model trained (sLCWA, Adam) on ``triples``."""
    from pykeen.training import SLCWATrainingLoop
    from pykeen.triples import TriplesFactory

    factory = TriplesFactory.from_labeled_triples(np.array(triples, dtype=str))
    model = _model(name, factory, dim, seed)
    loop = SLCWATrainingLoop(model=model, triples_factory=factory, optimizer=torch.optim.Adam(model.parameters(), lr=lr))
    loop.train(triples_factory=factory, num_epochs=epochs, batch_size=batch_size, use_tqdm=False, use_tqdm_batch=False)
    return model, factory


def train_kge_federated(name: str, users: Sequence[UserData], catalog: MovieCatalog, rounds: int = 10,
                        clients_per_round: int = 4, local_epochs: int = 1, dim: int = 64, lr: float = 0.01,
                        seed: int = 0):
    """FedE-style training (see the module docstring): one global PyKEEN model over all entities whose user rows
    each client alone updates; per round, ``clients_per_round`` clients (seeded) train ``local_epochs`` on their own
    preference triples plus the movie KG, and the server averages the non-user parameters."""
    from pykeen.training import SLCWATrainingLoop
    from pykeen.triples import TriplesFactory

    every = preference_triples(users) + kg_triples(catalog)
    factory = TriplesFactory.from_labeled_triples(np.array(every, dtype=str))
    model = _model(name, factory, dim, seed)
    user_rows = torch.tensor([i for label, i in factory.entity_to_id.items() if label.startswith("user:")])
    public = kg_triples(catalog)
    rng = np.random.default_rng((seed, 0xFE))
    with_data = [u for u in users if u.history.snapshot(u.train_cutoff).relations]
    for _ in range(rounds):
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        updates = []
        for j in rng.choice(len(with_data), min(clients_per_round, len(with_data)), replace=False):
            model.load_state_dict(start)
            own = factory.map_triples(np.array(preference_triples([with_data[j]]) + public, dtype=str))
            local = TriplesFactory(own, factory.entity_to_id, factory.relation_to_id)
            loop = SLCWATrainingLoop(model=model, triples_factory=local,
                                     optimizer=torch.optim.Adam(model.parameters(), lr=lr))
            loop.train(triples_factory=local, num_epochs=local_epochs, batch_size=2048, use_tqdm=False,
                       use_tqdm_batch=False)
            owner = factory.entity_to_id[f"user:{with_data[j].user_id}"]
            updates.append(({k: v.detach().clone() for k, v in model.state_dict().items()}, owner))
        merged = {}
        for k, v in start.items():
            if not torch.is_floating_point(v) and not torch.is_complex(v):
                merged[k] = v
                continue
            mean = torch.stack([u[k] for u, _ in updates]).mean(0)
            if v.dim() >= 1 and v.shape[0] == factory.num_entities:  # entity table: user rows stay on their device
                mean[user_rows] = v[user_rows]
                for u, owner in updates:  # only the owner moves its user row (others touched it as a negative)
                    mean[owner] = u[k][owner]
            merged[k] = mean
        model.load_state_dict(merged)
    return model, factory


@torch.no_grad()
def kge_rankings(model, factory, users: Sequence[UserData], catalog: MovieCatalog, k: int = 10) -> dict[int, list[int]]:
    """Per user index: the top ``k`` catalogue indices by the score of ``(user, liked, movie)`` (movies of the user's
    training PKG left out); users unknown to the KG get the movies in catalogue order (a miss, honestly scored)."""
    movie_rows = [(catalog.index[label[6:]], i) for label, i in factory.entity_to_id.items() if label.startswith("movie:")]
    cat_idx = torch.tensor([c for c, _ in movie_rows])
    ent_idx = torch.tensor([e for _, e in movie_rows])
    liked = factory.relation_to_id["liked"]
    out = {}
    for c, u in enumerate(users):
        label = f"user:{u.user_id}"
        known = {catalog.index[m] for m in u.history.snapshot(u.train_cutoff).relations}
        if label not in factory.entity_to_id:
            out[c] = [i for i in range(len(catalog)) if i not in known][:k]
            continue
        scores = model.score_t(torch.tensor([[factory.entity_to_id[label], liked]]))[0, ent_idx]  # (movies,)
        order = cat_idx[scores.argsort(descending=True, stable=True)].tolist()
        out[c] = [m for m in order if m not in known][:k]
    return out
