"""Ranking metrics as pure functions.

Single-target metrics (leave-one-out) take ``ranks``: the 1-based rank of each user's held-out item among all candidate
items (see :func:`ffmrec.eval.ranking.target_ranks` for how ties are broken). Set metrics (several relevant items, as in
conversational recommendation) take a ranked recommendation list and the set of relevant items.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from ffmrec.errors import ConfigError


def _check(ranks: np.ndarray, k: int | None = None) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    if np.any(ranks < 1):
        raise ValueError("ranks are 1-based: every rank must be >= 1")
    if k is not None and k < 1:
        raise ConfigError(f"k={k} must be >= 1: use a cut-off such as 10 or 20.")
    return ranks


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@K: the share of users whose held-out item is in their top K."""
    ranks = _check(ranks, k)
    return float(np.mean(ranks <= k))


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@K with one relevant item: ``1 / log2(rank + 1)`` when ``rank <= K``, else 0 (ideal DCG is 1)."""
    ranks = _check(ranks, k)
    gains = np.where(ranks <= k, 1.0 / np.log2(ranks.astype(np.float64) + 1.0), 0.0)
    return float(np.mean(gains))


def mrr(ranks: np.ndarray, k: int | None = None) -> float:
    """Mean reciprocal rank, optionally cut at K (reciprocal rank 0 beyond K)."""
    ranks = _check(ranks, k)
    rr = 1.0 / ranks.astype(np.float64)
    if k is not None:
        rr = np.where(ranks <= k, rr, 0.0)
    return float(np.mean(rr))


def _top_k(recommended: Sequence, k: int) -> list:
    """First K distinct recommendations: a duplicate recommendation never counts twice."""
    if k < 1:
        raise ConfigError(f"k={k} must be >= 1: use a cut-off such as 10 or 20.")
    seen: list = []
    for item in recommended:
        if item not in seen:
            seen.append(item)
        if len(seen) == k:
            break
    return seen


def precision_at_k(recommended: Sequence, relevant: Collection, k: int) -> float:
    """Relevant items among the top K, divided by K (a short list is not rewarded)."""
    top = _top_k(recommended, k)
    return sum(item in relevant for item in top) / k


def recall_at_k(recommended: Sequence, relevant: Collection, k: int) -> float:
    """Relevant items among the top K, divided by the number of relevant items (0 when there are none)."""
    if not relevant:
        return 0.0
    top = _top_k(recommended, k)
    return sum(item in relevant for item in top) / len(relevant)


def f1_at_k(recommended: Sequence, relevant: Collection, k: int) -> float:
    """Harmonic mean of precision@K and recall@K (0 when both are 0)."""
    p, r = precision_at_k(recommended, relevant, k), recall_at_k(recommended, relevant, k)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def hits_at_k(recommended: Sequence, relevant: Collection, k: int) -> float:
    """1.0 if any relevant item is in the top K, else 0.0."""
    return float(any(item in relevant for item in _top_k(recommended, k)))


def micro_precision_recall_f1(hits: np.ndarray, predicted: np.ndarray, relevant: np.ndarray) -> tuple[float, float, float]:
    """Micro-averaged set precision, recall and F1 over users: ``P = sum(hits) / sum(predicted)``,
    ``R = sum(hits) / sum(relevant)``, ``F1 = 2PR / (P + R)`` (each 0 when its denominator is 0).

    ``hits[u]`` counts user ``u``'s predictions that are relevant, ``predicted[u]`` the predictions made (a user whose
    prediction failed or came back empty still counts the K it owed), ``relevant[u]`` the size of its relevant set.
    Micro averaging weighs every prediction and every relevant item alike, as in conversational recommendation.
    """
    hits, predicted, relevant = (np.asarray(a, dtype=np.float64) for a in (hits, predicted, relevant))
    if np.any(hits < 0) or np.any(hits > predicted) or np.any(hits > relevant):
        raise ValueError("hits must lie in [0, min(predicted, relevant)] for every user")
    p = float(hits.sum() / predicted.sum()) if predicted.sum() > 0 else 0.0
    r = float(hits.sum() / relevant.sum()) if relevant.sum() > 0 else 0.0
    return p, r, (0.0 if p + r == 0 else 2 * p * r / (p + r))


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """The standard flat dict ``{"HR@10": ..., "NDCG@10": ..., ..., "MRR": ...}`` for one-target ranks."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate(ranks, k)
        out[f"NDCG@{k}"] = ndcg(ranks, k)
    out["MRR"] = mrr(ranks)
    return out
