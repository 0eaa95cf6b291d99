"""Averaging LoRA adapters as products: the server's update is the clients' mean ``B·A``, not ``mean(B)·mean(A)``.

Each client ``c`` holds adapters ``(A_c, B_c)`` per adapted module (``A: (r, in)``, ``B: (out, r)``); what it changes
in the model is ``B_c A_c``. FedAvg of ``A`` and ``B`` separately (the FedTREK-LM reference code) returns
``mean(B) mean(A)``, which is not the average of the updates. This strategy computes ``M = sum_c w_c B_c A_c /
sum_c w_c`` exactly and sends back its best rank-``r`` factorization (Eckart-Young, by SVD ``M = U S V^T``):
``B = U_r S_r``, ``A = V_r^T`` (orthonormal rows, so a zero update never leaves ``A`` at zero and stuck). The rank-r
projection is exact whenever the clients' updates share a rank-r row space (e.g. FFA-LoRA's frozen ``A``); otherwise
it is the closest rank-r adapter to the average (the remainder is dropped, and reported as ``residual``).

Adapter pairs are found by name: ``…lora_A…`` and ``…lora_B…`` with the same prefix and suffix; any other shared
tensor is averaged plainly. The strategy needs every client's record (``linear = False``).
"""

from __future__ import annotations

import torch

from ffmrec.federated.aggregation import weighted_mean
from ffmrec.federated.strategies.base import Strategy
from ffmrec.tasks.base import Params


def lora_pairs(names) -> dict[str, str]:
    """``{A name: B name}`` of the adapter pairs among ``names``."""
    names = set(names)
    return {a: a.replace("lora_A", "lora_B") for a in sorted(names) if "lora_A" in a and a.replace("lora_A", "lora_B") in names}


def product_average(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(A', B', residual)`` from stacked client adapters ``a (C, r, in)``, ``b (C, out, r)`` and ``weights (C,)``:
    ``B' A'`` is the best rank-r approximation of ``sum_c w_c B_c A_c / sum_c w_c``; ``residual`` is the Frobenius
    norm of what the rank-r projection drops."""
    w = (weights.to(torch.float64) / weights.to(torch.float64).sum()).view(-1, 1, 1)
    mean = (w * torch.bmm(b.to(torch.float64), a.to(torch.float64))).sum(0)  # (out, in)
    u, s, vh = torch.linalg.svd(mean, full_matrices=False)
    r = a.shape[1]
    new_b = (u[:, :r] * s[:r]).to(b.dtype)  # (out, r)
    new_a = vh[:r].to(a.dtype)  # (r, in)
    return new_a, new_b, float(s[r:].norm())


class LoRAProductAverage(Strategy):
    """See the module docstring; ``server_lr`` is not used (the new adapters replace the old ones)."""

    linear = False

    def __init__(self, server_lr: float = 1.0):
        super().__init__(server_lr)
        self._round: tuple[Params, torch.Tensor] | None = None
        self.residual = 0.0

    def aggregate(self, deltas: Params, weights: torch.Tensor) -> Params:
        self._round = (deltas, weights)  # the products need the global adapters: computed in apply
        return {name: weighted_mean(d, weights) for name, d in deltas.items()}

    def apply(self, global_params: Params, delta: Params) -> Params:
        if self._round is None:  # nothing stacked (e.g. partial sums only): plain averaging
            return super().apply(global_params, delta)
        deltas, weights = self._round
        self._round = None
        out = super().apply(global_params, delta)  # plain mean for tensors outside a pair
        residual = 0.0
        for a_name, b_name in lora_pairs(global_params).items():
            a = global_params[a_name].unsqueeze(0) + deltas[a_name]  # (C, r, in): each client's A_c
            b = global_params[b_name].unsqueeze(0) + deltas[b_name]  # (C, out, r)
            out[a_name], out[b_name], res = product_average(a, b, weights)
            residual += res ** 2
        self.residual = residual ** 0.5
        return out
