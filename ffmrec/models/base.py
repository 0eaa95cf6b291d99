"""The uniform recommender interface (after RecBole's ``calculate_loss`` / ``full_sort_predict``).

Trainers, federated clients and evaluators only ever call these methods, so they never special-case a model.

A *batch* is a dict of tensors:

- ``input_ids``: ``(B, T)`` item ids of each history, left-padded with 0 (the most recent item is last);
- ``targets``: ``(B, T)`` the next item at each position, 0 where there is none (training only);
- ``users``: ``(B,)`` user index into the model's personal parameters (only for models that have any).

Every model declares which of its parameters are *personal*: they belong to one user, are trained on that user's
device and never leave it. All other trainable parameters are *shared* and are what federated clients send.
"""

from __future__ import annotations

import torch
from torch import nn


class Recommender(nn.Module):
    """Base class of every ffmrec recommender."""

    #: Names of parameters that belong to one user (shape ``(num_users, ...)``, row = user) and never leave the device.
    personal_parameters: tuple[str, ...] = ()

    def calculate_loss(self, batch: dict[str, torch.Tensor], *, compact: bool = True) -> torch.Tensor:
        """Training loss of a batch, a scalar.

        ``compact=True`` may drop padding positions with boolean indexing (fast, data-dependent shapes);
        ``compact=False`` keeps static shapes and masks instead, which ``torch.func.vmap`` needs.
        """
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor], compact: bool = True) -> torch.Tensor:
        """``model(batch)`` is the training loss, so that ``torch.func.functional_call`` can drive any model."""
        return self.calculate_loss(batch, compact=compact)

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores ``(B, num_items + 1)`` for every item id given each history; column 0 (padding) is ``-inf``."""
        raise NotImplementedError

    def shared_parameter_names(self) -> list[str]:
        """Trainable parameters that are not personal, in a fixed order: what a federated client sends."""
        return [
            name
            for name, p in self.named_parameters()
            if p.requires_grad and name not in self.personal_parameters
        ]
