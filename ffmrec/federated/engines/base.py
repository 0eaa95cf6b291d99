"""What an engine does for the driver loop: run the sampled clients' updates, and score users for evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ffmrec.federated.client import ClientConfig

Params = dict[str, torch.Tensor]


@dataclass
class RoundResult:
    """The clients' answer to one round: a weighted mean of their deltas, or every delta when the strategy needs them."""

    num_ok: int
    failures: list[tuple[int, str]] = field(default_factory=list)
    total_weight: float = 0.0
    loss: float = float("nan")  # example-weighted mean of the clients' training losses
    mean_delta: Params | None = None
    deltas: Params | None = None  # (C_ok, *shape) per parameter
    weights: torch.Tensor | None = None  # (C_ok,)
    client_ids: list[int] = field(default_factory=list)  # the successful clients, in the order of ``deltas``


class Engine(Protocol):
    def train_round(self, server_round: int, client_ids: list[int], shared: Params, cfg: ClientConfig,
                    need_updates: bool) -> RoundResult: ...

    def rank(self, stage: str, shared: Params, users: np.ndarray) -> np.ndarray: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def reduce_outcomes(deltas: list[Params], weights: list[float], losses: list[float], need_updates: bool):
    """Stack per-client deltas (strategy needs them) or take their example-weighted mean."""
    w = torch.tensor(weights, dtype=torch.float64)
    total = float(w.sum())
    loss = float((w * torch.tensor(losses, dtype=torch.float64)).sum() / total) if total else float("nan")
    if need_updates:
        stacked = {k: torch.stack([d[k] for d in deltas]) for k in deltas[0]} if deltas else {}
        return total, loss, None, stacked, w.to(torch.float32)
    mean = {k: sum(float(wi) * d[k] for wi, d in zip(w, deltas)) / total for k in deltas[0]} if deltas else {}
    return total, loss, mean, None, w.to(torch.float32)
