"""Fairness of a recommender's test ranking: who it serves well, and which items it shows.

- NDCG@K gap between user groups (user-oriented fairness, Li et al., "User-oriented Fairness in Recommendation",
  WWW 2021): between genders (M minus F), and between active and inactive users (the 20% with the most
  interactions against the rest, as Li et al. split advantaged users);
- item-exposure Gini at K: inequality of how often each catalogue item appears in the users' top-K lists (0: every
  item equally often, 1: one item gets all exposure; Gini, 1912, over all items, unexposed ones included);
- catalogue coverage at K: the share of items in at least one user's top-K list.

All pure functions of arrays; :func:`ranks_and_top_k` scores a model once for both the target ranks and the top-K.
"""

from __future__ import annotations

import numpy as np
import torch

from ffmrec.eval.metrics import ndcg


def ndcg_gap(ranks: np.ndarray, groups: np.ndarray, k: int = 20) -> float:
    """``NDCG@K(group 1) - NDCG@K(group 0)`` (users with another group label are ignored); NaN if a group is empty."""
    ranks, groups = np.asarray(ranks), np.asarray(groups)
    if not (groups == 0).any() or not (groups == 1).any():
        return float("nan")
    return ndcg(ranks[groups == 1], k) - ndcg(ranks[groups == 0], k)


def active_users(num_interactions: np.ndarray, share: float = 0.2) -> np.ndarray:
    """1 for the ``share`` of users with the most interactions (ties broken by user order), else 0."""
    n = np.asarray(num_interactions)
    out = np.zeros(len(n), dtype=np.int64)
    out[np.argsort(-n, kind="stable")[:int(round(share * len(n)))]] = 1
    return out


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative ``values`` (0 = all equal); 0 for an all-zero array."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * total))


def exposure_gini(top: np.ndarray, num_items: int) -> float:
    """Gini of the items' appearance counts in the top-K lists ``top`` ``(U, K)`` (item ids ``1..num_items``)."""
    counts = np.bincount(np.asarray(top).ravel(), minlength=num_items + 1)[1:num_items + 1]
    return gini(counts)


def coverage(top: np.ndarray, num_items: int) -> float:
    """Share of the catalogue that appears in at least one top-K list."""
    items = np.unique(np.asarray(top).ravel())
    return float(np.sum((items >= 1) & (items <= num_items)) / num_items)


def fairness_metrics(ranks: np.ndarray, top: np.ndarray, num_items: int, num_interactions: np.ndarray,
                     gender: np.ndarray | None = None, k: int = 20) -> dict[str, float]:
    """The flat fairness figures of a test ranking (``gender``: 0 = F, 1 = M, -1 unknown)."""
    top = np.asarray(top)[:, :k]
    out = {f"NDCG@{k}_gap_active": ndcg_gap(ranks, active_users(num_interactions), k),
           f"exposure_gini@{k}": exposure_gini(top, num_items), f"coverage@{k}": coverage(top, num_items)}
    if gender is not None:
        out[f"NDCG@{k}_gap_gender"] = ndcg_gap(ranks, gender, k)
    return out


@torch.no_grad()
def ranks_and_top_k(score_fn, histories, targets: np.ndarray, users: np.ndarray, *, max_len: int, k: int = 20,
                    batch_size: int = 512, mask_history: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each user's target rank (pessimistic ties, as :func:`ffmrec.eval.ranking.rank_targets`) and top-K item ids
    ``(U, K)`` (history masked like the ranking)."""
    from ffmrec.data.batching import pad_histories
    from ffmrec.eval.ranking import exclude_history, target_ranks

    ranks = np.empty(len(targets), dtype=np.int64)
    top = np.empty((len(targets), k), dtype=np.int64)
    for start in range(0, len(targets), batch_size):
        sl = slice(start, start + batch_size)
        t = torch.as_tensor(targets[sl], dtype=torch.long)
        scores = score_fn({"input_ids": pad_histories(histories[sl], max_len),
                           "users": torch.as_tensor(users[sl], dtype=torch.long)})
        if mask_history:
            scores = exclude_history(scores, pad_histories(histories[sl], max(len(h) for h in histories[sl])), t)
        ranks[sl] = target_ranks(scores, t).numpy()
        top[sl] = scores.topk(k, dim=1).indices.numpy()
    return ranks, top


def rank_fairness(ranks_file, dataset, k: int = 20) -> dict[str, float]:
    """The NDCG@K gaps of a finished run from its per-user test ranks (``test_ranks.npz``: columns ``user`` and
    ``rank``, optionally ``scored``): by activity always, by gender where the dataset's user attributes have it.
    Empty for a run without per-user ranks (set-based tasks); a gap whose group is empty is left out."""
    from pathlib import Path

    from ffmrec.utils.io import load_columns

    if not Path(ranks_file).is_file():
        return {}
    columns = load_columns(Path(ranks_file))
    if "rank" not in columns or "user" not in columns:
        return {}
    users, ranks = np.asarray(columns["user"], dtype=np.int64), np.asarray(columns["rank"])
    if "scored" in columns:
        keep = np.asarray(columns["scored"]) > 0
        users, ranks = users[keep], ranks[keep]
    out = {f"NDCG@{k}_gap_active": ndcg_gap(ranks, active_users(dataset.sequence_lengths())[users], k)}
    attributes = dataset.user_attributes
    if attributes is not None and "gender" in attributes.columns:
        first = attributes["gender"].astype(str).str.strip().str.upper().str[:1].to_numpy()
        gender = np.where(first == "M", 1, np.where(first == "F", 0, -1))
        out[f"NDCG@{k}_gap_gender"] = ndcg_gap(ranks, gender[users], k)
    return {key: value for key, value in out.items() if np.isfinite(value)}
