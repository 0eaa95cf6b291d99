"""Row-wise averaging of embedding tables.

A client's update of an item-embedding table touches only some rows (the items its loss involves). Averaging a row over
all clients shrinks it towards zero by the share of clients that never saw the item; row-wise FedAvg averages each row
over the clients that touched it, weighted by their examples (rows no client touched stay as they are).
"""

from __future__ import annotations

import torch

from ffmrec.federated import aggregation as agg
from ffmrec.federated.strategies.base import FedAvg, Params


class RowwiseFedAvg(FedAvg):
    linear = False

    def __init__(self, embedding_params: tuple[str, ...], server_lr: float = 1.0):
        super().__init__(server_lr)
        self.embedding_params = embedding_params

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        out = super().aggregate({k: v for k, v in deltas.items() if k not in self.embedding_params}, weights)
        for name in self.embedding_params:
            d = deltas[name]  # (C, R, dim)
            touched = d.flatten(2).ne(0).any(dim=2)  # (C, R)
            out[name] = agg.rowwise_weighted_mean(d, weights, touched)
        return out
