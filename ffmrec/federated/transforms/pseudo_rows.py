"""Hide which rows of an embedding table a client touched: pseudo-items (padded updates) or a dense update.

A client's update of an item table changes exactly the rows of the items it used (with a sampled loss; the full
softmax touches every output row but not equally), which tells the server the user's items. Following the pseudo-item
defence of federated matrix factorization (Lin et al., "FedRec: Federated Recommendation With Explicit Feedback",
IEEE Intelligent Systems 2021; Chai et al., "Secure Federated Matrix Factorization", 2020), each client also fills
``ratio`` times as many untouched rows, chosen at random from its own stream, with Gaussian rows whose norms follow
its real rows' (same mean and spread), so that a touched row and a pseudo row look alike; ``ratio=None`` fills every
untouched row (a dense update). Which tensors are tables is read from the update itself: 2-D tensors with some
all-zero rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ffmrec.errors import ConfigError
from ffmrec.federated.transforms import ClientTransform
from ffmrec.tasks.base import Params


@dataclass
class PseudoRows(ClientTransform):
    ratio: float | None = 1.0

    def __post_init__(self) -> None:
        if self.ratio is not None and not self.ratio > 0:
            raise ConfigError(f"federated.pseudo_item_ratio={self.ratio} must be > 0 (or 'dense' for every row).")

    def __call__(self, stacked: Params, generators: list[torch.Generator]) -> Params:
        out = {k: v.clone() for k, v in stacked.items()}
        for c, g in enumerate(generators):
            for k in sorted(out):
                table = out[k][c]
                if table.dim() != 2 or table.shape[0] < 2:
                    continue
                norms = table.double().norm(dim=1)
                touched = norms > 0
                free = torch.nonzero(~touched).flatten()
                if not bool(touched.any()) or len(free) == 0:
                    continue
                count = len(free) if self.ratio is None else min(len(free), int(round(self.ratio * int(touched.sum()))))
                rows = free[torch.randperm(len(free), generator=g)[:count]]
                real = norms[touched]
                target = real.mean() + real.std(unbiased=False) * torch.randn(count, generator=g, dtype=torch.float64)
                fake = torch.randn(count, table.shape[1], generator=g, dtype=torch.float64)
                fake = fake / fake.norm(dim=1, keepdim=True).clamp(min=1e-12) * target.abs().unsqueeze(1)
                table[rows] = fake.to(table.dtype)
        return out
