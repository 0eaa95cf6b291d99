"""Client-side transforms of the outgoing update: applied on the device, after local training, before anything leaves.

This is where clipping and noise for differential privacy go. A transform maps a group of clients' stacked updates
``(C, *shape)`` to what they send, row by row (client ``c`` only ever sees its own row and its own generator), so that
it gives the same result whether an engine runs clients one at a time (Flower, per user) or in chunks (the fast
simulator, a SuperNode's cohort). Every engine applies it through :func:`apply_transform`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ffmrec.errors import ConfigError
from ffmrec.tasks.base import Params


class ClientTransform:
    """Base: ``__call__(stacked, generators) -> stacked``; ``generators[c]`` is client ``c``'s own stream, seeded by
    the devices' secret (:class:`~ffmrec.federated.engines.cohort.DeviceStore`), or by ``noise_seed`` when it is set."""

    #: ``federated.noise_seed``: the devices' secret for reproducible experiments (None: drawn from the OS)
    noise_seed: int | None = None

    def __call__(self, stacked: Params, generators: list[torch.Generator]) -> Params:
        raise NotImplementedError

    def metadata(self, weight: int, metrics: dict[str, float]) -> tuple[int, dict[str, float]]:
        """The weight and metrics a client reports with its update (default: the true ones)."""
        return weight, metrics


@dataclass
class ClipNorm(ClientTransform):
    """Scale each client's whole update to L2 norm at most ``max_norm`` (the clipping step of DP-FedAvg,
    McMahan et al., ICLR 2018): ``u * min(1, max_norm / ||u||)``."""

    max_norm: float

    def __post_init__(self) -> None:
        if not self.max_norm > 0:
            raise ConfigError(f"federated.client_clip_norm={self.max_norm} must be > 0 (or null for no clipping).")

    def __call__(self, stacked: Params, generators: list[torch.Generator]) -> Params:
        sq = sum(v.double().flatten(1).pow(2).sum(1) for v in stacked.values())  # (C,)
        scale = (self.max_norm / sq.sqrt().clamp(min=1e-12)).clamp(max=1.0)
        return {k: (v.double() * scale.view(-1, *([1] * (v.dim() - 1)))).to(v.dtype) for k, v in stacked.items()}


def build_transform(cfg) -> ClientTransform | None:
    """The transform a :class:`~ffmrec.federated.config.FederatedConfig` asks for (None: send the update as is):
    pseudo rows, then clipping, then Gaussian noise (local DP), then hidden metadata (or weight 1 for central DP with
    device-side clipping), each when configured."""
    from ffmrec.federated.transforms.metadata import HideMetadata, UnitWeight
    from ffmrec.federated.transforms.noise import Compose, GaussianNoise
    from ffmrec.federated.transforms.pseudo_rows import PseudoRows

    parts: list[ClientTransform] = []
    ratio = getattr(cfg, "pseudo_item_ratio", None)
    if ratio is not None:
        parts.append(PseudoRows(ratio or None))
    if cfg.client_clip_norm is not None:
        parts.append(ClipNorm(cfg.client_clip_norm))
    if getattr(cfg, "client_noise_multiplier", None):
        parts.append(GaussianNoise(cfg.client_noise_multiplier * cfg.client_clip_norm))
    if getattr(cfg, "hide_metadata", False):
        parts.append(HideMetadata())
    elif getattr(cfg, "central_noise_multiplier", None) is not None and getattr(cfg, "central_clip_norm", 1.0) is None:
        parts.append(UnitWeight())  # central DP with device-side clipping: every client counts once
    transform = None if not parts else parts[0] if len(parts) == 1 else Compose(parts)
    if transform is not None:
        transform.noise_seed = getattr(cfg, "noise_seed", None)  # the devices' secret (None: drawn from the OS)
    return transform
