"""How much an attacker learned: pure functions, labels and scores in, numbers out.

Binary traits (gender) are scored by ROC AUC (Hanley & McNeil, Radiology 1982: the Mann-Whitney statistic) and balanced
accuracy; multi-class traits (age group, occupation) by one-vs-rest macro AUC (Hand & Till, 2001 use pairwise; the
one-vs-rest mean is scikit-learn's ``ovr`` macro) and accuracy against the majority rate. Uncertainty: percentile
bootstrap intervals over the attacked users (Efron & Tibshirani, 1993) and a permutation p-value against chance
(the labels shuffled, the predictions kept; Ojala & Garriga, JMLR 2010), ``(1 + #{stat_perm >= stat}) / (1 + n)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """AUC of binary labels ``y`` (0/1) under ``scores`` (higher = class 1), ties counted half; NaN when ``y`` has
    one class only."""
    y = np.asarray(y).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """The mean over the classes present in ``y`` of each class's recall (0.5 for any constant binary guess)."""
    y, pred = np.asarray(y), np.asarray(pred)
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def macro_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray | None = None) -> float:
    """One-vs-rest AUC averaged over the classes that occur in ``y`` alongside others; ``proba`` is ``(n, k)`` with
    column ``j`` scoring class ``classes[j]`` (default ``j``). A class present in ``y`` but without a column scores
    0.5 (the attacker never saw it)."""
    y, proba = np.asarray(y), np.asarray(proba, dtype=np.float64)
    classes = np.arange(proba.shape[1]) if classes is None else np.asarray(classes)
    column = {int(c): j for j, c in enumerate(classes)}
    aucs = []
    for c in np.unique(y):
        if (y == c).all():
            continue
        aucs.append(roc_auc(y == c, proba[:, column[int(c)]]) if int(c) in column else 0.5)
    return float(np.mean(aucs)) if aucs else float("nan")


def majority_rate(y: np.ndarray) -> float:
    """Share of the most common label: the accuracy of always guessing it."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return float(counts.max() / counts.sum())


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, pred: np.ndarray,
                 n: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(y, pred)`` resampling users with replacement (resamples where the
    metric is undefined are skipped)."""
    y, pred = np.asarray(y), np.asarray(pred)
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        value = metric(y[idx], pred[idx])
        if np.isfinite(value):
            stats.append(value)
    if not stats:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def permutation_pvalue(metric: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, pred: np.ndarray,
                       n: int = 1000, seed: int = 0) -> float:
    """One-sided p-value of ``metric(y, pred)`` against chance: the share of label permutations scoring at least as
    high, ``(1 + #{perm >= observed}) / (1 + n)``."""
    y, pred = np.asarray(y), np.asarray(pred)
    observed = metric(y, pred)
    rng = np.random.default_rng(seed)
    hits = sum(metric(rng.permutation(y), pred) >= observed for _ in range(n))
    return float((1 + hits) / (1 + n))
