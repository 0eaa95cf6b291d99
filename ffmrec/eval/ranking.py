"""Full-ranking evaluation under the leave-one-out protocol.

Every item in the catalogue is scored; the target's rank is ``1 + #(items scored higher) + #(other items scored
equal)``: ties are broken pessimistically, so a model that scores everything equally ranks every target last, and the
result never depends on item order. Items of the user's own history are excluded (configurable), as in RecBole.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ffmrec.data.batching import pad_histories
from ffmrec.errors import ConfigError
from ffmrec.eval.metrics import ranking_metrics


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based pessimistic ranks ``(B,)`` of ``targets`` ``(B,)`` under ``scores`` ``(B, N)``; ``-inf`` never outranks.

    A target scored NaN ranks last (``N``: a miss at every cut-off), with a warning; other NaN scores never outrank.
    """
    target_scores = scores.gather(1, targets.unsqueeze(1))  # (B, 1)
    higher_or_tied = (scores >= target_scores).sum(dim=1)  # counts the target itself once; NaN compares False
    nan_target = torch.isnan(target_scores[:, 0])
    if bool(nan_target.any()):
        warnings.warn(f"{int(nan_target.sum())} target(s) scored NaN: ranked last (a miss); check the model for "
                      "non-finite parameters.", RuntimeWarning, stacklevel=2)
        higher_or_tied = torch.where(nan_target, torch.full_like(higher_or_tied, scores.shape[1]), higher_or_tied)
    return higher_or_tied.clamp(min=1)


def exclude_history(scores: torch.Tensor, histories: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Set the scores of history items ``(B, T)`` (0 = padding) to ``-inf``; the target itself stays a candidate."""
    target_scores = scores.gather(1, targets.unsqueeze(1))  # a repeated item must still be found
    scores = scores.scatter(1, histories, float("-inf"))
    return scores.scatter(1, targets.unsqueeze(1), target_scores)


@torch.no_grad()
def rank_targets(
    score_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    users: np.ndarray,
    *,
    max_len: int,
    batch_size: int = 512,
    mask_history: bool = True,
) -> np.ndarray:
    """Ranks of each user's target given their history, scoring the full catalogue in batches."""
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), batch_size):
        sl = slice(start, start + batch_size)
        input_ids = pad_histories(histories[sl], max_len)
        t = torch.as_tensor(targets[sl], dtype=torch.long)
        scores = score_fn({"input_ids": input_ids, "users": torch.as_tensor(users[sl], dtype=torch.long)})
        if mask_history:
            full = pad_histories(histories[sl], max(len(h) for h in histories[sl]))
            scores = exclude_history(scores, full, t)
        ranks[sl] = target_ranks(scores, t).numpy()
    return ranks


def evaluate_model(model, histories, targets, users, *, max_len, ks=(10, 20), batch_size=512, mask_history=True):
    """Full-ranking metrics of ``model`` (a :class:`~ffmrec.models.base.Recommender`) in eval mode."""
    was_training = model.training
    model.eval()
    try:
        ranks = rank_targets(model.full_sort_predict, histories, targets, users, max_len=max_len,
                             batch_size=batch_size, mask_history=mask_history)
    finally:
        model.train(was_training)
    return ranking_metrics(ranks, ks)


@dataclass
class EvalConfig:
    """How models are scored (leave-one-out, full ranking)."""

    ks: tuple[int, ...] = field(default=(10, 20), metadata={"help": "Cut-offs K for HR@K and NDCG@K."})
    mask_history: bool = field(default=True, metadata={"help": "Exclude the user's own history items from the ranking (RecBole's convention); the target itself always stays a candidate."})
    batch_size: int = field(default=1024, metadata={"help": "Users scored at once."})
    protocol: str = field(default="loo", metadata={"help": "'loo' (leave-one-out) or 'cold-items' (a seeded cold_fraction of the items is held out of every training sequence; the test scores the users whose last item is cold; see ffmrec.eval.cold)."})
    cold_fraction: float = field(default=0.1, metadata={"help": "Share of the catalogue held out as cold items (protocol=cold-items)."})

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"eval.ks={list(self.ks)} must be a non-empty list of cut-offs >= 1, e.g. [10, 20].")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size={self.batch_size} must be >= 1.")
        if self.protocol not in ("loo", "cold-items"):
            raise ConfigError(f"eval.protocol={self.protocol!r} is unknown: use 'loo' or 'cold-items'.")
        if not 0 < self.cold_fraction < 1:
            raise ConfigError(f"eval.cold_fraction={self.cold_fraction} must lie in (0, 1), e.g. 0.1.")


def split_ranks(model, split, stage: str, cfg: EvalConfig, max_len: int,
                users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(users, ranks)``: the users scored at ``stage`` ('valid' or 'test') and each one's target rank (``model``
    scored in eval mode)."""
    histories, targets, users = split.stage(stage, users)
    was_training = model.training
    model.eval()
    try:
        return users, rank_targets(model.full_sort_predict, histories, targets, users, max_len=max_len,
                                   batch_size=cfg.batch_size, mask_history=cfg.mask_history)
    finally:
        model.train(was_training)


def evaluate_split(model, split, stage: str, cfg: EvalConfig, max_len: int, users: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of ``model`` at ``stage`` ('valid' or 'test') of a :class:`~ffmrec.eval.protocol.LeaveOneOut` split."""
    histories, targets, users = split.stage(stage, users)
    return evaluate_model(model, histories, targets, users, max_len=max_len, ks=cfg.ks,
                          batch_size=cfg.batch_size, mask_history=cfg.mask_history)
