"""The server-side strategy: a small base with explicit hooks (after Flower's ``Strategy``).

The driver loop (:mod:`ffmrec.federated.server`) calls, every round:

1. :meth:`Strategy.configure_round` -> the :class:`ClientConfig` sent to the sampled clients;
2. :meth:`Strategy.aggregate` -> one update from the clients' stacked shared-parameter deltas and weights;
3. :meth:`Strategy.apply` -> the new global shared parameters.

A strategy whose aggregate is the example-weighted mean sets ``linear = True``: engines may then reduce the clients'
updates chunk by chunk (or fuse them, see the fast simulator) instead of holding every update in memory.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ffmrec.federated.aggregation import WeightedSum, weighted_mean
from ffmrec.federated.client import ClientConfig
from ffmrec.tasks.base import Params


class Strategy:
    """Weighted averaging of client deltas, applied with a server learning rate (FedAvg when ``server_lr = 1``)."""

    linear = True

    def __init__(self, server_lr: float = 1.0):
        self.server_lr = server_lr

    def configure_round(self, server_round: int, client: ClientConfig) -> ClientConfig:
        return client

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        """``deltas[name]`` is ``(C, *shape)``, ``weights`` ``(C,)``; returns one delta per parameter."""
        return {name: weighted_mean(d, weights) for name, d in deltas.items()}

    def aggregate_sum(self, total: WeightedSum) -> Params:
        """A linear strategy's update from the round's weighted sum (records and partial sums, in client order): the
        weighted mean (central DP with device-side clipping adds its noise to the sum here)."""
        return total.mean()

    def apply(self, global_params: Params, delta: Params) -> Params:
        return {name: global_params[name] + self.server_lr * delta[name] for name in global_params}

    def state_dict(self) -> dict:
        """Everything the strategy must carry across rounds (checkpointed by the driver)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class FedAvg(Strategy):
    """FedAvg (McMahan et al., AISTATS 2017): the example-weighted mean of client models."""


class FedProx(FedAvg):
    """FedProx (Li et al., MLSys 2020): FedAvg whose clients add ``mu/2 ||w - w_global||^2`` to their loss."""

    def __init__(self, proximal_mu: float, server_lr: float = 1.0):
        super().__init__(server_lr)
        self.proximal_mu = proximal_mu

    def configure_round(self, server_round: int, client: ClientConfig) -> ClientConfig:
        return replace(client, proximal_mu=self.proximal_mu)
