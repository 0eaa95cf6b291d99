"""The KTO objective (Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization", ICML 2024,
arXiv:2402.01306), as a pure function.

With the implied reward ``r(x, y) = log pi_theta(y|x) - log pi_ref(y|x)`` and the reference point
``z0 = max(0, KL(pi_theta || pi_ref))`` (an estimate over the batch, detached: no gradient flows through it),
every example contributes

* desirable ``y``:   ``lambda_D * (1 - sigmoid(beta * (r - z0)))``
* undesirable ``y``: ``lambda_U * (1 - sigmoid(beta * (z0 - r)))``

and the loss is the mean over the batch's examples, as TRL's ``KTOTrainer`` computes it (``loss_type="kto"``).
FedTREK-LM weighs desirable:undesirable 4:3 by default.
"""

from __future__ import annotations

import torch


def kto_loss(policy_logps: torch.Tensor, reference_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor,
             beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """``(loss, stats)`` for ``(B,)`` log-probabilities of the completions under the policy and the reference,
    ``desirable`` ``(B,)`` bool, and ``kl`` the batch's KL estimate (a scalar; clamped at 0 and detached here)."""
    if not (policy_logps.shape == reference_logps.shape == desirable.shape) or policy_logps.dim() != 1:
        raise ValueError(f"kto_loss needs (B,) tensors, got {tuple(policy_logps.shape)}, "
                         f"{tuple(reference_logps.shape)}, {tuple(desirable.shape)}")
    z0 = kl.detach().clamp(min=0)
    rewards = policy_logps - reference_logps  # (B,)
    desirable = desirable.bool()
    losses = torch.where(desirable,
                         desirable_weight * (1 - torch.sigmoid(beta * (rewards - z0))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (z0 - rewards))))  # (B,)
    r = rewards.detach()
    stats = {"kl": float(z0),
             "rewards/desirable": float(r[desirable].mean()) if desirable.any() else 0.0,
             "rewards/undesirable": float(r[~desirable].mean()) if (~desirable).any() else 0.0}
    return losses.mean(), stats
