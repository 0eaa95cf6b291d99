"""The uniform recommender interface (after RecBole's ``calculate_loss`` / ``full_sort_predict``).

Trainers, client tasks and evaluators only ever call what this class declares, so they never special-case a model
or reach into its config.

A *batch* is a dict of tensors:

- ``input_ids``: ``(B, T)`` item ids of each history, left-padded with 0 (the most recent item is last);
- ``targets``: ``(B, T)`` the next item at each position, 0 where there is none (training only);
- ``users``: ``(B,)`` user index into the model's personal parameters (only for models that have any);
- ``noise`` (optional): a dict of uniform ``[0, 1)`` tensors, one per random site the model declares in
  :meth:`Recommender.noise_shapes`, each ``(B, ...)`` and right-aligned in time like ``input_ids``. A model given
  ``noise`` draws its dropout masks from it instead of torch's global generator, so that the same client draws the same
  masks in every engine (the client's task makes them from ``(seed, round, client)``);
- ``negatives`` (optional): sampled negative item ids for sampled losses, drawn the same way.

Every model declares which of its parameters are *personal*: they belong to one user, are trained on that user's
device and never leave it. All other trainable parameters are *shared* and are what federated clients send.
"""

from __future__ import annotations

import torch
from torch import nn


class Recommender(nn.Module):
    """Base class of every ffmrec recommender.

    Subclasses set :attr:`num_items` and :attr:`max_len` in ``__init__`` and implement :meth:`calculate_loss`,
    :meth:`encode_sequence` and :meth:`full_sort_predict`.
    """

    #: Names of parameters that belong to one user (shape ``(num_users, ...)``, row = user) and never leave the device.
    personal_parameters: tuple[str, ...] = ()
    #: Items in the catalogue (ids ``1..num_items``; 0 is padding).
    num_items: int
    #: Longest history the model reads; longer ones are cut to their most recent ``max_len`` items.
    max_len: int
    #: True when :meth:`calculate_loss` is the mean over target positions of a per-position loss that depends only
    #: on that position's own sequence (and its own noise and negatives). Then ``n * loss`` over a batch is the sum of
    #: the per-sequence sums, which is what the fast simulator's fused path relies on.
    loss_is_position_mean: bool = False
    #: Embedding tables (``(rows, d)``) of which one history touches only some rows.
    embedding_parameters: tuple[str, ...] = ()
    #: Item id of a learned mask token (an input-only item that is never scored, for masking augmentations such as
    #: CL4SRec's), or None when the model has none.
    mask_token_id: int | None = None

    def calculate_loss(self, batch: dict[str, torch.Tensor], *, compact: bool = True) -> torch.Tensor:
        """Training loss of a batch, a scalar.

        ``compact=True`` may drop padding positions with boolean indexing (fast, data-dependent shapes);
        ``compact=False`` keeps static shapes and masks instead, which ``torch.func.vmap`` needs.
        """
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor], compact: bool = True) -> torch.Tensor:
        """``model(batch)`` is the training loss, so that ``torch.func.functional_call`` can drive any model."""
        return self.calculate_loss(batch, compact=compact)

    def encode_sequence(self, batch: dict[str, torch.Tensor], compact: bool = False) -> torch.Tensor:
        """One vector ``(B, d)`` per history (the state after its latest item): what contrastive objectives compare.
        ``compact=True`` allows data-dependent shapes, as in :meth:`calculate_loss`."""
        raise NotImplementedError

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores ``(B, num_items + 1)`` for every item id given each history; column 0 (padding) is ``-inf``."""
        raise NotImplementedError

    def noise_shapes(self, length: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the uniform noise one history of ``length`` positions needs in training (no batch dimension),
        keyed by random site; every shape's time axes are ``length`` long. Empty when training is deterministic."""
        return {}

    def noise_time_axes(self) -> dict[str, tuple[int, ...]]:
        """For each site of :meth:`noise_shapes`, which axes (no batch dimension) run over time and are left-padded."""
        return {}

    def shared_parameter_names(self) -> list[str]:
        """Trainable parameters that are not personal, in a fixed order: what a federated client sends."""
        return [
            name
            for name, p in self.named_parameters()
            if p.requires_grad and name not in self.personal_parameters
        ]
