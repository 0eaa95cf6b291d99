"""The egress audit: proves, round by round, that a client sent only what it may.

For every record: its tensor names are exactly the task's declared shared names (never a personal parameter), and no
tensor it sent equals anything the client must keep: its raw interactions, its personal rows, or anything its
``prepare`` built that round (augmented or generated views, noise). The private side is read from the task, which
is possible in simulation (the audit's use: the tests of every recipe run with it).
"""

from __future__ import annotations

import torch

from ffmrec.errors import FFMRecError
from ffmrec.federated.engines.base import RoundResult
from ffmrec.federated.observers.base import Observer
from ffmrec.tasks.base import ClientTask, Params


class EgressViolation(FFMRecError):
    """A client sent something it must keep."""


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.numel() != b.numel() or a.numel() == 0:
        return False
    return bool(torch.equal(a.reshape(-1).double(), b.reshape(-1).double()))


class EgressAudit(Observer):
    def __init__(self, task: ClientTask, personal: dict | None = None):
        self.task = task
        self.personal_rows = personal  # optional callable: client -> its personal rows (the engine's store)
        self.audited = 0

    def needs_records(self, server_round: int) -> bool:
        return True

    def on_round(self, server_round: int, clients: list[int], shared: Params, result: RoundResult,
                 line: dict) -> None:
        declared = set(self.task.shared_names)
        personal = set(self.task.personal_names)
        for record in result.records:
            names = set(record.tensors)
            if names & personal:
                raise EgressViolation(f"round {server_round}: client {record.client_id} sent personal parameters "
                                      f"{sorted(names & personal)}")
            if names != declared:
                raise EgressViolation(f"round {server_round}: client {record.client_id} sent {sorted(names)}, "
                                      f"declared shared tensors are {sorted(declared)}")
            private = self.task.private_arrays(record.client_id, server_round)
            if self.personal_rows is not None:
                private.update({f"personal/{k}": v for k, v in self.personal_rows(record.client_id).items()})
            for name, sent in record.tensors.items():
                for what, secret in private.items():
                    if _same(sent, secret):
                        raise EgressViolation(f"round {server_round}: client {record.client_id}'s tensor {name!r} "
                                              f"equals its private {what!r}")
            self.audited += 1
        line["audited"] = len(result.records)
