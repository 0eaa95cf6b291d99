"""Central (server-side) client-level differential privacy, as a wrapper of any strategy.

DP-FedAvg (McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018; Flower's
``DifferentialPrivacyServerSideFixedClipping``): the server clips each client's whole update to L2 norm ``C``,
sums the clipped updates, adds ``N(0, (z C)^2 I)`` and divides by the number of clients, then hands that noised mean
to the inner strategy's ``apply`` (FedAvg, FedAdam, ...). Each round is a Gaussian mechanism of sensitivity ``C`` on
the sum, amplified by the sampling of the round's clients; :mod:`ffmrec.privacy.accounting` gives the run's epsilon.
Clients count equally (a weighted mean would let one client's weight raise the sensitivity).

The noise comes from a secret seed drawn from the operating system when the run starts (and kept in the strategy's
checkpointed state, so that a resumed run ends with the same model).
"""

from __future__ import annotations

import secrets

import torch

from ffmrec.errors import ConfigError
from ffmrec.federated import aggregation as agg
from ffmrec.federated.strategies.base import Params, Strategy


class CentralDP(Strategy):
    linear = False  # clipping needs every client's update

    def __init__(self, inner: Strategy, clip_norm: float, noise_multiplier: float, seed: int | None = None):
        super().__init__(inner.server_lr)
        if not clip_norm > 0 or not noise_multiplier >= 0:
            raise ConfigError(f"central DP needs federated.central_clip_norm > 0 (got {clip_norm}) and "
                              f"federated.central_noise_multiplier >= 0 (got {noise_multiplier}).")
        self.inner, self.clip_norm, self.noise_multiplier = inner, clip_norm, noise_multiplier
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        self.round = 0

    def configure_round(self, server_round, client):
        self.round = int(server_round)
        return self.inner.configure_round(server_round, client)

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        clipped = agg.norm_bounded(deltas, self.clip_norm)
        count = len(weights)
        g = torch.Generator().manual_seed((self.seed + 0x9E3779B97F4A7C15 * self.round) % 2**63)
        std = self.noise_multiplier * self.clip_norm
        out = {}
        for name in sorted(clipped):
            total = clipped[name].double().sum(0)
            noised = total + torch.randn(total.shape, generator=g, dtype=torch.float64) * std
            out[name] = (noised / count).to(deltas[name].dtype)
        return out

    def apply(self, global_params: Params, delta: Params) -> Params:
        return self.inner.apply(global_params, delta)

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state.get("inner", {}))
        self.seed = int(state.get("seed", self.seed))
