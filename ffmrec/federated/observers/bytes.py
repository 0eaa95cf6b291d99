"""Bytes each round moved between the server and the devices, from the device's point of view.

``bytes_down``: the shared parameters each sampled client received; ``bytes_up``: the serialized size of what each
client that answered sent (its record's ``num_bytes``; a client inside a partial sum sent one declared update). How a
transport groups clients (Flower cohorts) does not change these numbers, so they are equal in every engine.
"""

from __future__ import annotations

from ffmrec.federated.engines.base import RoundResult
from ffmrec.federated.observers.base import Observer
from ffmrec.tasks.base import Params, payload_bytes


class ByteCounter(Observer):
    def __init__(self) -> None:
        self.total_up = 0
        self.total_down = 0

    def on_round(self, server_round: int, clients: list[int], shared: Params, result: RoundResult,
                 line: dict) -> None:
        per_client = payload_bytes(shared)
        up = sum(r.num_bytes for r in result.records) + sum(p.count * per_client for p in result.partials)
        down = len(clients) * per_client
        self.total_up += up
        self.total_down += down
        line["bytes_up"] = up
        line["bytes_down"] = down

    def state_dict(self) -> dict:
        return {"up": self.total_up, "down": self.total_down}

    def load_state_dict(self, state: dict) -> None:
        self.total_up, self.total_down = int(state["up"]), int(state["down"])
