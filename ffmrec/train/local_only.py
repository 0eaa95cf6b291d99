"""Local-only training: every user trains their own model on their own history; nothing is shared or aggregated.

The no-federation baseline (e.g. ``local-sasrec``). Each user starts from the same seeded initialisation
(:meth:`~ffmrec.tasks.base.ClientTask.initial_shared`) and takes local epochs of the one client update,
:func:`~ffmrec.federated.client.local_update`, on the input its own task ``prepare``\\ s (epoch ``e`` draws its dropout
from the user's generator of "round" ``e``), vectorised over users with ``torch.func.vmap`` exactly as the fast
simulator does. A model per user does not fit in memory on a real catalogue, so users are materialised one *cohort*
at a time: a cohort is trained, each user's own model ranks their validation and test items with the shared evaluator
(:func:`~ffmrec.eval.ranking.rank_targets`), only the ranks are kept, and the cohort's models are dropped.

The local hyper-parameters are chosen honestly: for every learning rate of ``task.lr`` the users train up to the
largest of ``task.epochs`` and are ranked after each listed epoch count; the configuration with the best mean
validation NDCG@10 over all users gives the test metrics. Every candidate's validation metrics are in
``history.jsonl``. Each finished cohort's ranks are saved (``cohorts/``), so a killed run resumes at its first
unfinished cohort.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from ffmrec.errors import ConfigError
from ffmrec.eval.ranking import rank_targets
from ffmrec.federated.client import ClientConfig, local_update
from ffmrec.tasks.base import ClientTask
from ffmrec.utils.io import History, load_columns, save_columns


@dataclass
class LocalOnlyConfig:
    """Local-only training (no federation) and its validation grid."""

    epochs: tuple[int, ...] = field(default=(1, 3, 10), metadata={"help": "Local epochs after which every user's model is ranked on validation and test (one trajectory per learning rate, up to the largest); the best by validation NDCG@10 gives the test metrics."})
    lr: tuple[float, ...] = field(default=(0.1, 1.0), metadata={"help": "Local learning rates tried (one trajectory each)."})
    optimizer: str = field(default="sgd", metadata={"help": "'sgd' (exact over epochs) or 'adam' (its moments restart every epoch, as in every federated round)."})
    personal_lr: float = field(default=0.01, metadata={"help": "Learning rate of the model's personal parameters (e.g. model.user_embedding)."})
    cohort_size: int = field(default=64, metadata={"help": "Users whose models are in memory at once (trained together under vmap); the results do not depend on it."})

    def __post_init__(self) -> None:
        self.epochs = tuple(sorted({int(e) for e in self.epochs}))
        self.lr = tuple(float(v) for v in self.lr)
        if not self.epochs or self.epochs[0] < 1:
            raise ConfigError(f"task.epochs={list(self.epochs)} must be a non-empty list of epoch counts >= 1, e.g. [1, 5, 20].")
        if not self.lr or any(not math.isfinite(v) or v <= 0 for v in self.lr):
            raise ConfigError(f"task.lr={list(self.lr)} must be a non-empty list of learning rates > 0, e.g. [0.1, 1.0].")
        if self.cohort_size < 1:
            raise ConfigError(f"task.cohort_size={self.cohort_size} must be >= 1, e.g. 64.")
        ClientConfig(lr=self.lr[0], personal_lr=self.personal_lr, optimizer=self.optimizer)  # same checks as a client

    def candidates(self) -> list[tuple[float, int]]:
        """Every ``(lr, epochs)`` configuration ranked on validation, in a fixed order."""
        return [(lr, e) for lr in self.lr for e in self.epochs]


@dataclass
class LocalOnlyResult:
    best: dict  # {"lr": ..., "epochs": ...}
    best_valid: dict[str, float]
    test: dict[str, float]
    candidates: list[dict]  # per configuration: lr, epochs, valid metrics
    seconds: float


def train_cohort(task: ClientTask, clients: np.ndarray, cfg: LocalOnlyConfig
                 ) -> dict[tuple[float, int], dict[str, np.ndarray]]:
    """Train ``clients``' own models (one per user, from the same initialisation) and rank each user's validation
    and test items with that user's model after every epoch count of ``cfg.epochs``, for every ``cfg.lr``.

    Returns ``{(lr, epochs): {"valid": ranks, "test": ranks}}``, ranks in the order of ``clients``; with the
    protocol's ``scored`` column when it has one (cold items). A user without training targets keeps the initial
    model. Each user's result depends only on their own data and the seed.
    """
    clients = np.asarray(clients, dtype=np.int64)
    trainable = np.array([task.weight(int(c)) > 0 for c in clients], dtype=bool)
    init = task.initial_shared()
    scorer = _Scorer(task.build_model(1)).eval()
    rows0 = [task.initial_personal(int(c)) for c in clients]
    personal0 = {k: torch.stack([r[k] for r in rows0]) for k in task.personal_names}  # (C, 1, ...)
    out = {}
    for lr in cfg.lr:
        client_cfg = ClientConfig(local_steps=1, lr=lr, personal_lr=cfg.personal_lr, optimizer=cfg.optimizer)
        weights = {k: v.unsqueeze(0).repeat(len(clients), *([1] * v.dim())) for k, v in init.items()}  # (C, ...)
        personal = {k: v.clone() for k, v in personal0.items()}
        idx = torch.as_tensor(np.flatnonzero(trainable), dtype=torch.long)

        def one(w, rows, example, client_cfg=client_cfg):
            return local_update(task.objective, w, rows, example, client_cfg)

        for epoch in range(1, cfg.epochs[-1] + 1):
            if len(idx):
                batch = task.collate([task.prepare(int(c), epoch) for c in clients[idx.numpy()]])
                with torch.no_grad():
                    delta, own, _ = vmap(one, randomness="error")({k: v[idx] for k, v in weights.items()},
                                                                  {k: v[idx] for k, v in personal.items()}, batch)
                for k in weights:
                    weights[k][idx] += delta[k]
                for k in personal:
                    personal[k][idx] = own[k]
            if epoch in cfg.epochs:
                out[(lr, epoch)] = {stage: _rank(task, scorer, clients, weights, personal, stage)
                                    for stage in ("valid", "test")}
                if hasattr(task.split, "scored"):
                    for stage in ("valid", "test"):
                        out[(lr, epoch)][f"{stage}_scored"] = task.split.scored(stage, clients).astype(np.int64)
    return out


class _Scorer(nn.Module):
    """``functional_call`` target whose forward is the model's full-catalogue scoring (parameters prefixed ``model.``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.full_sort_predict(batch)


