"""Hide what a record's metadata says about the user: the weight (its number of training examples, i.e. the history
length) and the training loss.

An honest-but-curious server reads both from every :class:`~ffmrec.federated.records.ClientRecord`, and both carry
the user's traits (activity and taste correlate with gender and age). With :class:`HideMetadata` every client claims
weight 1 (the server then averages clients uniformly: unweighted FedAvg, as DP-FedAvg does) and reports its loss as
NaN ("not reported"), the same in every engine. The update tensors are left as they are: compose it with clipping,
noise and pseudo rows to hide those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ffmrec.federated.transforms import ClientTransform
from ffmrec.tasks.base import Params


@dataclass
class HideMetadata(ClientTransform):
    """Send weight 1 and no loss (NaN) in every record; the update itself passes unchanged."""

    def __call__(self, stacked: Params, generators: list[torch.Generator]) -> Params:
        return stacked

    def metadata(self, weight: int, metrics: dict[str, float]) -> tuple[int, dict[str, float]]:
        return 1, {name: float("nan") for name in metrics}


@dataclass
class UnitWeight(ClientTransform):
    """Send weight 1 (the loss as it is): central DP with device-side clipping
    (:class:`~ffmrec.federated.strategies.central_dp.CentralDP`) adds its noise to the plain sum of the clipped
    updates, so every client must count once."""

    def __call__(self, stacked: Params, generators: list[torch.Generator]) -> Params:
        return stacked

    def metadata(self, weight: int, metrics: dict[str, float]) -> tuple[int, dict[str, float]]:
        return 1, metrics
