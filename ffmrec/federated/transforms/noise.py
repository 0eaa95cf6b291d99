"""Gaussian noise on the outgoing update: with :class:`~ffmrec.federated.transforms.ClipNorm` first, each client's
message is a Gaussian mechanism of its clipped update, i.e. local (client-level) differential privacy.

The Gaussian mechanism (Dwork & Roth, "The Algorithmic Foundations of Differential Privacy", 2014, Thm A.1; its RDP
form, Mironov, CSF 2017): releasing ``u + N(0, (z C)^2 I)`` for ``||u|| <= C`` is ``(alpha, alpha / (2 z^2))``-RDP
per message; :mod:`ffmrec.privacy.accounting` composes it over the rounds a client takes part in. The noise is drawn
from the client's own ``"transform"`` stream, seeded by the devices' secret
(:class:`~ffmrec.federated.engines.cohort.DeviceStore`), never by the run's seed, which the server knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ffmrec.errors import ConfigError
from ffmrec.federated.transforms import ClientTransform
from ffmrec.tasks.base import Params


@dataclass
class GaussianNoise(ClientTransform):
    """Add ``N(0, std^2)`` to every coordinate of each client's update (``std = noise_multiplier * clip_norm``)."""

    std: float

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ConfigError(f"Gaussian noise std={self.std} must be > 0: set federated.client_noise_multiplier > 0 "
                              "and federated.client_clip_norm > 0.")

    def __call__(self, stacked: Params, generators: list[torch.Generator]) -> Params:
        names = sorted(stacked)  # a fixed order of draws from each client's stream
        out = {k: stacked[k].clone() for k in names}
        for c, g in enumerate(generators):
            for k in names:
                v = out[k][c]
                v += (torch.randn(v.shape, generator=g, dtype=torch.float64) * self.std).to(v.dtype)
        return out


@dataclass
class Compose(ClientTransform):
    """Apply transforms in order (e.g. pseudo rows, then clipping, then noise)."""

    transforms: list[ClientTransform]

    def __call__(self, stacked: Params, generators: list[torch.Generator]) -> Params:
        for transform in self.transforms:
            stacked = transform(stacked, generators)
        return stacked

    def metadata(self, weight: int, metrics: dict[str, float]) -> tuple[int, dict[str, float]]:
        for transform in self.transforms:
            weight, metrics = transform.metadata(weight, metrics)
        return weight, metrics
