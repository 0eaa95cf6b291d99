"""The device side of a SuperNode: its partition's task, one vectorised cohort, and its personal state on disk.

A SuperNode holds the users ``u`` with ``u % num-partitions == partition-id``. Its :class:`NodeRuntime` is built once
per process (the task loads the data of those users only once), runs the same
:class:`~ffmrec.federated.engines.cohort.Cohort` as the fast simulator over the users of each message, and keeps the
personal state as one table per node. Flower starts a new ClientApp process per message in the deployment engine and
runs messages in any of its Ray actors in the simulation engine, so the table lives in the node's own directory
(``device-dir`` in the node config, else ``<run-dir>/devices/partition-<id>``), one file per round:

* training round ``r`` starts from the file of the latest round before ``r`` (or, in per-user mode, from round ``r``'s
  own file when the same driver session already wrote it), and writes round ``r``'s file; the last three are kept;
* a driver that was killed and resumed has a new ``session``, so half-done rounds of the old one are ignored and the
  resumed run trains from exactly the state its checkpoint saw;
* ``mark-best`` copies the table of a round into the file's best slot, which later rounds carry forward; the test
  pairs the best round's shared parameters with it.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.cohort import Cohort
from ffmrec.federated.records import ClientRecord, PartialSum
from ffmrec.tasks.base import Params
from ffmrec.utils.io import load_checkpoint, save_checkpoint

_ROUND_FILE = re.compile(r"round-(\d{6})\.pt$")


class NodeRuntime:
    def __init__(self, task, partition: tuple[int, int], device_dir: Path, chunk_size: int = 128, transform=None):
        pid, num = partition
        self.task = task
        self.partition = partition
        self.clients = np.arange(pid, task.num_clients, num, dtype=np.int64)
        self.cohort = Cohort(task, self.clients, chunk_size=chunk_size, transform=transform)
        self.initial = self.cohort.store.state_dict()
        self.dir = Path(device_dir)
        self.lock = threading.Lock()

    # --- the state files -------------------------------------------------------------------------------------------
    def _rounds(self) -> list[int]:
        if not self.dir.exists():
            return []
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _ROUND_FILE.match(p.name)))

    def _path(self, server_round: int) -> Path:
        return self.dir / f"round-{server_round:06d}.pt"

    def _load(self, server_round: int) -> dict:
        state = load_checkpoint(self._path(server_round))
        return state or {"session": "", "round": 0, "store": self.initial}

    def _latest_before(self, server_round: int) -> dict:
        earlier = [r for r in self._rounds() if r < server_round]
        return self._load(earlier[-1] if earlier else 0)

    def _latest_at(self, server_round: int) -> dict:
        upto = [r for r in self._rounds() if r <= server_round]
        return self._load(upto[-1] if upto else 0)

    # --- messages --------------------------------------------------------------------------------------------------
    def train(self, server_round: int, ids, shared: Params, cfg: ClientConfig, session: str, want_records: bool
              ) -> tuple[list[ClientRecord], list[PartialSum], list[tuple[int, str]]]:
        with self.lock:
            own = load_checkpoint(self._path(server_round))
            if own is not None and own.get("session") == session:
                start = own  # per-user mode: earlier users of this round, same driver session
            else:
                start = self._latest_before(server_round)
            self.cohort.store.load_state_dict(start["store"])
            out = self.cohort.train(server_round, ids, shared, cfg, want_records)
            save_checkpoint(self._path(server_round),
                            {"session": session, "round": server_round, "store": self.cohort.store.state_dict()})
            for r in self._rounds():
                if 0 < r < server_round - 2:
                    self._path(r).unlink(missing_ok=True)
            return out

    def evaluate(self, stage: str, server_round: int, best: bool, ids, shared: Params) -> dict[str, np.ndarray]:
        with self.lock:
            self.cohort.store.load_state_dict(self._latest_at(server_round)["store"])
            return self.cohort.evaluate(stage, shared, ids, best=best)

    def mark_best(self, server_round: int) -> None:
        with self.lock:
            state = self._latest_at(server_round)
            self.cohort.store.load_state_dict(state["store"])
            self.cohort.store.mark_best()
            state["store"] = self.cohort.store.state_dict()
            save_checkpoint(self._path(state["round"]), state)  # round 0: the initial state, marked best
