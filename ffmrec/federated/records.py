"""One record per client per round: exactly what left the device, and the driver's check of it.

Every engine hands the driver a :class:`ClientRecord` for each client that answered (or, when neither an observer nor
the strategy needs per-client records, a :class:`PartialSum` of a group of clients). Before any observer or strategy
sees a record, :func:`check_record` verifies it against what the task declared: exactly the shared tensor names, their
shapes and dtypes, finite values, and a weight that is a positive integer no larger than the task's bound. A record
that fails is that client's failure (logged with the reason); the round goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ffmrec.tasks.base import Params, payload_bytes

Specs = dict[str, tuple[tuple[int, ...], torch.dtype]]


@dataclass
class ClientRecord:
    """What one client sent in one round."""

    client_id: int
    tensors: Params  # the (transformed) update of the shared parameters
    weight: int
    metrics: dict[str, float] = field(default_factory=dict)
    num_bytes: int = -1  # serialized size of ``tensors``; computed when not given

    def __post_init__(self) -> None:
        if self.num_bytes < 0:
            self.num_bytes = payload_bytes(self.tensors)


@dataclass
class PartialSum:
    """``sum_c n_c * u_c`` over ``count`` clients (a fused chunk, or a SuperNode's cohort): sent instead of records
    when nothing needs them."""

    sums: Params
    weight: float
    loss_sum: float
    count: int
    client_ids: list[int]
    num_bytes: int = -1

    def __post_init__(self) -> None:
        if self.num_bytes < 0:
            self.num_bytes = payload_bytes(self.sums)


class RecordError(ValueError):
    """A client's record does not match what the task declared."""


def _check_tensors(tensors: Params, specs: Specs, who: str) -> None:
    names, declared = set(tensors), set(specs)
    if names != declared:
        extra, missing = sorted(names - declared), sorted(declared - names)
        raise RecordError(f"{who} sent tensors {'extra ' + str(extra) if extra else ''}"
                          f"{' and ' if extra and missing else ''}{'missing ' + str(missing) if missing else ''}; "
                          "a client may send exactly the declared shared tensors")
    for name, (shape, dtype) in specs.items():
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise RecordError(f"{who}: tensor {name!r} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != tuple(shape):
            raise RecordError(f"{who}: tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        if t.dtype != dtype:
            raise RecordError(f"{who}: tensor {name!r} has dtype {t.dtype}, expected {dtype}")
        if not bool(torch.isfinite(t).all()):
            raise RecordError(f"{who}: tensor {name!r} has non-finite values (nan or inf)")


def _check_weight(weight, bound: int, who: str) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1 or weight > bound:
        raise RecordError(f"{who} claims weight {weight!r}: a weight must be an integer in [1, {bound}]")


def check_record(record: ClientRecord, specs: Specs, max_weight: int) -> None:
    """Raise :class:`RecordError` when ``record`` is not exactly a declared, finite, plausibly weighted update."""
    who = f"client {record.client_id}"
    _check_weight(record.weight, max_weight, who)
    _check_tensors(record.tensors, specs, who)


def check_partial(partial: PartialSum, specs: Specs, max_weight: int) -> None:
    """The same checks for a partial sum: its weight must be within ``count * max_weight``."""
    who = f"partial sum of clients {partial.client_ids[:3]}{'...' if len(partial.client_ids) > 3 else ''}"
    if partial.count != len(partial.client_ids) or partial.count < 1:
        raise RecordError(f"{who}: count {partial.count} does not match its {len(partial.client_ids)} client ids")
    weight = int(partial.weight) if float(partial.weight).is_integer() else partial.weight
    _check_weight(weight, partial.count * max_weight, who)
    # a partial sum carries float64 accumulations of the declared tensors
    _check_tensors(partial.sums, {k: (shape, partial.sums[k].dtype if k in partial.sums else dtype)
                                  for k, (shape, dtype) in specs.items()}, who)
