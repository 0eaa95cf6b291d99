"""Recommendations from a finished run, with the reasons behind them.

:func:`load_trained` opens a run folder (checkpoints read with ``weights_only``: a folder from elsewhere never runs
code), rebuilds the run's best model and, for a federated run, takes each user's personal rows as the run saved them
at its best round (the fast simulator keeps them in ``server.pt``; Flower SuperNodes in ``devices/partition-*/``).
:meth:`TrainedModel.recommend` scores the whole catalogue after a user's complete history (leaving out the items the
user already has) and returns the top K, with item titles where the dataset has them.

Explanations (``explain=True``) name the history items that drove each recommendation. For a sequential model the
weight of history item ``j`` for recommended item ``c`` is

    w_j(c) = a_j * max(0, cos(e_j, e_c))

where ``a_j`` is the attention the last layer pays from the latest position to position ``j`` (mean over heads; what
the model read to form the user's state) and ``cos(e_j, e_c)`` the similarity of the two items' embeddings (what
makes ``c`` score high given ``j``): an attention-times-similarity attribution in the spirit of SASRec's attention
visualisations (Kang & McAuley 2018, Sec. IV-G). The items with the largest weights are the reasons.

A ``fedtrek`` run gives a :class:`TrainedPolicy`: the catalog policy with the server's best adapters, prompted (with the
task's own builders) from the seeker's PKG as it stands at the end of their training data; movies in that PKG are never
recommended. Its explanation is a path from a movie the user liked to the recommendation through a shared director,
actor or genre of the movie KG (:mod:`ffmrec.pkg.explain`), or says that there is none.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from ffmrec.errors import ConfigError, FFMRecError
from ffmrec.utils.io import load_checkpoint

__all__ = ["Reason", "Recommendation", "Recommendations", "TrainedModel", "TrainedPolicy", "check_run_dir", "load_trained"]

SEEDS_FILE = "seeds.json"


class RunDirError(FFMRecError):
    """A folder is not a finished ffmrec run."""


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` if it holds a finished run; a one-line error that says what it is instead."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run folder {run_dir} does not exist: pass the --out folder of an 'ffmrec run'.")
    if (run_dir / SEEDS_FILE).exists() and not (run_dir / "config.yaml").exists():
        seeds = sorted(p.name for p in run_dir.iterdir() if (p / "config.yaml").exists())
        raise RunDirError(f"{run_dir} holds one run per seed ({', '.join(seeds)}): pass one of them, e.g. "
                          f"{run_dir / (seeds[0] if seeds else 'seed-42')}.")
    if not (run_dir / "config.yaml").exists():
        raise RunDirError(f"{run_dir} is not an ffmrec run folder (it has no config.yaml): pass the --out folder "
                          "of an 'ffmrec run'.")
    metrics, history = run_dir / "metrics.json", run_dir / "history.jsonl"
    if not metrics.exists() or (history.exists() and history.stat().st_mtime > metrics.stat().st_mtime):
        raise RunDirError(f"the run in {run_dir} is still in progress or was interrupted (no final metrics.json "
                          "after its last epoch/round): let it finish, or start the same 'ffmrec run' command again "
                          "to resume it.")
    return run_dir


def read_config(run_dir: Path):
    from ffmrec.methods import from_dict_run_config

    return from_dict_run_config(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {})


def item_title(dataset, item: int) -> str:
    """A readable name of dense item ``item``: its title where the dataset has item text, else its original id."""
    if dataset.item_text is not None and dataset.item_text[item]:
        return str(dataset.item_text[item]).split(" | ")[0].strip()
    return f"item {dataset.item_ids[item]}"


@dataclass
class Reason:
    """A history item that drove a recommendation."""

    item: str  # original item id
    title: str
    weight: float  # share of the recommendation's explanation weight, in [0, 1]
    attention: float  # share of the last layer's attention on this item
    similarity: float  # cosine similarity of the two items' embeddings
    rating: float | None = None


LIKED = 4.0  # ratings at or above this (out of 5) count as liked


def _named(r: Reason) -> str:
    return f"{r.title} (you rated it {r.rating:g}/5)" if r.rating is not None else r.title


def _join(parts: list[str]) -> str:
    return f"{', '.join(parts[:-1])} and {parts[-1]}" if len(parts) > 1 else parts[0]


@dataclass
class Recommendation:
    rank: int
    item: str  # original item id
    title: str
    score: float
    reasons: list[Reason] = field(default_factory=list)
    #: a fedtrek explanation: the PKG/KG path in words (``because you liked A, which shares the director X with B``)
    explanation: str | None = None
    #: that path as data: {"liked", "liked_title", "relation", "value"}; None when there is none
    link: dict | None = None

    @property
    def because(self) -> str:
        """The reasons in words: ``because you liked A (you rated it 5/5) and B``; items the user rated low (below
        LIKED on the 5-point scale) are named as items they had, not as items they liked."""
        if self.explanation is not None:
            return self.explanation
        if not self.reasons:
            return ""
        liked = [r for r in self.reasons if r.rating is None or r.rating >= LIKED]
        had = [r for r in self.reasons if r.rating is not None and r.rating < LIKED]
        words = []
        if liked:
            words.append("because you liked " + _join([_named(r) for r in liked]))
        if had:
            words.append(("and you also had " if liked else "because you had ") + _join([_named(r) for r in had]))
        return ", ".join(words)


@dataclass
class Recommendations:
    user: str  # the dataset's original user id
    run_dir: str
    items: list[Recommendation]
    history_length: int
    history_kind: str = "items in their history"  # what history_length counts

    def to_dict(self) -> dict:
        return {"user": self.user, "run_dir": self.run_dir, "history_length": self.history_length,
                "items": [{**asdict(r), "because": r.because} for r in self.items]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        lines = [f"Top {len(self.items)} for user {self.user} ({self.history_length} {self.history_kind}, "
                 f"left out), from {self.run_dir}:"]
        for r in self.items:
            lines.append(f"{r.rank:>3}. {r.title}  [item {r.item}, score {r.score:.3f}]")
            if r.because:
                lines.append(f"       {r.because}")
        return "\n".join(lines)


def unknown_user(user, dataset: str, run_dir: Path, user_ids) -> ConfigError:
    """The one-line error for a user the run's dataset does not have."""
    examples = ", ".join(map(str, list(user_ids[:5])))
    return ConfigError(f"user {user!r} is not in dataset {dataset!r} of {run_dir}: use one of its {len(user_ids)} "
                       f"original user ids (e.g. {examples}).")