def _rank(task: ClientTask, scorer: _Scorer, clients: np.ndarray, weights: dict, personal: dict, stage: str
          ) -> np.ndarray:
    """Each user's ``stage`` target rank under their own model, through the shared full-ranking evaluator."""

    def score_one(params, input_ids):  # one user's own parameters and padded history (T,)
        batch = {"input_ids": input_ids.unsqueeze(0), "users": torch.zeros(1, dtype=torch.long)}
        return functional_call(scorer, params, (batch,))[0]  # (N + 1,)

    def score_fn(batch):
        rows = batch["users"]  # the users' positions in the cohort
        params = {f"model.{k}": v[rows] for k, v in {**weights, **personal}.items()}  # (B, ...) each
        return vmap(score_one)(params, batch["input_ids"])  # (B, N + 1)

    histories, targets, _ = task.split.stage(stage, clients)
    return rank_targets(score_fn, histories, targets, np.arange(len(clients)), max_len=task.max_len,
                        batch_size=len(clients), mask_history=task.mask_history)


def run_local_only(task: ClientTask, cfg: LocalOnlyConfig, out_dir: Path, ks=(10, 20), progress: bool = True
                   ) -> LocalOnlyResult:
    """Train and rank every user's own model, cohort by cohort; choose ``(lr, epochs)`` on validation NDCG@10.

    Writes ``cohorts/NNNNN.npz`` (a finished cohort's ranks, for resuming), ``history.jsonl`` (one line per
    candidate configuration) and ``test_ranks.npz`` (the chosen configuration's test rank per user)."""
    out_dir = Path(out_dir)
    users = np.arange(task.num_clients)
    order = users[np.argsort([task.weight(int(u)) for u in users], kind="stable")]  # similar lengths together
    cohorts = [np.sort(order[i:i + cfg.cohort_size]) for i in range(0, len(order), cfg.cohort_size)]
    candidates = cfg.candidates()
    t0 = time.perf_counter()
    parts = []
    for i, cohort in enumerate(tqdm(cohorts, desc="cohorts", disable=not progress, dynamic_ncols=True)):
        path = out_dir / "cohorts" / f"{i:05d}.npz"
        if path.exists():  # finished before a restart
            columns = load_columns(path)
            if np.array_equal(columns["user"], cohort):
                parts.append(columns)
                continue
        ranked = train_cohort(task, cohort, cfg)
        columns = {"user": cohort}
        for j, key in enumerate(candidates):
            columns.update({f"{name}_{j}": v for name, v in ranked[key].items()})
        save_columns(path, columns)
        parts.append(columns)
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    by_user = np.argsort(columns["user"], kind="stable")
    columns = {k: v[by_user] for k, v in columns.items()}
    seconds = time.perf_counter() - t0

    def stage_metrics(stage: str, j: int) -> dict[str, float]:
        cols = {"rank": columns[f"{stage}_{j}"]}
        if f"{stage}_scored_{j}" in columns:
            cols["scored"] = columns[f"{stage}_scored_{j}"]
        return task.summarize(cols)

    watch = "NDCG@10" if 10 in ks else f"NDCG@{ks[0]}"
    history = History(out_dir / "history.jsonl")
    history.truncate(0)
    rows, best = [], 0
    for j, (lr, epochs) in enumerate(candidates):
        valid = stage_metrics("valid", j)
        rows.append({"lr": lr, "epochs": epochs, "valid": valid})
        history.append({"epoch": epochs, "lr": lr, **{f"valid/{k}": v for k, v in valid.items()}})
        if valid[watch] > rows[best]["valid"][watch]:
            best = j
    test_columns = {"user": columns["user"], "rank": columns[f"test_{best}"]}
    if f"test_scored_{best}" in columns:
        test_columns["scored"] = columns[f"test_scored_{best}"]
    save_columns(out_dir / "test_ranks.npz", test_columns)
    return LocalOnlyResult(best={"lr": candidates[best][0], "epochs": candidates[best][1]},
                           best_valid=rows[best]["valid"], test=stage_metrics("test", best), candidates=rows,
                           seconds=seconds)
