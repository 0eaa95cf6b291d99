"""Knowledge-graph-embedding baselines for PKG recommendation (PyKEEN): TransE (Bordes et al., NeurIPS 2013), RotatE
(Sun et al., ICLR 2019) and DistMult (Yang et al., ICLR 2015), trained on the users' preference triples plus the movie
KG, and scored on the same test queries as the policies.

Triples: ``(user:<id>, <relation>, movie:<id>)`` for each user's PKG as it was at its training cutoff (nothing from a
validation or test turn or later), and ``(movie:<id>, genre|director|actor, genre:<g>|person:<name>)`` from the CFCRS
movie KG. Entity and relation ids come from PyKEEN's sorted labels (deterministic; movie labels are ReDial ids, never
titles). A query of user ``u`` ranks every catalogue movie by the score of ``(user:u, liked, movie:m)`` (PyKEEN:
higher is more plausible, for all three models); which movies may not be recommended is the task's rule
(``task.exclude_known``, applied by ``KTOTask.ranker_columns`` exactly as for popularity and the policy).

Training (:class:`KGEConfig`, ``CONFIGS``): sLCWA with PyKEEN's basic negative sampler (head or tail corrupted
uniformly) and Adam (lr 0.01, batch 2048, 64-d unless said), each model with a loss its paper documents, the
number of epochs (and DistMult's size) chosen on validation queries only: every seeker's one validation query (361),
scored by ``KTOTask.ranker_columns("valid")`` with the output size chosen on them, as the benchmark does.

- TransE: the self-adversarial negative sampling loss (PyKEEN ``nssa``; Sun et al. 2019 train TransE with it too),
  margin 6, adversarial temperature 1, 4 negatives, L1 distance, unit-norm entities (PyKEEN's defaults), 150 epochs.
  PyKEEN's default margin ranking loss (margin 1, 1 negative) stayed below popularity at every epoch count.
- RotatE: the paper's loss (``nssa``, temperature 1) with margin 6 (the paper's grid is 3..24 for 1000-d embeddings;
  its margin 9 with 16 negatives was 6 s/epoch here and worse after 10 epochs), 4 negatives, 75 epochs.
- DistMult: softplus loss (the logistic loss, as PyKEEN's ``softplus``) with 4 negatives, 128-d, 100 epochs and no
  L2 penalty: PyKEEN's default LpRegularizer (weight 0.1) collapsed the embeddings (loss log 2 for 100 epochs).

Validation sweep (Hits@10 / MRR / F1; popularity 0.053 / 0.016 / 0.013), ``epochs: H10/MRR``:
TransE margin ranking 10: .039/.015, 25: .019/.004, 50: .031/.006, 100: .036/.012 (lr 1e-3, 100: .025/.008);
TransE nssa 10: .053/.022, 50: .058/.025, 100: .072/.021, 150: .094/.030/.018, 200: .083/.024, 250: .053/.014,
300: .072/.022;
RotatE nssa (m 6) 10: .044/.012, 25: .055/.019, 50: .089/.032/.018, 75: .097/.031/.018, 100: .072/.029/.018;
DistMult softplus 64-d 10: .042/.007, 50: .036/.014, 100: .053/.017; 128-d 50: .047/.020, 100: .061/.025/.016,
150: .044/.013, 200: .031/.007.

Federated training (FedE, Chen et al., IJCKG 2021, adapted to PKGs; :class:`FederatedKGEConfig`): a client's device
holds its own preference triples and the movie-KG triples of the movies in its PKG (the attributes its PKG shows); the
movie KG is public, so the server trains on all of it as one more participant each round. Per round,
``clients_per_round`` clients (seeded) train ``local_epochs`` and the server ``server_epochs`` from the global model;
entity rows are averaged over the participants that hold the entity (FedE's aggregation: negatives a client drew do
not move a row it does not hold), relation rows over all participants, and a user's row is its owner's alone (it never
leaves the device in a deployment). Every participant trains from the round's global model (``_train(warm=True)``:
PyKEEN's loop re-initializes the weights unless told otherwise; until 2026-12-07 every participant here did, so the
federated rows measured before then started each round from random weights). After the last round each device
refits its own user row to the final model (``user_refit_epochs``): a row trained only in the rounds its client was
drawn lags the movie rows that moved after it. On validation (361 queries), TransE (the config above), 10 rounds x
64 clients x 5 local epochs: Hits@10 / MRR .008/.001 without the refit, .025/.005 with 5 refit epochs; still below
popularity (.053): at this budget each preference triple is seen about 8 epochs' worth, against 150 centrally. A
round costs ~30 s of one core, so the default is 10 rounds (640 client visits, more than the catalog policy's 128
rounds of 4 clients).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ffmrec.data.redial_examples import UserData
from ffmrec.data.redial_kg import MovieCatalog, movie_kg_triples

MODELS = ("TransE", "RotatE", "DistMult")


@dataclass(frozen=True)
class KGEConfig:
    """How one PyKEEN model is trained: sLCWA, basic negative sampler, Adam."""

    dim: int = 64
    epochs: int = 100
    lr: float = 0.01
    loss: str = "marginranking"
    loss_kwargs: dict = field(default_factory=dict)
    negatives: int = 1
    batch_size: int = 2048
    model_kwargs: dict = field(default_factory=dict)


CONFIGS = {  # chosen on validation queries (module docstring)
    "TransE": KGEConfig(epochs=150, loss="nssa", loss_kwargs={"margin": 6.0, "adversarial_temperature": 1.0},
                        negatives=4),
    "RotatE": KGEConfig(epochs=75, loss="nssa", loss_kwargs={"margin": 6.0, "adversarial_temperature": 1.0},
                        negatives=4),
    "DistMult": KGEConfig(dim=128, epochs=100, loss="softplus", negatives=4, model_kwargs={"regularizer": None}),
}


def preference_triples(users: Sequence[UserData]) -> list[tuple[str, str, str]]:
    """Each user's PKG at its training cutoff as ``(user:u, relation, movie:m)`` triples."""
    out = []
    for u in users:
        pkg = u.history.snapshot(u.train_cutoff)
        out += [(f"user:{u.user_id}", r, f"movie:{m}")
                for m, r in sorted(pkg.relations.items(), key=lambda t: int(t[0]))]
    return out


