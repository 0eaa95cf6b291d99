"""Robust aggregation against noisy and malicious clients.

Each class replaces the weighted mean by a robust statistic of the clients' deltas; none is linear, so engines hand
them every update of the round. :class:`NormBounded` wraps any strategy (clip, then the inner aggregate).
"""

from __future__ import annotations

import torch

from ffmrec.federated import aggregation as agg
from ffmrec.federated.strategies.base import Params, Strategy


class Median(Strategy):
    """Coordinate-wise median (Yin et al., ICML 2018)."""

    linear = False

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        return {name: agg.coordinate_median(d) for name, d in deltas.items()}


class TrimmedMean(Strategy):
    """Coordinate-wise trimmed mean (Yin et al., ICML 2018)."""

    linear = False

    def __init__(self, trim_ratio: float = 0.1, server_lr: float = 1.0):
        super().__init__(server_lr)
        self.trim_ratio = trim_ratio

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        return {name: agg.trimmed_mean(d, self.trim_ratio) for name, d in deltas.items()}


class Krum(Strategy):
    """(Multi-)Krum (Blanchard et al., NeurIPS 2017): average the ``multi`` clients closest to their neighbours."""

    linear = False

    def __init__(self, num_malicious: int = 1, multi: int = 1, server_lr: float = 1.0):
        super().__init__(server_lr)
        self.num_malicious, self.multi = num_malicious, multi

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        chosen = agg.krum(agg.flatten_updates(deltas), self.num_malicious, self.multi)
        chosen = torch.as_tensor(chosen, dtype=torch.long)
        return {name: agg.weighted_mean(d[chosen], weights[chosen]) for name, d in deltas.items()}


class NormBounded(Strategy):
    """Norm bounding (Sun et al., 2019): scale each client's whole delta to L2 norm <= ``max_norm``, then ``inner``."""

    linear = False

    def __init__(self, inner: Strategy, max_norm: float):
        super().__init__(inner.server_lr)
        self.inner, self.max_norm = inner, max_norm

    def configure_round(self, server_round, client):
        return self.inner.configure_round(server_round, client)

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        return self.inner.aggregate(agg.norm_bounded(deltas, self.max_norm), weights)

    def apply(self, global_params: Params, delta: Params) -> Params:
        return self.inner.apply(global_params, delta)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)
