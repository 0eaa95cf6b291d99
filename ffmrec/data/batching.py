"""The one batch builder: per-user examples, left-padded into batches.

A history ``[i1, i2, ..., in]`` (the training part only) becomes the input ``[i1 .. i(n-1)]`` and the targets
``[i2 .. in]``: every position predicts the item that follows it. Only the last ``max_len`` positions are kept, and a
batch is left-padded to its own longest example (the models are exact under extra left padding), so the most recent
item is always in the last column.

:func:`left_pad` pads any tensors along chosen time axes; :func:`pad_histories` (evaluation inputs),
:func:`next_item_example` (one client's training example) and :func:`collate` (a batch of examples, noise included)
are built on it, and :func:`next_item_batch` is ``collate`` of examples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def left_pad(tensors: Sequence[torch.Tensor], axes: tuple[int, ...] = (0,), value: float = 0) -> torch.Tensor:
    """Stack ``tensors`` (same rank, no batch dimension) into ``(B, ...)``, left-padding each of ``axes`` to the
    longest; a tensor's own entries stay right-aligned."""
    shape = list(tensors[0].shape)
    for ax in axes:
        shape[ax] = max(t.shape[ax] for t in tensors)
    out = torch.full((len(tensors), *shape), value, dtype=tensors[0].dtype)
    for row, t in enumerate(tensors):
        index = [row] + [slice(None)] * t.dim()
        for ax in axes:
            index[1 + ax] = slice(shape[ax] - t.shape[ax], shape[ax])
        out[tuple(index)] = t
    return out


def pad_histories(sequences: Sequence[np.ndarray], max_len: int) -> torch.Tensor:
    """Left-pad (and left-truncate) histories to a ``(B, min(max_len, longest))`` LongTensor."""
    width = max(1, min(max_len, max((len(s) for s in sequences), default=1)))
    return left_pad([torch.zeros(width, dtype=torch.long)]
                    + [torch.as_tensor(np.asarray(s[-width:]), dtype=torch.long) for s in sequences])[1:]


def num_examples(history: np.ndarray, max_len: int) -> int:
    """Training targets a history yields (its weight in federated averaging)."""
    return max(0, min(len(history) - 1, max_len))


def next_item_example(history: np.ndarray, max_len: int) -> dict[str, torch.Tensor]:
    """``input_ids`` / ``targets`` ``(n,)`` of one history, ``n = num_examples(history, max_len)``."""
    n = num_examples(history, max_len)
    h = torch.as_tensor(np.asarray(history[len(history) - n - 1:]), dtype=torch.long)
    return {"input_ids": h[:-1], "targets": h[1:]}


def collate(examples: Sequence[dict], time_axes: dict[str, tuple[int, ...]] | None = None) -> dict:
    """Batch examples: sequence tensors are left-padded along time (``time_axes[key]``, default axis 0 for
    ``input_ids``/``targets`` and none for anything else), ``noise`` sub-dicts likewise (padded with 1: kept units),
    scalars stacked."""
    time_axes = time_axes or {}
    out: dict = {}
    for key in examples[0]:
        values = [e[key] for e in examples]
        if isinstance(values[0], dict):
            out[key] = {k: left_pad([v[k] for v in values], time_axes.get(k, ()), 1.0) for k in values[0]}
        elif values[0].dim() == 0:
            out[key] = torch.stack(values)
        else:
            out[key] = left_pad(values, time_axes.get(key, (0,)))
    return out


def next_item_batch(histories: Sequence[np.ndarray], users: np.ndarray, max_len: int) -> dict[str, torch.Tensor]:
    """``input_ids``/``targets`` ``(B, T)`` and ``users`` ``(B,)``; ``T`` is the longest example."""
    examples = [next_item_example(h, max_len) for h in histories]
    for e, u in zip(examples, np.asarray(users)):
        if len(e["input_ids"]) == 0:  # a history with no target still takes a (padding) column
            e["input_ids"] = e["targets"] = torch.zeros(1, dtype=torch.long)
        e["users"] = torch.tensor(int(u))
    return collate(examples)


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