def kg_triples(catalog: MovieCatalog) -> list[tuple[str, str, str]]:
    return [(f"movie:{m}", r, a) for m, r, a in movie_kg_triples(catalog)]


def _model(name: str, factory, config: KGEConfig, seed: int):
    from pykeen.models import DistMult, RotatE, TransE

    cls = {"TransE": TransE, "RotatE": RotatE, "DistMult": DistMult}[name]
    return cls(triples_factory=factory, embedding_dim=config.dim, random_seed=seed, loss=config.loss,
               loss_kwargs=config.loss_kwargs or None, **config.model_kwargs)


def _train(model, factory, config: KGEConfig, epochs: int, batch_size: int, warm: bool = False) -> None:
    """Train ``model`` in place with a fresh Adam; ``warm``: from its current weights. PyKEEN's loop re-initializes
    the weights unless it continues a run of its own (whose optimizer state it requires), so a warm start shadows
    the model's ``reset_parameters_`` for the call."""
    from pykeen.training import SLCWATrainingLoop

    if warm:
        model.reset_parameters_ = lambda: model
    loop = SLCWATrainingLoop(model=model, triples_factory=factory,
                             optimizer=torch.optim.Adam(model.parameters(), lr=config.lr), negative_sampler="basic",
                             negative_sampler_kwargs={"num_negs_per_pos": config.negatives})
    gc.freeze()  # PyKEEN runs gc.collect() every epoch: leave the process's older objects out of it (seconds each)
    try:
        loop.train(triples_factory=factory, num_epochs=epochs, batch_size=batch_size, use_tqdm=False,
                   use_tqdm_batch=False, pin_memory=False)
    finally:
        gc.unfreeze()
        if warm:
            del model.reset_parameters_


