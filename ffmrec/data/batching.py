"""The one batch builder: per-user examples, left-padded into batches.

A history ``[i1, i2, ..., in]`` (the training part only) becomes the input ``[i1 .. i(n-1)]`` and the targets
``[i2 .. in]``: every position predicts the item that follows it. Only the last ``max_len`` positions are kept, and a
batch is left-padded to its own longest example (the models are exact under extra left padding), so the most recent
item is always in the last column.

:func:`left_pad` pads any tensors along chosen time axes; :func:`pad_histories` (evaluation inputs),
:func:`next_item_example` (one client's training example) and :func:`collate` (a batch of examples, noise included)
are built on it, and :func:`next_item_batch` is ``collate`` of examples. :func:`by_length` encodes a large batch of
ragged rows bucket by bucket, each bucket trimmed of the padding it does not need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F


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


#: Bucket edges of :func:`by_length` (a row of length n goes to the first edge >= n; longer rows to the batch width).
LENGTH_EDGES = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def by_length(encode: Callable[[dict], torch.Tensor], batch: dict, time_axes: dict[str, tuple[int, ...]],
              edges: Sequence[int] = LENGTH_EDGES) -> torch.Tensor:
    """``encode(batch)`` (a model's hidden states ``(N, L, d)``, or one vector ``(N, d)`` per row) of left-padded rows
    ``batch["input_ids"]`` ``(N, L)``, computed bucket by bucket: rows grouped by their length (from their first
    item) under ``edges``, each group cut to its longest row; hidden states are left-padded back to ``L`` with zeros
    (padding positions carry no target). The models are exact under extra left padding, so the result equals
    ``encode(batch)`` up to float rounding (padding positions aside), at a cost that follows the rows' lengths
    instead of ``N x L`` (a beauty history is about 9 items long, a batch of them padded to 50). ``batch`` may hold
    ``users`` ``(N,)`` and ``noise`` ``{site: (N, ...)}``, cut along the site's time axes (``time_axes``, without
    the batch axis). Shapes depend on the data: never under ``torch.func.vmap``."""
    ids = batch["input_ids"]
    width = ids.shape[1]
    real = ids != 0
    lengths = torch.where(real.any(1), width - real.int().argmax(1), 1)  # (N,) from the first item; all padding: 1
    bounds = torch.as_tensor([e for e in edges if e < width] + [width])
    bucket = torch.bucketize(lengths, bounds)  # (N,): the first edge >= length
    groups = [torch.nonzero(bucket == b).squeeze(1) for b in range(len(bounds))]
    groups = [g for g in groups if len(g)]
    if len(groups) == 1 and int(lengths.max()) == width:
        return encode(batch)
    parts, order = [], []
    for rows in groups:
        t = int(lengths[rows].max())
        sub = {"input_ids": ids[rows, width - t:]}
        if "users" in batch:
            sub["users"] = batch["users"][rows]
        if "noise" in batch:
            sub["noise"] = {k: _cut(v[rows], time_axes.get(k, ()), t) for k, v in batch["noise"].items()}
        out = encode(sub)
        if out.dim() == 3:  # hidden states (n, t, d): zeros at the cut padding positions
            out = F.pad(out, (0, 0, width - t, 0))
        parts.append(out)
        order.append(rows)
    inverse = torch.empty(len(ids), dtype=torch.long)
    inverse[torch.cat(order)] = torch.arange(len(ids))
    return torch.cat(parts).index_select(0, inverse)  # in the rows' order


def _cut(x: torch.Tensor, axes: tuple[int, ...], t: int) -> torch.Tensor:
    """The last ``t`` entries of ``x`` ``(N, ...)`` along each time axis (axes counted without the batch axis)."""
    index = [slice(None)] * x.dim()
    for ax in axes:
        index[1 + ax] = slice(x.shape[1 + ax] - t, None)
    return x[tuple(index)]


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
