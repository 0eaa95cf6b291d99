"""FedTREK-LM's client task (``fedtrek``): KTO fine-tuning of a recommendation policy on each user's own PKG-grounded
data points, with LoRA adapters as the only shared tensors (the stateful-trainer seam).

One client per ReDial seeker (:mod:`ffmrec.data.redial_examples`). A device holds the user's conversations and its PKG
history as a JSON-LD document; on first use it parses that document (a corrupted PKG raises there, so that client
fails alone and the round goes on) and, each round, builds its prompts from the PKG snapshot before each turn
(``prepare`` samples ``examples_per_client`` of its training points with its own generator). Training
(:meth:`KTOTask.train_stateful`): ``local_steps`` full-batch steps of :func:`ffmrec.fm.kto.kto_loss` with a fresh
optimizer, the policy being the adapters and the reference the same model with adapters disabled; the client sends the
change of the adapter tensors. With ``model.freeze_a`` (FFA-LoRA) only ``lora_B`` is shared. With ``mask_known``
(beside ``exclude_known``) the trained policy is the one that recommends: the softmax over the catalogue without the
movies of the PKG before the data point's turn, for the policy and the reference alike (otherwise about a quarter of the
frozen base's probability mass sits on those movies, which the prompt names, and every desirable step spends itself
pushing them down, and similar unseen movies with them).

Evaluation runs where the data lives: each validation/test query's prompt is scored over the whole catalogue; the
ranked top 10 gives MRR and Hits@1/3/10, and the first ``set_size`` items are the set the policy outputs for
precision/recall/F1 (the per-size hit counts are kept, so that :func:`choose_set_size` can pick the size on validation
queries). Columns are per client sums; :meth:`KTOTask.summarize` micro-averages them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ffmrec.data.redial_examples import Example, RedialExamplesConfig, UserData, render_prompt
from ffmrec.data.redial_kg import MovieCatalog
from ffmrec.errors import ConfigError
from ffmrec.eval.metrics import micro_precision_recall_f1
from ffmrec.fm.catalog_policy import CatalogPolicy
from ffmrec.fm.causal_lm import get_adapter_state, set_adapter_state, train_adapters
from ffmrec.fm.kto import kto_loss
from ffmrec.pkg.graph import PKGHistory
from ffmrec.tasks.base import ClientTask, Params, client_generator, client_seed

MAX_SET = 10
HITS_AT = (1, 3, 10)


@dataclass
class KTOTaskConfig(RedialExamplesConfig):
    """FedTREK-LM's data points (see :class:`RedialExamplesConfig`) and its KTO objective."""

    beta: float = field(default=0.1, metadata={"help": "KTO's beta (the reward scale)."})
    desirable_weight: float = field(default=4.0, metadata={"help": "KTO's lambda_D (FedTREK-LM: desirable:undesirable 4:3)."})
    undesirable_weight: float = field(default=3.0, metadata={"help": "KTO's lambda_U."})
    examples_per_client: int = field(default=16, metadata={"help": "Training points a client samples each round (its weight); all when it has fewer."})
    set_size: int = field(default=1, metadata={"help": f"Recommendations the policy outputs per query for precision/recall/F1 (1..{MAX_SET}); chosen on validation data by the benchmark."})
    exclude_known: bool = field(default=False, metadata={"help": "Never recommend movies the user's PKG held before the query's turn (the leak-free prompt's PKG); baselines are scored with the same exclusion."})
    known_negatives: bool = field(default=True, metadata={"help": "Train on undesirable points whose movies all were already in the PKG before the turn (the recommender repeating a known movie); false drops them (with exclude_known the policy never recommends such movies anyway)."})
    mask_known: bool = field(default=False, metadata={"help": "With exclude_known, train the policy that recommends: KTO's log-probabilities (policy and reference) come from the catalogue softmax without the movies of the PKG before the data point's turn, so that those movies, never recommended anyway, take no probability mass; undesirable movies among them leave their completion (a point left with none is not trained on)."})
    eval_batch_size: int = field(default=32, metadata={"help": "Prompts scored together in evaluation."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0 or self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ConfigError(f"task.beta={self.beta}, task.desirable_weight={self.desirable_weight} and "
                              f"task.undesirable_weight={self.undesirable_weight} must all be > 0.")
        if self.examples_per_client < 1 or self.eval_batch_size < 1:
            raise ConfigError(f"task.examples_per_client={self.examples_per_client} and task.eval_batch_size="
                              f"{self.eval_batch_size} must be >= 1.")
        if not 1 <= self.set_size <= MAX_SET:
            raise ConfigError(f"task.set_size={self.set_size} must lie in [1, {MAX_SET}].")
        if self.mask_known and not self.exclude_known:
            raise ConfigError("task.mask_known=true trains the policy that never recommends known movies: it needs "
                              "task.exclude_known=true.")


class KTOTask(ClientTask):
    """See the module docstring. ``users[c]`` is client ``c``'s data (only ever read by client ``c``)."""

    trainer = "stateful"
    metric_kind = "set"

    def __init__(self, users: list[UserData], catalog: MovieCatalog, policy: CatalogPolicy, config: KTOTaskConfig,
                 seed: int, clients: np.ndarray | None = None):
        self.users = users
        self.catalog = catalog
        self.policy = policy
        self.config = config
        self.seed = seed
        served = range(len(users)) if clients is None else clients
        # the device's storage: its PKG history as JSON-LD (parsed, and validated, on first use)
        self.pkg_documents = {int(c): users[int(c)].history.to_jsonld() for c in served}
        self._histories: dict[int, PKGHistory] = {}
        self._prompts: dict[tuple[int, str, int], str] = {}
        self._mentions: dict[tuple[int, str, int], list[int]] = {}  # catalogue indices each prompt mentions
        self._reference: dict[tuple[int, str, int], torch.Tensor] = {}
        self._train_indices: dict[int, list[int]] = {}
        names = list(get_adapter_state(policy.model))
        self.shared_names = [n for n in names if "lora_B" in n] if policy.config.freeze_a else names
        if not self.shared_names:
            raise ConfigError(f"model.lora_target_modules={list(policy.config.lora_target_modules)} wrapped no "
                              "encoder module: name modules of the encoder (e.g. query, value).")
        self._initial = {k: v for k, v in get_adapter_state(policy.model).items() if k in self.shared_names}
        self._frozen = {k: v for k, v in get_adapter_state(policy.model).items() if k not in self.shared_names}

    def load_shared(self, shared: Params) -> None:
        """Put the shared adapters ``shared`` into the policy (the frozen ones, e.g. FFA-LoRA's A, stay as built)."""
        set_adapter_state(self.policy.model, {**self._frozen, **shared})

    # --- the population ---------------------------------------------------------------------------------------------
    @property
    def num_clients(self) -> int:
        return len(self.users)

    def weight(self, client: int) -> int:
        return min(len(self.train_indices(client)), self.config.examples_per_client)

    def train_indices(self, client: int) -> list[int]:
        """The client's training points (indices into its training data): all, or without the known negatives
        (``known_negatives=False`` or ``mask_known``: undesirable points whose movies all were in the PKG before their
        turn)."""
        train = self.users[client].train
        if self.config.known_negatives and not self.config.mask_known:
            return list(range(len(train)))
        if client not in self._train_indices:
            history = self.users[client].history
            self._train_indices[client] = [i for i, e in enumerate(train) if e.desirable
                                           or not set(e.movies) <= set(history.snapshot(e.turn).relations)]
        return self._train_indices[client]

    @property
    def max_weight(self) -> int:
        return self.config.examples_per_client

    def initial_shared(self) -> Params:
        return {k: v.clone() for k, v in self._initial.items()}

    # --- on the device ----------------------------------------------------------------------------------------------
    def history(self, client: int) -> PKGHistory:
        """The client's PKG history, parsed from its JSON-LD document (DataError naming the user if corrupted)."""
        if client not in self._histories:
            user = self.users[client].user_id
            self._histories[client] = PKGHistory.from_jsonld(self.pkg_documents[client], self.catalog,
                                                             f"PKG of user {user} (client {client})")
        return self._histories[client]

    def prompt(self, client: int, split: str, index: int, example: Example) -> str:
        key = (client, split, index)
        if key not in self._prompts:
            prompt = render_prompt(example, self.history(client), self.catalog, self.config, self.policy.count_tokens)
            self._prompts[key] = prompt.text
            self._mentions[key] = [self.catalog.index[m] for m in prompt.mentioned]
        return self._prompts[key]

    def mentions(self, key: tuple[int, str, int]) -> list[int]:
        """Catalogue indices the conversation of prompt ``key`` mentions (after :meth:`prompt` built it)."""
        return self._mentions[key]

    def prepare(self, client: int, server_round: int) -> dict:
        """This round's training points: indices into the client's training data (sampled with its own generator)."""
        usable = torch.as_tensor(self.train_indices(client), dtype=torch.int64)
        n = len(usable)
        chosen = usable
        if n > self.config.examples_per_client:
            g = client_generator(self.seed, server_round, client)
            chosen = usable[torch.randperm(n, generator=g)[:self.config.examples_per_client].sort().values]
        return {"examples": chosen}

    def reference_embeddings(self, keys: list[tuple], prompts: list[str]) -> torch.Tensor:
        """``(B, d)`` frozen-base prompt embeddings, computed once per prompt on the device and kept there."""
        missing = [i for i, k in enumerate(keys) if k not in self._reference]
        if missing:
            fresh = self.policy.reference_embeddings([prompts[i] for i in missing])
            self._reference.update({keys[i]: fresh[j] for j, i in enumerate(missing)})
        return torch.stack([self._reference[k] for k in keys])

    def objective_of(self, prompts: list[str], examples: list[Example], keys: list[tuple] | None = None
                     ) -> tuple[torch.Tensor, dict]:
        """The KTO loss of data points (prompts and their examples, ``keys`` their ``(client, split, index)``) under
        the current adapters; with ``mask_known``, over the catalogue without each point's known movies (the movies of
        a completion among them are left out; a point left with none does not count)."""
        policy, c = self.policy, self.config
        known: list[list[int]] = [[] for _ in examples]
        if c.mask_known:
            if keys is None:
                raise ValueError("task.mask_known needs the data points' keys (client, split, index)")
            known = [self._known(k[0], e) for k, e in zip(keys, examples)]
        completions = [[m for m in (self.catalog.index[x] for x in e.movies) if m not in kn]
                       for e, kn in zip(examples, map(set, known))]
        rows = [b for b, comp in enumerate(completions) if comp]
        if len(rows) < len(examples):
            prompts, examples, completions, known = ([x[b] for b in rows]
                                                     for x in (prompts, examples, completions, known))
            keys = None if keys is None else [keys[b] for b in rows]
        desirable = torch.tensor([e.desirable for e in examples])
        mentions: list[list[int]] = []
        if policy.config.mention_weight > 0:
            if keys is None:
                raise ValueError("model.mention_weight needs the data points' keys (client, split, index)")
            mentions = [self.mentions(k) for k in keys]
        logp = policy.log_probs(prompts, exclude=known, mentions=mentions)  # (B, M)
        ref = (policy.log_probs_of(self.reference_embeddings(keys, prompts), reference=True, exclude=known,
                                   mentions=mentions)
               if keys is not None else policy.log_probs(prompts, reference=True, exclude=known))  # (B, M), no gradient
        kl = policy.kl(logp.detach(), ref)
        return kto_loss(policy.completion_logps(logp, completions), policy.completion_logps(ref, completions),
                        desirable, kl, c.beta, c.desirable_weight, c.undesirable_weight)

    def train_stateful(self, client: int, server_round: int, shared: Params, personal: Params,
                       cfg) -> tuple[Params, Params, float]:
        """``cfg.local_steps`` full-batch KTO steps with a fresh SGD/Adam on the shared adapters (FedProx term
        when ``cfg.proximal_mu``); returns ``(adapter delta, {}, loss at the first step)``."""
        chosen = self.prepare(client, server_round)["examples"].tolist()
        train = self.users[client].train
        examples = [train[i] for i in chosen]
        prompts = [self.prompt(client, "train", i, train[i]) for i in chosen]
        model = self.policy.model
        self.load_shared(shared)
        model.eval()  # dropout off (TRL's KTOConfig.disable_dropout): the implied reward compares like with like
        keys = [(client, "train", i) for i in chosen]
        delta, first = train_adapters(model, shared, lambda: self.objective_of(prompts, examples, keys)[0], cfg,
                                      client_seed(self.seed, server_round, client, "train"))
        return delta, {}, first

    def private_arrays(self, client: int, server_round: int) -> dict[str, torch.Tensor]:
        out = super().private_arrays(client, server_round)
        user = self.users[client]
        movies = [self.catalog.index[m] for e in user.train for m in e.movies]
        out["movies"] = torch.as_tensor(movies or [0])
        return out

    # --- evaluation where the data lives ----------------------------------------------------------------------------
    def queries(self, stage: str, client: int) -> list[Example]:
        user = self.users[client]
        return user.valid if stage == "valid" else user.test

    def _known(self, client: int, example: Example) -> list[int]:
        """Catalogue indices the policy may not recommend for this query (``exclude_known``: the movies of the user's
        PKG before the query's turn, i.e. the leak-free prompt's PKG; under the reference protocol too, whose prompts
        carry a later PKG, so that the exclusion itself never removes a target)."""
        if not self.config.exclude_known:
            return []
        return [self.catalog.index[m] for m in self.history(client).snapshot(example.turn).relations]

    @torch.no_grad()
    def evaluate(self, stage: str, shared: Params, personal: Params, clients: np.ndarray) -> dict[str, np.ndarray]:
        clients = np.asarray(clients, dtype=np.int64)
        self.load_shared(shared)
        cols = self.failed_columns(len(clients))
        cols["predicted"][:] = 0
        cols["relevant"][:] = 0
        todo = []
        for row, c in enumerate(clients):
            queries = self.queries(stage, int(c))
            try:  # a device whose PKG is corrupted fails alone: its queries score 0 and stay in the denominators
                todo += [(row, e, self.prompt(int(c), stage, i, e), self._known(int(c), e),
                          self.mentions((int(c), stage, i))) for i, e in enumerate(queries)]
            except Exception:  # noqa: BLE001
                cols["failed"][row] += len(queries)
                cols["queries"][row] += len(queries)
                cols["relevant"][row] += sum(len(e.movies) for e in queries)
        for start in range(0, len(todo), self.config.eval_batch_size):
            part = todo[start:start + self.config.eval_batch_size]
            ranked, _ = self.policy.recommend([p for _, _, p, _, _ in part], MAX_SET, [x for _, _, _, x, _ in part],
                                              [m for *_, m in part])
            for (row, e, *_), top in zip(part, ranked):
                self.score_query(cols, row, top, e)
        cols["predicted"] = cols["queries"] * self.config.set_size
        return cols

    def score_query(self, cols: dict[str, np.ndarray], row: int, top: list[int], example: Example) -> None:
        """Add one query's ranked top 10 (catalogue indices, distinct) to client row ``row`` of ``cols``."""
        relevant = {self.catalog.index[m] for m in example.movies}
        first = next((r for r, m in enumerate(top, start=1) if m in relevant), 0)
        cols["queries"][row] += 1
        cols["relevant"][row] += len(relevant)
        cols["rr"][row] += 1.0 / first if first else 0.0
        for n in range(1, MAX_SET + 1):
            cols[f"hits@{n}"][row] += sum(m in relevant for m in top[:n])
        for k in HITS_AT:
            cols[f"hit@{k}"][row] += float(0 < first <= k)

    def ranker_columns(self, stage: str, clients: np.ndarray, ranking: list[int] | dict[int, list[int]]
                       ) -> dict[str, np.ndarray]:
        """Columns of a prompt-free baseline that recommends ranked catalogue indices to every query of a client (one
        list for all, e.g. most popular first, or one per client, e.g. a KG embedding's), scored like the policy
        (with ``exclude_known``, the movies of the query's PKG are skipped, as the policy never recommends them)."""
        cols = self.failed_columns(len(clients))
        for row, c in enumerate(np.asarray(clients, dtype=np.int64)):
            ranked = ranking[int(c)] if isinstance(ranking, dict) else ranking
            for e in self.queries(stage, int(c)):
                known = set(self._known(int(c), e))
                top = [m for m in ranked[:MAX_SET + len(known)] if m not in known][:MAX_SET]
                self.score_query(cols, row, top, e)
        cols["predicted"] = cols["queries"] * self.config.set_size
        return cols

    def summarize(self, columns: dict[str, np.ndarray], set_size: int | None = None) -> dict[str, float]:
        """Micro ``precision``/``recall``/``F1`` of the first ``set_size`` recommendations, ``MRR`` and
        ``Hits@1/3/10`` over all queries of the evaluated clients."""
        n = int(set_size or self.config.set_size)
        queries = float(np.sum(columns["queries"]))
        p, r, f1 = micro_precision_recall_f1(columns[f"hits@{n}"], columns["queries"] * n, columns["relevant"])
        out = {"precision": p, "recall": r, "F1": f1, "MRR": float(np.sum(columns["rr"]) / queries) if queries else 0.0}
        out.update({f"Hits@{k}": float(np.sum(columns[f"hit@{k}"]) / queries) if queries else 0.0 for k in HITS_AT})
        if "failed" in columns and np.sum(columns["failed"]):  # queries whose device failed: scored 0, reported
            out["failed_queries"] = float(np.sum(columns["failed"]))
        return out

    def failed_columns(self, num: int) -> dict[str, np.ndarray]:
        """A client whose evaluation failed scores 0 on its queries (they stay in the denominators)."""
        cols = {"queries": np.zeros(num, np.int64), "failed": np.zeros(num, np.int64), "predicted": np.zeros(num, np.int64),
                "relevant": np.zeros(num, np.int64), "rr": np.zeros(num)}
        cols.update({f"hits@{n}": np.zeros(num, np.int64) for n in range(1, MAX_SET + 1)})
        cols.update({f"hit@{k}": np.zeros(num) for k in HITS_AT})
        return cols


def desirable_counts(users: list[UserData], catalog: MovieCatalog) -> np.ndarray:
    """``(M,)`` how often each catalogue movie was a desirable (real) recommendation in the users' *training* data:
    nothing a validation or test query could leak."""
    counts = np.zeros(len(catalog), dtype=np.int64)
    for u in users:
        for e in u.train:
            if e.desirable and e.kind == "real":
                for m in e.movies:
                    counts[catalog.index[m]] += 1
    return counts


def popularity_ranking(users: list[UserData], catalog: MovieCatalog) -> list[int]:
    """Catalogue indices by :func:`desirable_counts` (ties by catalogue order): the most-popular baseline."""
    return np.argsort(-desirable_counts(users, catalog), kind="stable").tolist()


def train_pooled(task: KTOTask, clients: np.ndarray, steps: int, batch_size: int, lr: float, seed: int,
                 shared: Params | None = None) -> Params:
    """Centralized KTO: ``steps`` Adam steps, each on ``batch_size`` training points drawn (seeded) from the pooled
    data of ``clients``; returns the trained shared adapters."""
    pool = [(int(c), i) for c in clients for i in task.train_indices(int(c))]
    model = task.policy.model
    task.load_shared(shared if shared is not None else task.initial_shared())
    model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=lr)
    rng = np.random.default_rng((seed, 0xCE))
    for _ in range(steps):
        picks = [pool[j] for j in rng.choice(len(pool), min(batch_size, len(pool)), replace=False)]
        examples = [task.users[c].train[i] for c, i in picks]
        prompts = [task.prompt(c, "train", i, task.users[c].train[i]) for c, i in picks]
        opt.zero_grad(set_to_none=True)
        loss, _ = task.objective_of(prompts, examples, [(c, "train", i) for c, i in picks])
        loss.backward()
        opt.step()
    state = get_adapter_state(model)
    return {k: state[k] for k in task.shared_names}


def choose_set_size(task: KTOTask, valid_columns: dict[str, np.ndarray]) -> int:
    """The output size (1..10) with the best validation F1 (ties: the smaller)."""
    scores = [(task.summarize(valid_columns, n)["F1"], -n) for n in range(1, MAX_SET + 1)]
    return -max(scores)[1]


# --- the edge: a fedtrek run's data and task ----------------------------------------------------------------------------
@dataclass
class RedialUsers:
    """A ``fedtrek`` run's data: the movie catalogue and every seeker's data points (``num_users`` clients)."""

    name: str
    catalog: MovieCatalog
    users: list[UserData]

    @property
    def num_users(self) -> int:
        return len(self.users)

    def stats(self) -> dict:
        return {"users": len(self.users), "movies": len(self.catalog),
                "train_examples": sum(len(u.train) for u in self.users),
                "desirable_train_examples": sum(sum(e.desirable for e in u.train) for u in self.users),
                "valid_queries": sum(len(u.valid) for u in self.users),
                "test_queries": sum(len(u.test) for u in self.users)}


def load_redial_run(config) -> tuple[RedialUsers, RedialUsers]:
    """``(data, split)`` of a fedtrek run config: ``dataset`` is ``redial`` (the staged folder under the data
    directory) or a path to a staged ReDial folder."""
    from pathlib import Path

    from ffmrec.data import data_dir_or_default
    from ffmrec.data.redial_examples import load_redial_users

    folder = Path(config.dataset)
    if config.dataset == "redial" or not folder.is_dir():
        if config.dataset != "redial":
            raise ConfigError(f"dataset={config.dataset!r}: method fedtrek reads ReDial conversations; use "
                              "dataset=redial or the path of a staged ReDial folder.")
        folder = data_dir_or_default() / "redial"
    catalog, users = load_redial_users(folder, config.task, config.seed)
    data = RedialUsers("redial", catalog, users)
    return data, data


def build_kto_task(config, data: RedialUsers, split=None, clients: np.ndarray | None = None) -> KTOTask:
    """The fedtrek client task of a run config (the catalog policy on the run's catalogue)."""
    from ffmrec.data.cache import cache_dir

    texts = [data.catalog.text(m) for m in data.catalog.ids]
    counts = desirable_counts(data.users, data.catalog).tolist() if config.model.prior_weight > 0 else None
    policy = CatalogPolicy(config.model, texts, config.seed, config.task.max_tokens, cache_dir() / "fedtrek", counts)
    task = KTOTask(data.users, data.catalog, policy, config.task, config.seed, clients)
    if config.model.center_prompts:
        center_prompts(task, config.model.center_prompts, config.seed)
    return task


def center_prompts(task: KTOTask, n: int, seed: int) -> torch.Tensor:
    """Center the policy's prompt embeddings on the mean frozen-base embedding of ``n`` training prompts drawn
    (seeded) from the pooled training data of every client (training data only: no validation or test prompt)."""
    users = task.users
    pool = [(c, i) for c in range(len(users)) for i in range(len(users[c].train))]
    picks = [pool[j] for j in sorted(np.random.default_rng((seed, 0xC3)).choice(len(pool), min(n, len(pool)),
                                                                                 replace=False))]
    # from the users' data directly (whichever clients this process serves): every process gets the same center
    prompts = [render_prompt(users[c].train[i], users[c].history, task.catalog, task.config,
                             task.policy.count_tokens).text for c, i in picks]
    task._reference.clear()  # frozen-base embeddings cached before centering are stale
    return task.policy.set_center(prompts)
