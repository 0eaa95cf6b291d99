"""ffmrec's fast simulator: thousands of clients per round in one process, vectorised.

It is one :class:`~ffmrec.federated.engines.cohort.Cohort` of every client: the same ``prepare``, the same
:func:`~ffmrec.federated.client.local_update` (under ``torch.func.vmap``), the same client-side transform and the same
records as a Flower SuperNode runs for its partition. The simulated devices' storage, every user's personal rows
(current and best round), lives here and is part of the run's checkpoint.
"""

from __future__ import annotations

import numpy as np

from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.base import RoundResult
from ffmrec.federated.engines.cohort import Cohort
from ffmrec.federated.transforms import ClientTransform
from ffmrec.tasks.base import ClientTask, Params


class FastSimulator:
    def __init__(self, task: ClientTask, chunk_size: int = 128, transform: ClientTransform | None = None,
                 fused: bool = True):
        self.task = task
        self.cohort = Cohort(task, chunk_size=chunk_size, transform=transform, fused=fused)

    def train_round(self, server_round: int, client_ids: list[int], shared: Params, cfg: ClientConfig,
                    want_records: bool) -> RoundResult:
        records, partials, failures = self.cohort.train(server_round, client_ids, shared, cfg, want_records)
        return RoundResult(records, partials, failures)

    def evaluate(self, stage: str, shared: Params, clients: np.ndarray, best: bool = False,
                 server_round: int = 0) -> dict[str, np.ndarray]:
        return self.cohort.evaluate(stage, shared, clients, best=best)

    def mark_best(self, server_round: int) -> None:
        self.cohort.store.mark_best()

    def state_dict(self) -> dict:
        return self.cohort.store.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.cohort.store.load_state_dict(state)
