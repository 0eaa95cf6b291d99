"""The recorder: saves the checked records of chosen rounds to ``RUN/egress/round-NNNNN.pt`` for offline attacks.

A file holds ``client_ids`` (C,), ``weights`` (C,), ``metrics`` (a dict of (C,) tensors) and ``tensors`` (a dict of
``(C, *shape)`` stacks), all plain tensors, readable with ``torch.load(path, weights_only=True)`` or
:func:`load_round`. Under secure aggregation the server has no record: the file holds what it received instead
(:attr:`~ffmrec.federated.engines.base.RoundResult.received`: each client's masked vector and public keys, and the
weight it stated, 0).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ffmrec.federated.engines.base import RoundResult
from ffmrec.federated.observers.base import Observer
from ffmrec.tasks.base import Params
from ffmrec.utils.io import save_checkpoint


class Recorder(Observer):
    def __init__(self, out_dir: Path, rounds):
        self.dir = Path(out_dir) / "egress"
        self.rounds = {int(r) for r in rounds}

    def needs_records(self, server_round: int) -> bool:
        return server_round in self.rounds

    def on_round(self, server_round: int, clients: list[int], shared: Params, result: RoundResult,
                 line: dict) -> None:
        if server_round not in self.rounds or not (result.records or result.received):
            return
        records = sorted(result.records or result.received, key=lambda r: r.client_id)
        metric_names = sorted({k for r in records for k in r.metrics})
        save_checkpoint(self.dir / f"round-{server_round:05d}.pt", {
            "client_ids": torch.tensor([r.client_id for r in records], dtype=torch.long),
            "weights": torch.tensor([r.weight for r in records], dtype=torch.long),
            "metrics": {m: torch.tensor([r.metrics.get(m, float("nan")) for r in records]) for m in metric_names},
            "tensors": {k: torch.stack([r.tensors[k] for r in records]) for k in records[0].tensors},
        })
        line["recorded"] = len(records)


def load_round(run_dir: Path, server_round: int) -> dict:
    """The records the recorder saved for ``server_round`` of the run in ``run_dir``."""
    return torch.load(Path(run_dir) / "egress" / f"round-{server_round:05d}.pt", weights_only=True)