def train_kge(name: str, triples: list[tuple[str, str, str]], config: KGEConfig | None = None, seed: int = 0):
    """``(model, factory)`` of a PyKEEN model trained on ``triples`` (``config``: the model's ``CONFIGS`` entry)."""
    from pykeen.triples import TriplesFactory

    config = config or CONFIGS[name]
    factory = TriplesFactory.from_labeled_triples(np.array(triples, dtype=str))
    model = _model(name, factory, config, seed)
    _train(model, factory, config, config.epochs, config.batch_size)
    return model, factory


@dataclass(frozen=True)
class FederatedKGEConfig:
    """FedE-style training of a KGE baseline (module docstring: the validation runs behind it; it is CPU-bound and
    does not converge at this budget)."""

    rounds: int = 10
    clients_per_round: int = 64
    local_epochs: int = 5
    local_batch_size: int = 32  # a device holds a few hundred triples: several steps per local epoch
    server_epochs: int = 1  # the server's epochs on the public movie KG per round (batches of KGEConfig.batch_size)
    user_refit_epochs: int = 5  # after the last round, each device refits its own user row to the final model (0: off)


def train_kge_federated(name: str, users: Sequence[UserData], catalog: MovieCatalog,
                        federated: FederatedKGEConfig | None = None, config: KGEConfig | None = None, seed: int = 0,
                        after_round: Callable[[int, object], None] | None = None):
    """FedE-style training (see the module docstring): one global PyKEEN model over all entities; per round,
    ``clients_per_round`` clients (seeded) train ``local_epochs`` on their devices' triples and the server
    ``server_epochs`` on the public movie KG; entity rows are averaged over the participants holding them, relation
    rows over all, user rows are their owner's. ``after_round(round, model)``, if given, sees the model each round."""
    from pykeen.triples import TriplesFactory

    config, federated = config or CONFIGS[name], federated or FederatedKGEConfig()
    public = kg_triples(catalog)
    factory = TriplesFactory.from_labeled_triples(np.array(preference_triples(users) + public, dtype=str))
    model = _model(name, factory, config, seed)
    by_movie: dict[str, list[tuple[str, str, str]]] = {}
    for t in public:
        by_movie.setdefault(t[0], []).append(t)
    with_data = [u for u in users if u.history.snapshot(u.train_cutoff).relations]

    def device_triples(u: UserData) -> list[tuple[str, str, str]]:
        own = preference_triples([u])
        return own + [t for _, _, m in own for t in by_movie.get(m, [])]

    public_ids = factory.map_triples(np.array(public, dtype=str))
    rng = np.random.default_rng((seed, 0xFE))
    for rnd in range(1, federated.rounds + 1):
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        picked = rng.choice(len(with_data), min(federated.clients_per_round, len(with_data)), replace=False)
        parts = [(public_ids, federated.server_epochs, config.batch_size)] + [
            (factory.map_triples(np.array(device_triples(with_data[j]), dtype=str)), federated.local_epochs,
             federated.local_batch_size) for j in picked]
        updates = []
        for ids, epochs, batch_size in parts:
            model.load_state_dict(start)
            _train(model, TriplesFactory(ids, factory.entity_to_id, factory.relation_to_id), config, epochs, batch_size,
                   warm=True)
            held = torch.zeros(factory.num_entities)
            held[torch.unique(ids[:, [0, 2]])] = 1.0
            updates.append(({k: v.detach().clone() for k, v in model.state_dict().items()}, held))
        model.load_state_dict(fede_average(start, updates, factory.num_entities))
        if after_round is not None:
            after_round(rnd, model)
    if federated.user_refit_epochs > 0:
        devices = [(factory.entity_to_id[f"user:{u.user_id}"],
                    factory.map_triples(np.array(device_triples(u), dtype=str))) for u in with_data]
        model.load_state_dict(refit_user_rows(model, factory, devices, config, federated.user_refit_epochs,
                                              federated.local_batch_size))
    return model, factory