def _check_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"k={k} must be >= 1, e.g. 10.")


class TrainedModel:
    """A run's best model and its users' personal state, ready to recommend."""

    def __init__(self, run_dir: Path, config, dataset, model, personal: dict[str, torch.Tensor] | None):
        self.run_dir = run_dir
        self.config = config
        self.dataset = dataset
        self.model = model.eval()
        self.personal = personal  # federated: {name: (num_users, ...)} personal rows; None: the model's own
        self._user_index = {str(u): i for i, u in enumerate(dataset.user_ids)}

    def user_index(self, user) -> int:
        """The dense index of the dataset's original user id ``user``."""
        index = self._user_index.get(str(user))
        if index is None:
            raise unknown_user(user, self.dataset.name, self.run_dir, self.dataset.user_ids)
        return index

    def _batch(self, u: int, history: np.ndarray) -> dict[str, torch.Tensor]:
        from ffmrec.data.batching import pad_histories

        row = u
        if self.personal is not None:  # one device's model: its personal rows are row 0
            state = {k: v[u:u + 1].reshape(dict(self.model.named_parameters())[k].shape) for k, v in self.personal.items()}
            self.model.load_state_dict(state, strict=False)
            row = 0
        elif self.model.personal_parameters:
            rows = dict(self.model.named_parameters())[self.model.personal_parameters[0]].shape[0]
            row = u if u < rows else 0
        return {"input_ids": pad_histories([history], self.model.max_len), "users": torch.tensor([row])}

    @torch.no_grad()
    def recommend(self, user, k: int = 10, explain: bool = False, reasons: int = 3) -> Recommendations:
        """The top ``k`` items for the dataset's original user id ``user``, leaving out every item they have."""
        _check_k(k)
        u = self.user_index(user)
        history = np.asarray(self.dataset.sequence(u), dtype=np.int64)
        batch = self._batch(u, history)
        scores = self.model.full_sort_predict(batch)[0].clone()  # (N + 1,)
        scores[0] = float("-inf")
        scores[torch.as_tensor(history)] = float("-inf")
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        attention = last_layer_attention(self.model, batch) if explain else None
        out = []
        for rank, (score, item) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
            rec = Recommendation(rank, str(self.dataset.item_ids[item]), item_title(self.dataset, item), float(score))
            if explain:
                rec.reasons = self._reasons(u, batch["input_ids"][0], attention, item, reasons)
            out.append(rec)
        return Recommendations(str(self.dataset.user_ids[u]), str(self.run_dir), out, len(history))

    def _reasons(self, u: int, input_ids: torch.Tensor, attention: torch.Tensor, item: int, n: int) -> list[Reason]:
        emb = item_vectors(self.model)  # (N + 1, d)
        valid = input_ids > 0
        ids = input_ids[valid]  # (L,) the history the model read, oldest first
        att = attention[valid]
        att = att / att.sum().clamp(min=1e-12)
        sim = torch.nn.functional.cosine_similarity(emb[ids], emb[item].unsqueeze(0), dim=-1)  # (L,)
        weight = att * sim.clamp(min=0)
        per_item: dict[int, tuple[float, float, float]] = {}
        for i, w, a, s in zip(ids.tolist(), weight.tolist(), att.tolist(), sim.tolist()):
            old = per_item.get(i, (0.0, 0.0, s))
            per_item[i] = (old[0] + w, old[1] + a, s)
        total = sum(w for w, _, _ in per_item.values())
        if total <= 0:
            return []
        ratings = self._ratings(u)
        best = sorted(per_item.items(), key=lambda kv: -kv[1][0])[:n]
        return [Reason(str(self.dataset.item_ids[i]), item_title(self.dataset, i), w / total, a, s, ratings.get(i))
                for i, (w, a, s) in best if w > 0]

    def _ratings(self, u: int) -> dict[int, float]:
        if self.dataset.ratings is None:
            return {}
        sl = slice(int(self.dataset.offsets[u]), int(self.dataset.offsets[u + 1]))
        return {int(i): float(r) for i, r in zip(self.dataset.items[sl], self.dataset.ratings[sl])}


