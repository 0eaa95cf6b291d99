"""A trivial client task: per-user linear regression (the anchor's trivial client, and the Flower engines' smoke test).

User ``u`` holds ``examples`` points ``(x, y)`` drawn from its own seed, ``y = W_true x + b_u + noise`` with
``x`` in ``R^dim`` and ``y`` in ``R^out``; the shared parameter is the linear layer's ``weight`` ``(out, dim)`` and the
personal state the user's bias ``b`` ``(1, out)``, which never leaves the device. The objective is the mean squared
error over the client's examples (a mean over examples: the fused path is exact). ``fail_users`` raise on purpose
(tests). Evaluation reports the negated MSE per client (higher is better, like every validation metric).

In Flower engines the task is reached through :func:`from_flat` (``method-resolver`` in the run config); the flat
keys are ``num-users``, ``dim``, ``out``, ``examples``, ``seed``, ``fail-users``, ``rounds``, ``clients-per-round``,
``lr``, ``strategy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ffmrec.data.batching import collate
from ffmrec.tasks.base import ClientTask, Params, client_generator


@dataclass
class LinearConfig:
    num_users: int = 6
    dim: int = 10
    out: int = 1
    examples: int = 8
    seed: int = 0
    fail_users: tuple[int, ...] = ()


class _Linear(nn.Module):
    def __init__(self, dim: int, out: int, num_users: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out, dim))
        self.b = nn.Parameter(torch.zeros(num_users, out))

    def forward(self, batch: dict, compact: bool = True) -> torch.Tensor:
        pred = batch["x"] @ self.weight.T + self.b[batch["users"]].unsqueeze(-2)  # (B, n, out)
        return ((pred - batch["y"]) ** 2).mean()


class LinearTask(ClientTask):
    fusable = True
    metric_kind = "regression"

    def __init__(self, cfg: LinearConfig, clients: np.ndarray | None = None):
        self.cfg = cfg
        self.seed = cfg.seed
        self.model = _Linear(cfg.dim, cfg.out, 1)
        self.shared_names = ["weight"]
        self.personal_names = ("b",)
        g = torch.Generator().manual_seed(cfg.seed)
        self.w_true = torch.randn(cfg.out, cfg.dim, generator=g)

    @property
    def num_clients(self) -> int:
        return self.cfg.num_users

    def weight(self, client: int) -> int:
        return self.cfg.examples

    @property
    def max_weight(self) -> int:
        return self.cfg.examples

    def initial_shared(self) -> Params:
        return {"weight": torch.zeros(self.cfg.out, self.cfg.dim)}

    def initial_personal(self, client: int) -> Params:
        return {"b": torch.zeros(1, self.cfg.out)}

    def data(self, client: int, stage: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        g = client_generator(self.seed, 0, client, f"data/{stage}")
        x = torch.randn(self.cfg.examples, self.cfg.dim, generator=g)
        bias = float(client % 3) - 1.0
        y = x @ self.w_true.T + bias + 0.01 * torch.randn(self.cfg.examples, self.cfg.out, generator=g)
        return x, y

    def prepare(self, client: int, server_round: int) -> dict:
        if client in self.cfg.fail_users:
            raise RuntimeError(f"linear client {client} fails on purpose")
        x, y = self.data(client)
        return {"x": x, "y": y, "users": torch.tensor(0)}

    def collate(self, prepared: Sequence[dict]) -> dict:
        return collate(prepared, {"x": (), "y": ()})

    def objective(self, params: Params, batch: dict, *, compact: bool = False) -> torch.Tensor:
        return functional_call(self.model, params, (batch,), {"compact": compact})

    @torch.no_grad()
    def evaluate(self, stage: str, shared: Params, personal: Params, clients: np.ndarray) -> dict[str, np.ndarray]:
        out = []
        for i, c in enumerate(np.asarray(clients)):
            x, y = self.data(int(c), stage)
            pred = x @ shared["weight"].T + personal["b"][i].reshape(1, -1)
            out.append(float(((pred - y) ** 2).mean()))
        return {"mse": np.array(out, dtype=np.float64)}

    def summarize(self, columns: dict[str, np.ndarray]) -> dict[str, float]:
        return {"neg_MSE": -float(np.mean(columns["mse"]))}

    def failed_columns(self, num: int) -> dict[str, np.ndarray]:
        return {"mse": np.full(num, np.inf)}


def _ints(value) -> tuple[int, ...]:
    if value in (None, ""):
        return ()
    return tuple(int(v) for v in str(value).replace(";", ",").split(",") if v.strip())


def from_flat(flat: dict):
    """The Flower resolver for this task: ``(config, build_task(config, partition))``."""
    from ffmrec.federated.client import ClientConfig
    from ffmrec.federated.config import FederatedConfig

    cfg = LinearConfig(num_users=int(flat.get("num-users", 6)), dim=int(flat.get("dim", 10)),
                       out=int(flat.get("out", 1)), examples=int(flat.get("examples", 8)),
                       seed=int(flat.get("seed", 0)), fail_users=_ints(flat.get("fail-users")))
    fed = FederatedConfig(rounds=int(flat.get("rounds", 2)), strategy=str(flat.get("strategy", "fedavg")),
                          clients_per_round=int(flat.get("clients-per-round", cfg.num_users)), server_lr=1.0,
                          eval_every=int(flat.get("rounds", 2)), min_clients=1,
                          message_mode=str(flat.get("message-mode", "cohort")),
                          client=ClientConfig(lr=float(flat.get("lr", 0.1)), personal_lr=float(flat.get("lr", 0.1))))
    config = SimpleNamespace(federated=fed, seed=cfg.seed, linear=cfg)
    return config, lambda c, partition: LinearTask(c.linear)
