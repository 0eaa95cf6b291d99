"""What an engine does for the driver loop: run the sampled clients' rounds, evaluate on the devices, keep the devices'
personal state (current and best round) across a resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ffmrec.federated.client import ClientConfig
from ffmrec.federated.records import ClientRecord, PartialSum
from ffmrec.tasks.base import Params


@dataclass
class RoundResult:
    """The clients' answer to one round: a record per client (when asked for), or partial sums; and the failures."""

    records: list[ClientRecord] = field(default_factory=list)
    partials: list[PartialSum] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    #: what the server received from each client when it sees no record of it (secure aggregation: the masked vectors,
    #: :meth:`~ffmrec.federated.engines.flower.secagg.SecAggPlusEngine._received`), for the recorder; never aggregated
    received: list[ClientRecord] = field(default_factory=list)


class Engine(Protocol):
    def train_round(self, server_round: int, client_ids: list[int], shared: Params, cfg: ClientConfig,
                    want_records: bool) -> RoundResult: ...

    def evaluate(self, stage: str, shared: Params, clients: np.ndarray, best: bool = False,
                 server_round: int = 0) -> dict[str, np.ndarray]:
        """The task's per-client evaluation columns, in the order of ``clients`` (failed clients count as misses)."""

    def mark_best(self, server_round: int) -> None:
        """The devices keep their current personal state as the best round's."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