def item_vectors(model) -> torch.Tensor:
    """The item vectors the model scores with ``(rows, d)``: its id embeddings, or its projected text table
    (``model.item_repr`` text/hybrid)."""
    table = model.item_table() if hasattr(model, "item_table") else None
    return model.item_emb.weight if table is None else table


@torch.no_grad()
def last_layer_attention(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(T,)`` attention of the last Transformer block from the latest position over the input positions, averaged
    over heads (recomputed from the block's input, captured with a forward pre-hook)."""
    block = model.blocks[-1]
    captured = {}

    def grab(module, args):
        captured["x"], captured["mask"] = args[0], args[1]

    handle = block.register_forward_pre_hook(grab)
    try:
        model.encode(batch["input_ids"], batch.get("users"))
    finally:
        handle.remove()
    x, mask = captured["x"], captured["mask"]  # (1, T, d), (1, 1, T, T)
    B, T, d = x.shape
    nh = block.num_heads
    hs = d // nh
    q, k, _ = block.qkv(block.ln_attn(x)).split(d, dim=-1)
    q = q.view(B, T, nh, hs).transpose(1, 2)[:, :, -1:]  # (1, nh, 1, hs): the latest position's queries
    k = k.view(B, T, nh, hs).transpose(1, 2)  # (1, nh, T, hs)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (1, nh, 1, T)
    att = att.masked_fill(~mask[:, :, -1:], float("-inf")).softmax(dim=-1)
    return att.mean(dim=1)[0, 0]  # (T,)


_ROUND_FILE = re.compile(r"round-(\d+)\.pt$")


def flower_personal(run_dir: Path, names: tuple[str, ...], num_users: int) -> dict[str, torch.Tensor]:
    """Every user's best-round personal rows from the Flower SuperNodes' device files (partition ``i`` of ``n``
    holds the users ``u % n == i``, in order)."""
    parts = sorted((run_dir / "devices").glob("partition-*"), key=lambda p: int(p.name.split("-")[-1]))
    if not parts:
        raise RunDirError(f"{run_dir}: this federated run keeps personal state on its devices, but "
                          f"{run_dir / 'devices'} holds none (a deployment with its own device-dir keeps it there): "
                          "recommend where the devices' files are.")
    n = len(parts)
    tables: dict[str, torch.Tensor] = {}
    for i, part in enumerate(parts):
        rounds = sorted(int(m.group(1)) for p in part.iterdir() if (m := _ROUND_FILE.search(p.name)))
        state = load_checkpoint(part / f"round-{rounds[-1]:06d}.pt") if rounds else None
        if state is None:
            raise RunDirError(f"{part} holds no device state file: the run's personal state is missing.")
        users = np.arange(i, num_users, n)
        for name in names:
            best = state["store"]["best"][name]
            if name not in tables:
                tables[name] = torch.zeros((num_users, *best.shape[1:]), dtype=best.dtype)
            tables[name][torch.as_tensor(users)] = best
    return tables


def _text_table(config, dataset):
    """The items' text embeddings the run's model read (``model.item_repr`` text/hybrid), built as the run built them;
    None for id embeddings."""
    if getattr(config.model, "item_repr", "id") == "id":
        return None
    from ffmrec import methods

    return methods._text_table(config, dataset)


PKG_KIND = "movies in their PKG"


class TrainedPolicy:
    """A fedtrek run's catalog policy with its best federated adapters, ready to recommend to a ReDial seeker (user =
    initiator worker id) from the PKG as it stands at the end of their training data (no validation/test turn)."""

    def __init__(self, run_dir: Path, config, data, shared: dict[str, torch.Tensor]):
        self.run_dir = run_dir
        self.config = config
        self.data = data  # RedialUsers
        self._shared = shared  # the server's best adapters
        self._task = None
        self._user_index = {str(u.user_id): i for i, u in enumerate(data.users)}

    @property
    def task(self):
        """The KTOTask (the policy with the run's adapters, the prompt builders), built on first use."""
        if self._task is None:
            from ffmrec.tasks.kto import build_kto_task

            task = build_kto_task(self.config, self.data, clients=np.zeros(0, dtype=np.int64))
            if set(self._shared) != set(task.shared_names):
                raise RunDirError(f"{self.run_dir}: server.pt holds {len(self._shared)} adapter tensors but the run's "
                                  f"config builds {len(task.shared_names)}: the checkpoint does not belong to it.")
            task.load_shared(self._shared)
            task.policy.model.eval()
            self._task = task
        return self._task

    @property
    def model(self):
        """The policy's encoder with the run's adapters (PEFT model), in eval mode."""
        return self.task.policy.model

    def user_index(self, user) -> int:
        """The client index of ReDial seeker ``user`` (their initiator worker id)."""
        index = self._user_index.get(str(user).strip())
        if index is None:
            raise unknown_user(user, self.data.name, self.run_dir, [u.user_id for u in self.data.users])
        return index

    def prompt(self, u: int):
        """User ``u``'s prompt: the system message, the sub-PKG before their training cutoff and the bare request."""
        from ffmrec.data.redial_examples import Example, render_prompt

        user = self.data.users[u]
        example = Example(user.user_id, "", user.train_cutoff, user.train_cutoff, (), (), True)
        return render_prompt(example, user.history, self.data.catalog, self.config.task, self.task.policy.count_tokens)

    @torch.no_grad()
    def recommend(self, user, k: int = 10, explain: bool = False, reasons: int = 3) -> Recommendations:
        """The top ``k`` movies for seeker ``user``, never one already in their PKG; ``explain``: a KG path from a
        movie they liked to each (see :mod:`ffmrec.pkg.explain`)."""
        from ffmrec.pkg.explain import find_link, link_words

        _check_k(k)
        u = self.user_index(user)
        data, catalog = self.data.users[u], self.data.catalog
        pkg = data.history.snapshot(data.train_cutoff)
        known = [catalog.index[m] for m in pkg.movies()]
        k = min(k, len(catalog) - len(known))
        if k < 1:
            return Recommendations(str(data.user_id), str(self.run_dir), [], len(pkg), PKG_KIND)
        prompt = self.prompt(u)
        ranked, probs = self.task.policy.recommend([prompt.text], k, [known],
                                                   [[catalog.index[m] for m in prompt.mentioned]])
        liked = sorted(pkg.movies("liked"), key=lambda m: -pkg.turns.get(m, -1))  # the most recent first
        out = []
        for rank, (i, p) in enumerate(zip(ranked[0], probs[0].tolist()), start=1):
            movie_id = catalog.ids[i]
            rec = Recommendation(rank, movie_id, catalog[movie_id].title, float(p))
            if explain:
                link = find_link(liked, movie_id, catalog)
                rec.explanation = link_words(link, catalog)
                if link is not None:
                    rec.link = {"liked": link.liked, "liked_title": catalog[link.liked].title,
                                "relation": link.relation, "value": link.value}
            out.append(rec)
        return Recommendations(str(data.user_id), str(self.run_dir), out, len(pkg), PKG_KIND)


def _load_fedtrek(run_dir: Path, config) -> TrainedPolicy:
    """A fedtrek run's policy with the server's best adapters (``server.pt``, read with ``weights_only``)."""
    from ffmrec.tasks.kto import load_redial_run

    ckpt = load_checkpoint(run_dir / "server.pt")
    if ckpt is None:
        raise RunDirError(f"{run_dir} has no server.pt: the run's adapters are missing; run it again.")
    data, _ = load_redial_run(config)
    return TrainedPolicy(run_dir, config, data, ckpt.get("best_params") or ckpt["params"])


def load_trained(run_dir: str | Path) -> TrainedModel | TrainedPolicy:
    """The best model of the finished run in ``run_dir`` (and its users' personal state)."""
    from ffmrec.data import load_dataset
    from ffmrec.models.sasrec import SASRec, SASRecConfig

    run_dir = check_run_dir(run_dir)
    config = read_config(run_dir)
    if config.method == "fedtrek":
        return _load_fedtrek(run_dir, config)
    if not isinstance(config.model, SASRecConfig):
        raise ConfigError(f"{run_dir}: recommending from method={config.method!r} is not supported yet: use a run "
                          "of a sequential method (sasrec, fedsasrec, cl4srec, fedcl4srec) or of fedtrek.")
    if config.setting == "local":
        raise ConfigError(f"{run_dir}: a {config.method} run trains one model per user and keeps none of them (only "
                          "their ranks), so there is no model to recommend from: use a centralized or federated run.")
    dataset = load_dataset(config.dataset, options=config.data)
    text = _text_table(config, dataset)
    extra = {} if text is None else {"item_text": text}  # item_repr text/hybrid: the items' frozen text embeddings
    if config.setting == "centralized":
        ckpt = load_checkpoint(run_dir / "best_model.pt") or load_checkpoint(run_dir / "checkpoint.pt")
        if ckpt is None:
            raise RunDirError(f"{run_dir} has no best_model.pt: the run's model is missing; run it again.")
        state = ckpt["model"]
        rows = state["user_emb.weight"].shape[0] if "user_emb.weight" in state else 0
        model = SASRec(config.model, dataset.num_items, rows, **extra)
        model.load_state_dict(state)
        return TrainedModel(run_dir, config, dataset, model, None)
    ckpt = load_checkpoint(run_dir / "server.pt")
    if ckpt is None:
        raise RunDirError(f"{run_dir} has no server.pt: the run's model is missing; run it again.")
    model = SASRec(config.model, dataset.num_items, 1, **extra)  # one device's model: its personal rows are row 0
    names = tuple(model.personal_parameters)
    model.load_state_dict(ckpt["best_params"], strict=not names)
    personal = None
    if names:
        engine_state = ckpt.get("engine") or {}
        if "best" in engine_state:  # the fast simulator: every device's rows, (num_users, 1, ...)
            personal = {k: engine_state["best"][k] for k in names}
        else:
            personal = flower_personal(run_dir, names, dataset.num_users)
        first = next(iter(personal.values()))
        if first.shape[0] != dataset.num_users:
            raise RunDirError(f"{run_dir}: the saved personal state has {first.shape[0]} users but dataset "
                              f"{dataset.name!r} now has {dataset.num_users}: the data changed since the run.")
    return TrainedModel(run_dir, config, dataset, model, personal)
