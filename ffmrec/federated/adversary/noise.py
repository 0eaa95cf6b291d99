"""Noisy histories: each user's training interactions partly replaced by random items.

A robustness setting of sequential recommendation (e.g. the noise experiments of "Denoising Self-Attentive Sequential
Recommendation", Chen et al., RecSys 2022): a share ``p`` of a user's observed history is replaced by items the user
never interacted with (misclicks, shared accounts). The corruption is a transform of the data before any task sees it:
the model trains and infers on the noisy history, and the held-out items of the leave-one-out split (the last two of
each sequence) are never touched, so the metrics still score the true next items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def noise_count(num_train: int, p: float) -> int:
    """Training items of a history of ``num_train`` that the noise replaces: ``floor(p * num_train)``."""
    return int(np.floor(p * num_train + 1e-9))


def noisy_history(sequence: np.ndarray, p: float, num_items: int, rng: np.random.Generator,
                  held_out: int = 2) -> np.ndarray:
    """``sequence`` with :func:`noise_count` of its first ``len - held_out`` items (distinct positions, uniformly drawn)
    replaced by items drawn uniformly, with replacement, from those of ``1..num_items`` absent from the whole sequence;
    the last ``held_out`` items are kept as they are."""
    sequence = np.asarray(sequence)
    num_train = max(len(sequence) - held_out, 0)
    count = noise_count(num_train, p)
    out = sequence.copy()
    if count == 0:
        return out
    unseen = np.setdiff1d(np.arange(1, num_items + 1), sequence)
    if len(unseen) == 0:
        return out  # the user has seen every item: nothing can be noise
    positions = rng.choice(num_train, size=count, replace=False)
    out[positions] = rng.choice(unseen, size=count, replace=True).astype(sequence.dtype)
    return out


def noisy_sequences(sequences: Sequence[np.ndarray], p: float, num_items: int, seed: int,
                    held_out: int = 2) -> list[np.ndarray]:
    """Every user's sequence through :func:`noisy_history`, user ``u`` with its own generator ``(seed, u)`` (so a
    Flower SuperNode holding some users corrupts them exactly as the fast simulator does)."""
    return [noisy_history(s, p, num_items, np.random.default_rng((seed, u, 0x5E0155)), held_out)
            for u, s in enumerate(sequences)]
