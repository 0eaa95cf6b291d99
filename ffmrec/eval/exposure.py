"""Exposure of one item: how widely a (promoted) target item is recommended.

The metric of targeted promotion attacks on recommenders (e.g. FedRecAttack, Rong et al., ICDE 2022; PIECK, Zhang et
al., ICDE 2024): ER@K, the share of users whose top-K recommendation list contains the target, among the users who
have not interacted with it (a user who already has the item tells nothing about the attack). The list is the top K
of the items the user has not seen, so the target's rank is the one :func:`ffmrec.eval.ranking.rank_targets` gives
with the user's history masked (pessimistic ties).
"""

from __future__ import annotations

import numpy as np


def exposure_rate(target_ranks: np.ndarray, k: int, eligible: np.ndarray | None = None) -> float:
    """ER@K: the share of eligible users whose 1-based rank of the target among their unseen items is ``<= k``.

    :param target_ranks: ``(U,)`` ranks of the target item per user (ignored where not eligible).
    :param eligible: ``(U,)`` booleans, True for users who never interacted with the target (default: all).
    :returns: 0.0 when no user is eligible.
    """
    ranks = np.asarray(target_ranks)
    if ranks.ndim != 1:
        raise ValueError(f"target_ranks must be a 1-D array, got shape {ranks.shape}")
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    mask = np.ones(len(ranks), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if mask.shape != ranks.shape:
        raise ValueError(f"eligible has shape {mask.shape}, target_ranks {ranks.shape}: one entry per user")
    if not mask.any():
        return 0.0
    ranks = ranks[mask]
    if np.any(ranks < 1):
        raise ValueError("ranks are 1-based: every eligible user's rank must be >= 1")
    return float(np.mean(ranks <= k))
