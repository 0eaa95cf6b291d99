"""The client update, written once.

A client is one user's device. It holds that user's data and *personal state* (the rows of the model's personal
parameters that belong to the user; they never leave the device). Given the global *shared* parameters and the round's
:class:`ClientConfig`, it trains locally and returns the change of the shared parameters, its weight (number of training
targets) and its loss.

:func:`local_update` is a pure function of tensors built on ``torch.func``: the Flower engines call it for one client,
and the fast simulator calls the very same function under ``torch.func.vmap`` for many clients at once. Tasks whose
model cannot be vmapped (a Hugging Face model with PEFT adapters) bring a stateful trainer instead
(:meth:`ffmrec.tasks.base.ClientTask.train_stateful`); the engines call either through one entry,
:class:`ffmrec.federated.engines.cohort.Cohort`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch.func import grad_and_value
from torch.utils._pytree import tree_map

from ffmrec.errors import ConfigError


@dataclass
class ClientConfig:
    """Local training on a device, sent to clients every round."""

    local_steps: int = field(default=1, metadata={"help": "Local gradient steps per round, each on the client's whole prepared data (for a sequential task: one pass over the user's history)."})
    lr: float = field(default=1.0, metadata={"help": "Local learning rate of the shared parameters."})
    personal_lr: float = field(default=0.001, metadata={"help": "Learning rate of the personal parameters (kept on the device)."})
    optimizer: str = field(default="sgd", metadata={"help": "'sgd' or 'adam' for the shared parameters; the local optimizer starts fresh every round."})
    proximal_mu: float = field(default=0.0, metadata={"help": "FedProx proximal term mu/2 * ||w - w_global||^2 (0 = off)."})

    def __post_init__(self) -> None:
        if self.local_steps < 1:
            raise ConfigError(f"federated.client.local_steps={self.local_steps} must be >= 1.")
        if self.lr <= 0 or self.personal_lr < 0:
            raise ConfigError(f"client.lr={self.lr} must be > 0 and client.personal_lr={self.personal_lr} >= 0.")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"client.optimizer={self.optimizer!r} is unknown: use 'sgd' or 'adam'.")
        if self.proximal_mu < 0:
            raise ConfigError(f"client.proximal_mu={self.proximal_mu} must be >= 0.")

    def to_record(self) -> dict[str, int | float | str]:
        return asdict(self)


def _adam(p, g, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8):
    """One bias-corrected Adam step (Kingma & Ba, 2015) on tensors; returns ``(p, m, v)``."""
    m = betas[0] * m + (1 - betas[0]) * g
    v = betas[1] * v + (1 - betas[1]) * g * g
    m_hat = m / (1 - betas[0] ** step)
    v_hat = v / (1 - betas[1] ** step)
    return p - lr * m_hat / (v_hat.sqrt() + eps), m, v


def local_update(
    objective: Callable[[dict[str, torch.Tensor], dict], torch.Tensor],
    shared: dict[str, torch.Tensor],
    personal: dict[str, torch.Tensor],
    example: dict,
    cfg: ClientConfig,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Train one client; returns ``(shared delta, new personal params, loss at the first step)``.

    ``example`` is ONE client's prepared input without a batch dimension (what its task's ``prepare`` built), so that
    ``vmap`` can map it over clients; it gets a batch dimension of 1 here. ``personal`` holds the client's own rows
    (``(1, ...)`` each; the example's user index is 0 into them). ``objective(params, batch)`` is the task's local
    objective, a pure function of the parameters.
    """
    batch = tree_map(lambda v: v.unsqueeze(0), example)

    def loss_fn(s, p):
        return objective({**s, **p}, batch)

    step_fn = grad_and_value(loss_fn, argnums=(0, 1))
    w = dict(shared)
    own = dict(personal)
    moments = {k: (torch.zeros_like(t), torch.zeros_like(t)) for k, t in w.items()} if cfg.optimizer == "adam" else {}
    first_loss = None
    for step in range(1, cfg.local_steps + 1):
        (g_shared, g_personal), loss = step_fn(w, own)
        first_loss = loss if first_loss is None else first_loss
        for k in w:
            g = g_shared[k]
            if cfg.proximal_mu:
                g = g + cfg.proximal_mu * (w[k] - shared[k])
            if cfg.optimizer == "adam":
                w[k], m, v = _adam(w[k], g, *moments[k], step, cfg.lr)
                moments[k] = (m, v)
            else:
                w[k] = w[k] - cfg.lr * g
        own = {k: own[k] - cfg.personal_lr * g_personal[k] for k in own}
    delta = {k: w[k] - shared[k] for k in w}
    return delta, own, first_loss
