"""Next-item training examples from per-user histories.

A history ``[i1, i2, ..., in]`` (the training part only) becomes the input ``[i1 .. i(n-1)]`` and the targets
``[i2 .. in]``: every position predicts the item that follows it. Only the last ``max_len`` positions are kept, and a
batch is left-padded to its own longest history (the models are exact under extra left padding).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def next_item_batch(histories: Sequence[np.ndarray], users: np.ndarray, max_len: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """``input_ids``/``targets`` ``(B, T)`` and ``users`` ``(B,)``; ``T`` is ``width`` or the longest example."""
    lengths = [min(len(h) - 1, max_len) for h in histories]
    T = width if width is not None else max(1, max(lengths, default=1))
    input_ids = np.zeros((len(histories), T), dtype=np.int64)
    targets = np.zeros((len(histories), T), dtype=np.int64)
    for row, (h, n) in enumerate(zip(histories, lengths)):
        if n > 0:
            input_ids[row, T - n:] = h[-n - 1:-1]
            targets[row, T - n:] = h[-n:]
    return {
        "input_ids": torch.from_numpy(input_ids),
        "targets": torch.from_numpy(targets),
        "users": torch.as_tensor(np.asarray(users), dtype=torch.long),
    }


def num_examples(history: np.ndarray, max_len: int) -> int:
    """Training targets a history yields (its weight in federated averaging)."""
    return max(0, min(len(history) - 1, max_len))


def iterate_batches(
    histories: Sequence[np.ndarray], max_len: int, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of batches over users that have at least one training target, shuffled when ``rng`` is given."""
    users = np.array([u for u, h in enumerate(histories) if len(h) >= 2], dtype=np.int64)
    if rng is not None:
        users = rng.permutation(users)
    for start in range(0, len(users), batch_size):
        chunk = users[start:start + batch_size]
        yield next_item_batch([histories[u] for u in chunk], chunk, max_len)
