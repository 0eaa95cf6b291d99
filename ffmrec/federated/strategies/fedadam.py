"""FedAdam (Reddi et al., "Adaptive Federated Optimization", ICLR 2021).

The server treats the negated aggregated client delta as a gradient and takes an Adam step on the global parameters.
With bias correction (as ``torch.optim.Adam``), one local SGD step per client and example-weighted averaging, a round
over a batch of users takes the same step as centralized Adam on that batch.
"""

from __future__ import annotations

import torch

from ffmrec.federated.strategies.base import FedAvg, Params


class FedAdam(FedAvg):
    def __init__(self, server_lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, tau: float = 1e-8,
                 bias_correction: bool = True):
        super().__init__(server_lr)
        self.beta1, self.beta2, self.tau, self.bias_correction = beta1, beta2, tau, bias_correction
        self.m: Params = {}
        self.v: Params = {}
        self.t = 0

    def apply(self, global_params: Params, delta: Params) -> Params:
        self.t += 1
        c1 = 1 - self.beta1 ** self.t if self.bias_correction else 1.0
        c2 = 1 - self.beta2 ** self.t if self.bias_correction else 1.0
        new = {}
        for name, w in global_params.items():
            g = -delta[name]
            m = self.m.get(name, torch.zeros_like(w))
            v = self.v.get(name, torch.zeros_like(w))
            self.m[name] = m = self.beta1 * m + (1 - self.beta1) * g
            self.v[name] = v = self.beta2 * v + (1 - self.beta2) * g * g
            new[name] = w - self.server_lr * (m / c1) / ((v / c2).sqrt() + self.tau)
        return new

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.m, self.v, self.t = dict(state["m"]), dict(state["v"]), int(state["t"])
