"""Central (server-side) client-level differential privacy, as a wrapper of any strategy.

DP-FedAvg (McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018): each client's
whole update is clipped to L2 norm ``C``, the clipped updates are summed, ``N(0, (z C)^2 I)`` is added to the sum and
the sum is divided by the number of clients; the inner strategy's ``apply`` (FedAvg, FedAdam, ...) takes that noised
mean. Each round is a Gaussian mechanism on the sum (sensitivity ``C`` when one client is added or removed, ``2 C``
when one is replaced, as under ffmrec's fixed-size sampler), amplified by the sampling of the round's clients;
:mod:`ffmrec.privacy.accounting` gives the run's epsilon. Clients count equally (a weighted mean would let
one client's weight raise the sensitivity). Who clips (``clipping``):

- ``"server"`` (``federated.central_clip_norm=C``; Flower's ``DifferentialPrivacyServerSideFixedClipping``): the server
  reads every client's update and clips it (``linear = False``: the driver hands it the stacked records);
- ``"device"`` (``federated.central_clip_norm=null`` with ``federated.client_clip_norm=C``; Flower's
  ``DifferentialPrivacyClientSideFixedClipping`` with its ``fixedclipping_mod``): each device clips its own update
  (:class:`~ffmrec.federated.transforms.ClipNorm`) and states weight 1
  (:class:`~ffmrec.federated.transforms.metadata.UnitWeight`), so the round's weighted sum is the plain sum of the
  clipped updates and its total weight the number of clients; the server adds the noise to that sum
  (:meth:`CentralDP.aggregate_sum`; ``linear = True``). This is the mode that composes with secure aggregation
  (:mod:`ffmrec.federated.engines.flower.secagg`): SecAgg+ gives the server only the sum, which is all it needs.
  Flower's own wrapper is a legacy strategy that noises the inner strategy's (example-weighted) mean with
  ``z C / num_sampled``, which is the same mechanism only when every weight is equal and every sampled client
  answered; here the noise goes on the sum of the clients that did answer, whose weights are checked to be 1, in
  the one driver loop that every ffmrec engine (fast, Flower simulation, Flower deployment, SecAgg+) shares.

What it protects: the models the server releases (each round's global model and the final one) are differentially
private with respect to any one client's data. The server itself draws the noise, so it is trusted with it; with
secure aggregation it still never sees a single client's update, only the sum.

The noise comes from a secret seed drawn from the operating system when the run starts (and kept in the strategy's
checkpointed state, so that a resumed run ends with the same model); ``federated.noise_seed`` fixes it (experiments).
"""

from __future__ import annotations

import secrets

import torch

from ffmrec.errors import ConfigError, FFMRecError
from ffmrec.federated import aggregation as agg
from ffmrec.federated.strategies.base import Params, Strategy

CLIPPING = ("server", "device")


class CentralDP(Strategy):
    linear = False  # server-side clipping needs every client's update (device-side clipping: True, see __init__)

    def __init__(self, inner: Strategy, clip_norm: float, noise_multiplier: float, seed: int | None = None,
                 clipping: str = "server"):
        super().__init__(inner.server_lr)
        if clipping not in CLIPPING:
            raise ConfigError(f"central DP clipping={clipping!r} is unknown: use 'server' or 'device'.")
        if not clip_norm or not clip_norm > 0 or not noise_multiplier >= 0:
            which = "central_clip_norm" if clipping == "server" else "client_clip_norm"
            raise ConfigError(f"central DP needs federated.{which} > 0 (got {clip_norm}) and "
                              f"federated.central_noise_multiplier >= 0 (got {noise_multiplier}).")
        self.inner, self.clip_norm, self.noise_multiplier = inner, float(clip_norm), float(noise_multiplier)
        self.clipping = clipping
        self.linear = clipping == "device"  # the devices clipped: the sum is all the server needs
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        self.round = 0

    @classmethod
    def from_config(cls, inner: Strategy, fed) -> "CentralDP":
        """The wrapper a :class:`~ffmrec.federated.config.FederatedConfig` asks for: server-side clipping at
        ``central_clip_norm``, or, with ``central_clip_norm=null``, device-side clipping at ``client_clip_norm``."""
        seed = getattr(fed, "noise_seed", None)
        if getattr(fed, "central_clip_norm", 1.0) is None:
            return cls(inner, fed.client_clip_norm, fed.central_noise_multiplier, seed, clipping="device")
        return cls(inner, fed.central_clip_norm, fed.central_noise_multiplier, seed, clipping="server")

    def configure_round(self, server_round, client):
        self.round = int(server_round)
        return self.inner.configure_round(server_round, client)

    def _noised_mean(self, sums: Params, count: int, dtypes: dict[str, torch.dtype]) -> Params:
        """``(sum + N(0, (z C)^2 I)) / count``, the noise drawn per tensor in name order from the round's stream."""
        g = torch.Generator().manual_seed((self.seed + 0x9E3779B97F4A7C15 * self.round) % 2**63)
        std = self.noise_multiplier * self.clip_norm
        out = {}
        for name in sorted(sums):
            total = sums[name].double()
            noised = total + torch.randn(total.shape, generator=g, dtype=torch.float64) * std
            out[name] = (noised / count).to(dtypes[name])
        return out

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        """Stacked records ``(C, *shape)``: clipped by the server (server mode) or as the devices sent them."""
        clipped = agg.norm_bounded(deltas, self.clip_norm) if self.clipping == "server" else deltas
        sums = {name: v.double().sum(0) for name, v in clipped.items()}
        return self._noised_mean(sums, len(weights), {name: v.dtype for name, v in deltas.items()})

    def aggregate_sum(self, total: agg.WeightedSum) -> Params:
        """Device mode: the round's sum of clipped updates (records and partial sums, e.g. SecAgg+'s), each client of
        weight 1, plus the noise, over the number of clients."""
        if self.clipping == "server":
            raise FFMRecError("central DP with server-side clipping needs each client's record, not their sum.")
        if total.count < 1 or abs(total.weight - total.count) > 1e-6 * total.count:
            raise FFMRecError(f"central DP with device-side clipping needs every client to state weight 1 (the "
                              f"federated.client_clip_norm transform does): the round's {total.count} clients weigh "
                              f"{total.weight:g}.")
        return self._noised_mean(total.sums, total.count, {name: torch.float32 for name in total.sums})

    def apply(self, global_params: Params, delta: Params) -> Params:
        return self.inner.apply(global_params, delta)

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state.get("inner", {}))
        self.seed = int(state.get("seed", self.seed))
