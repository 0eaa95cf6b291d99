"""The observer hooks the driver loop calls every round."""

from __future__ import annotations

from ffmrec.federated.engines.base import RoundResult
from ffmrec.tasks.base import Params


class Observer:
    """Base: override what you need. ``records`` are the round's checked records (empty on the fused path)."""

    def needs_records(self, server_round: int) -> bool:
        return False

    def on_round(self, server_round: int, clients: list[int], shared: Params, result: RoundResult,
                 line: dict) -> None:
        """Called after the driver checked the round's records (``result.records`` holds only the good ones) and
        before aggregation; may add entries to the round's history ``line``."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
