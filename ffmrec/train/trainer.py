"""Centralized training with early stopping, checkpoints and exact resume.

Every epoch draws its shuffle and dropout randomness from ``(seed, epoch)`` alone, and the checkpoint written after
each epoch holds the model, the optimizer, and the early-stopping state; so a run killed at any point and started
again with the same output folder ends exactly where an uninterrupted run ends. There is no checkpoint within an
epoch: an interrupted run redoes the epoch it was in (the CLI says so when interrupted).

By default an epoch is :func:`~ffmrec.data.batching.iterate_batches` and the loss is the model's ``calculate_loss``; a
method with its own objective (CL4SRec's contrastive term) passes ``make_batches(epoch, rng)`` and ``objective(batch)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ffmrec.data.batching import iterate_batches
from ffmrec.errors import ConfigError
from ffmrec.eval.metrics import ranking_metrics
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.eval.ranking import EvalConfig, evaluate_split, split_ranks
from ffmrec.models.base import Recommender
from ffmrec.utils.io import History, load_checkpoint, save_checkpoint, save_columns


@dataclass
class TrainConfig:
    """Centralized optimisation."""

    epochs: int = field(default=200, metadata={"help": "Maximum number of epochs."})
    batch_size: int = field(default=256, metadata={"help": "Users per batch (each contributes all its positions)."})
    lr: float = field(default=0.001, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay."})
    patience: int = field(default=10, metadata={"help": "Stop after this many evaluations without a better validation NDCG@10 (0 = never stop early)."})
    eval_every: int = field(default=1, metadata={"help": "Evaluate on validation every this many epochs."})

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)} must be >= 1.")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr} must be a finite number > 0, e.g. 0.001.")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay={self.weight_decay} must be a finite number >= 0, e.g. 0.0.")
        if self.patience < 0:
            raise ConfigError(f"train.patience={self.patience} must be >= 0 (0 disables early stopping).")


def _postfix(loss: float, state: dict) -> dict[str, str]:
    """The progress bar's postfix: the running loss, and the best validation score once there is one."""
    best = f"{state['best']:.4f} (epoch {state['best_epoch']})" if state["best_epoch"] else "not validated yet"
    return {"loss": f"{loss:.3f}", "best": best}


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    epochs_run: int
    seconds_per_epoch: float


def train(
    model: Recommender,
    split: LeaveOneOut,
    cfg: TrainConfig,
    eval_cfg: EvalConfig,
    out_dir: Path,
    seed: int,
    progress: bool = True,
    objective: Callable[[dict], torch.Tensor] | None = None,
    make_batches: Callable[[int, np.random.Generator], Iterable[dict]] | None = None,
) -> TrainResult:
    """Train ``model`` on the split's training sequences; early stopping on validation NDCG@10; test the best model.

    ``make_batches(epoch, rng)`` yields an epoch's batches (``rng`` is the epoch's shuffle generator) and
    ``objective(batch)`` is the scalar loss of one, computed with ``model``'s own parameters; by default
    :func:`~ffmrec.data.batching.iterate_batches` of the training histories and ``model.calculate_loss``.
    """
    max_len = model.max_len
    histories = split.train_sequences()
    if objective is None:
        objective = model.calculate_loss
    default_batches = make_batches is None
    if make_batches is None:
        def make_batches(epoch: int, rng: np.random.Generator) -> Iterable[dict]:
            return iterate_batches(histories, max_len, cfg.batch_size, rng)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = History(out_dir / "history.jsonl")
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad": 0, "best_valid": {}, "train_seconds": 0.0}
    ckpt = load_checkpoint(out_dir / "checkpoint.pt")
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
    history.truncate(state["epoch"])  # lines past the checkpoint (or all, without one) are redone
    watch = f"NDCG@{eval_cfg.ks[0]}" if 10 not in eval_cfg.ks else "NDCG@10"
    # progress within the epoch (batches; an epoch's length is known after the first one), the epoch against the cap
    bar = tqdm(total=None, desc="epoch", unit="batch", disable=not progress, dynamic_ncols=True)
    expected = math.ceil(sum(len(h) >= 2 for h in histories) / cfg.batch_size) if default_batches else None
    stopped = cfg.patience > 0 and state["bad"] >= cfg.patience  # a resumed run that had already stopped
    while state["epoch"] < cfg.epochs and not stopped:
        epoch = state["epoch"] + 1
        torch.manual_seed(seed * 100_003 + epoch)
        rng = np.random.default_rng((seed, epoch))
        model.train()
        t0 = time.perf_counter()
        total, batches = 0.0, 0
        bar.reset(total=expected)
        bar.set_description(f"epoch {epoch}/{cfg.epochs}" + (" (or early stop)" if cfg.patience else ""))
        for batch in make_batches(epoch, rng):
            loss = objective(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            batches += 1
            bar.update(1)
            if batches % 10 == 1:
                bar.set_postfix(_postfix(total / batches, state), refresh=False)
        expected = batches
        seconds = time.perf_counter() - t0
        state["train_seconds"] += seconds
        line = {"epoch": epoch, "loss": total / max(batches, 1), "seconds": round(seconds, 3)}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            valid = evaluate_split(model, split, "valid", eval_cfg, max_len)
            line.update({f"valid/{k}": v for k, v in valid.items()})
            if valid[watch] > state["best"]:
                state.update(best=valid[watch], best_epoch=epoch, bad=0, best_valid=valid)
                save_checkpoint(out_dir / "best_model.pt", {"model": model.state_dict(), "epoch": epoch})
            else:
                state["bad"] += 1
                stopped = cfg.patience > 0 and state["bad"] >= cfg.patience
        state["epoch"] = epoch
        history.append(line)
        save_checkpoint(out_dir / "checkpoint.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state})
        bar.set_postfix(_postfix(line["loss"], state))
    bar.close()
    best = load_checkpoint(out_dir / "best_model.pt")
    if best is not None:
        model.load_state_dict(best["model"])
    users, ranks = split_ranks(model, split, "test", eval_cfg, max_len)
    save_columns(out_dir / "test_ranks.npz", {"user": users, "rank": ranks})  # per user, for paired tests
    test = ranking_metrics(ranks, eval_cfg.ks)
    return TrainResult(
        best_epoch=state["best_epoch"],
        best_valid=state["best_valid"],
        test=test,
        epochs_run=state["epoch"],
        seconds_per_epoch=state["train_seconds"] / max(state["epoch"], 1),
    )