def refit_user_rows(model, factory, devices: Sequence[tuple[int, torch.Tensor]], config: KGEConfig, epochs: int,
                    batch_size: int) -> dict[str, torch.Tensor]:
    """The final model's state with each device's user row refit: every ``(row, triples)`` device trains a copy of
    the final model on its own triples for ``epochs`` and keeps only its user's row (its other changes are dropped,
    nothing leaves the device). A user row trained only in the rounds its client was drawn otherwise lags the
    movie rows that kept moving after it (or was never trained, for a client never drawn)."""
    from pykeen.triples import TriplesFactory

    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {k: v.clone() for k, v in final.items()}
    entity_tables = [k for k, v in final.items() if is_entity_table(v, factory.num_entities)]
    for row, ids in devices:
        model.load_state_dict(final)
        _train(model, TriplesFactory(ids, factory.entity_to_id, factory.relation_to_id), config, epochs, batch_size,
               warm=True)
        trained = model.state_dict()
        for k in entity_tables:
            out[k][row] = trained[k][row].detach()
    return out


def is_entity_table(v: torch.Tensor, num_entities: int) -> bool:
    """Whether a state tensor holds one row per entity (PyKEEN's entity representations, real or complex)."""
    return (torch.is_floating_point(v) or torch.is_complex(v)) and v.dim() >= 1 and v.shape[0] == num_entities


def fede_average(start: dict[str, torch.Tensor], updates: list[tuple[dict[str, torch.Tensor], torch.Tensor]],
                 num_entities: int) -> dict[str, torch.Tensor]:
    """FedE's aggregation: each entity-table row is the mean of the participants' rows that hold the entity
    (``held``: ``(num_entities,)`` 0/1), the start row where none does; other floating tensors: the plain mean."""
    weight = torch.stack([h for _, h in updates])  # (P, E)
    count = weight.sum(0)
    merged = {}
    for k, v in start.items():
        if not torch.is_floating_point(v) and not torch.is_complex(v):
            merged[k] = v
            continue
        stacked = torch.stack([u[k] for u, _ in updates])
        if is_entity_table(v, num_entities):
            w = weight.reshape(*weight.shape, *([1] * (v.dim() - 1))).to(stacked.dtype)
            mean = (w * stacked).sum(0) / count.clamp(min=1).reshape(-1, *([1] * (v.dim() - 1))).to(stacked.dtype)
            merged[k] = torch.where((count > 0).reshape(-1, *([1] * (v.dim() - 1))), mean, v)
        else:
            merged[k] = stacked.mean(0)
    return merged


@torch.no_grad()
def kge_rankings(model, factory, users: Sequence[UserData], catalog: MovieCatalog) -> dict[int, list[int]]:
    """Per user index: every catalogue index, by descending score of ``(user, liked, movie)`` (ties and movies absent
    from the KG last, in catalogue order); users unknown to the KG get catalogue order (misses, honestly scored).
    Known movies are not removed here: the task's ``exclude_known`` rule does that for every method alike."""
    movie_rows = sorted((catalog.index[label[6:]], i) for label, i in factory.entity_to_id.items()
                        if label.startswith("movie:"))
    cat_idx = torch.tensor([c for c, _ in movie_rows])
    ent_idx = torch.tensor([e for _, e in movie_rows])
    absent = sorted(set(range(len(catalog))) - set(cat_idx.tolist()))
    liked = factory.relation_to_id["liked"]
    model.eval()
    out = {}
    for c, u in enumerate(users):
        label = f"user:{u.user_id}"
        if label not in factory.entity_to_id:
            out[c] = list(range(len(catalog)))
            continue
        scores = model.score_t(torch.tensor([[factory.entity_to_id[label], liked]]))[0, ent_idx]  # (movies,)
        out[c] = cat_idx[scores.argsort(descending=True, stable=True)].tolist() + absent
    return out
