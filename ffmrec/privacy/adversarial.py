"""Adversarial trait removal: a local objective that hides a sensitive trait from the shared sequence representation.

Each client knows its own trait label (:mod:`ffmrec.privacy.traits`, e.g. gender) on the device only. It keeps a small
*adversary head* ``W`` (``adversary.weight``, ``(1, C, d)``: a linear classifier over the ``C`` trait classes, no bias)
as a personal parameter: it lives in the device's personal state like ``model.user_embedding``'s rows, persists across
rounds and is never sent. With ``z`` the shared representation of the client's history (the model's sequence vector
with every personal row of the model zeroed, so that a personal vector cannot absorb the trait in its place) and
``y`` the label, the local objective is (:func:`adversarial_terms`, a min-max written without a custom autograd
function, so it stays a pure ``torch.func`` function that the fast engine vmaps and fuses)::

    L = L_task + (T - stopgrad(T)),   T = s * CE(W z', y) + lambda * F(W' z)         (' = stopgrad)
    F = -CE(W' z, y)          (privacy.adversarial_form=reversal: gradient reversal, Ganin & Lempitsky 2015)
    F = CE(W' z, uniform)     (entropy, the default: bounded; reversal can blow the representation up)

so ``L``'s value is exactly ``L_task`` while its gradients are: the head ``W`` descends ``s * CE`` (it learns to predict
the trait; its step is ``client.personal_lr * s``) and the shared parameters descend ``grad L_task + lambda * grad F``
(with reversal ``grad L_task - lambda * grad CE``: they make the head's prediction worse, or uninformative).

What leaves the device, and why the adversary does not leak the trait through it:

- the head and its gradient: never (a personal parameter; the engines send only ``shared_names``; tested with the
  egress audit and the recorder);
- the reported loss: ``L``'s value is ``L_task``'s exactly, whatever ``y``;
- the shared update: its adversarial part reads ``y`` (through ``W``), yet it is *the same for every labelling*. Both
  forms are equivariant under a permutation ``pi`` of the classes: relabelling ``y -> pi(y)`` and permuting the
  head's rows ``W -> P_pi W`` leave the gradient of ``z`` unchanged and map the head's gradient to ``P_pi`` of it. The
  head starts at zero (``P_pi 0 = 0``), so by induction over steps and rounds a client whose label is ``pi(y)`` keeps
  the head ``P_pi W_t`` and sends exactly the updates it would send with label ``y``. Hence everything a client sends,
  in every round, is a function of its history and the public seed only, not of its trait (tested: flipping every
  label changes no record). Clients whose trait is unknown (``-1``) train without the term, so a curious server can
  tell which clients' traits are known; a random head draw would need a seed the server does not know.

The other side of the same argument, measured in the tests: the objective cannot remove the trait *specifically*.
Since the shared model is the same for any labelling, it is exactly the one that shuffled labels give; its effect is a
label-free regulariser (the head learns ``+-`` the client's own recent representations, and fighting it shrinks
them), which lowers a linear attacker's AUC on the shared representation at a utility cost. Removing a trait specifically needs the class-separating direction, which only an adversary that
pools labels across clients (aggregated head gradients, hence secure aggregation) can estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ffmrec.errors import ConfigError, DataError
from ffmrec.tasks.base import ClientTask, Params, TaskWrapper

#: The personal parameter holding each client's adversary head.
HEAD = "adversary.weight"
#: How the shared parameters fight the head (see :func:`adversarial_terms`).
FORMS = ("entropy", "reversal")


@dataclass
class PrivacyConfig:
    """On-device privacy objectives (the transforms and DP settings live in ``federated``)."""

    adversarial_weight: float = field(default=0.0, metadata={"help": "lambda of the adversarial trait-removal objective: shared parameters descend next-item loss - lambda * the local adversary's loss (0 = off)."})
    trait: str = field(default="gender", metadata={"help": "The trait the adversarial objective hides: gender, age or occupation (from the dataset's user attributes; it never leaves the device)."})
    adversary_scale: float = field(default=100.0, metadata={"help": "The local adversary head's loss is scaled by this: its SGD step is federated.client.personal_lr * adversary_scale."})
    adversarial_form: str = field(default="entropy", metadata={"help": "How the shared parameters fight the head: 'entropy' (descend lambda * cross-entropy of the head's prediction against the uniform distribution: bounded, label-free) or 'reversal' (gradient reversal: descend -lambda * the head's loss; unbounded, it can blow the representation up)."})

    def __post_init__(self) -> None:
        from ffmrec.privacy.traits import TRAITS

        if self.adversarial_weight < 0:
            raise ConfigError(f"privacy.adversarial_weight={self.adversarial_weight} must be >= 0 (0 = off), e.g. 1.0.")
        if self.trait not in TRAITS:
            raise ConfigError(f"privacy.trait={self.trait!r} is unknown: use one of {', '.join(TRAITS)}.")
        if self.adversarial_form not in FORMS:
            raise ConfigError(f"privacy.adversarial_form={self.adversarial_form!r} is unknown: use one of {', '.join(FORMS)}.")
        if self.adversary_scale <= 0:
            raise ConfigError(f"privacy.adversary_scale={self.adversary_scale} must be > 0, e.g. 100.")


# --- the maths: pure functions ---------------------------------------------------------------------------------------
def adversarial_terms(z: torch.Tensor, head: torch.Tensor, y: torch.Tensor, weight: float, scale: float,
                      form: str = "entropy") -> torch.Tensor:
    """The adversarial term ``T_b`` of each row ``b`` (``'`` = stop-gradient), ``0`` where ``y_b < 0`` (unknown)::

        reversal: T_b = scale * CE(W_b z_b', y_b) - weight * CE(W_b' z_b, y_b)
        entropy:  T_b = scale * CE(W_b z_b', y_b) + weight * CE(W_b' z_b, uniform)

    The head ``W`` learns the trait through the first part only; the representation ``z`` gets only the second: with
    ``reversal`` it ascends the head's loss (Ganin & Lempitsky's gradient reversal), with ``entropy`` it descends the
    cross-entropy of the head's prediction against the uniform distribution over the ``C`` classes (minimal, ``log C``,
    when the prediction says nothing; the representation's part does not read ``y``). ``z`` ``(B, d)``, ``head``
    ``(B, C, d)``, ``y`` ``(B,)``; returns ``(B,)``."""
    known = y >= 0
    target = y.clamp(min=0)
    fit = F.cross_entropy(torch.einsum("bcd,bd->bc", head, z.detach()), target, reduction="none")
    logits = torch.einsum("bcd,bd->bc", head.detach(), z)
    if form == "reversal":
        fool = -F.cross_entropy(logits, target, reduction="none")
    elif form == "entropy":
        fool = -logits.log_softmax(-1).mean(-1)
    else:
        raise ValueError(f"unknown adversarial form {form!r}")
    return (scale * fit + weight * fool) * known.to(z.dtype)


def zero_valued(t: torch.Tensor) -> torch.Tensor:
    """``t - stopgrad(t)``: exactly 0 in value, ``t``'s gradient."""
    return t - t.detach()


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.encode_sequence(batch)


# --- the task wrapper ------------------------------------------------------------------------------------------------
class TraitAdversaryTask(TaskWrapper):
    """``inner`` (a functional next-item task with a model that has ``encode_sequence``: FedSASRec, FedCL4SRec,
    LUMOS) with the adversarial trait-removal term added to its local objective (see the module docstring). Every
    other seam is the inner task's; the head is one more personal parameter, the shared names are unchanged.

    :param labels: the trait of each client (dense user id), ``-1`` where unknown; read on the client's device only.
    """

    def __init__(self, inner: ClientTask, labels: np.ndarray, num_classes: int, cfg: PrivacyConfig):
        model = getattr(inner, "model", None)
        if inner.trainer != "functional" or not hasattr(model, "encode_sequence"):
            raise ConfigError(f"privacy.adversarial_weight={cfg.adversarial_weight} needs a functional sequential "
                              f"task with a sequence encoder, but {type(inner).__name__} has none: use fedsasrec, "
                              "fedcl4srec or lumos, or set privacy.adversarial_weight=0.")
        super().__init__(inner)
        self.model = model
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.labels = {int(c): int(labels[int(c)]) for c in getattr(inner, "histories", range(inner.num_clients))}
        self.model_personal = tuple(inner.personal_names)
        self.personal_names = (*self.model_personal, HEAD)
        self.encoder = _Encoder(model)
        self.hidden = int(model.cfg.hidden_size)

    def initial_personal(self, client: int) -> Params:
        head = torch.zeros(1, self.num_classes, self.hidden)  # zero: the same for every labelling (module docstring)
        return {**self.inner.initial_personal(client), HEAD: head}

    # --- on the device ---------------------------------------------------------------------------------------------
    def prepare(self, client: int, server_round: int) -> dict:
        example = self.inner.prepare(client, server_round)
        example["trait"] = torch.tensor(self.labels[int(client)], dtype=torch.long)
        return example

    def collate(self, prepared: Sequence[dict]) -> dict:
        batch = self.inner.collate([{k: v for k, v in p.items() if k != "trait"} for p in prepared])
        batch["trait"] = torch.stack([p["trait"] for p in prepared])
        return batch

    def _split(self, params: Params, batch: dict) -> tuple[Params, dict, torch.Tensor]:
        """``(model params, inner batch, T per row)``."""
        model_params = {k: v for k, v in params.items() if k != HEAD}
        rest = {k: v for k, v in batch.items() if k != "trait"}
        shared_only = {**model_params, **{k: torch.zeros_like(model_params[k]) for k in self.model_personal
                                          if k in model_params}}  # the shared representation: personal rows off
        sub = {k: rest[k] for k in ("input_ids", "users", "noise") if k in rest}
        z = functional_call(self.encoder, {f"model.{k}": v for k, v in shared_only.items()}, (sub,))  # (B, d)
        users = rest.get("users", torch.zeros(z.shape[0], dtype=torch.long))
        head = params[HEAD][users]  # (B, C, d): each row its own client's head
        terms = adversarial_terms(z, head, batch["trait"], self.cfg.adversarial_weight, self.cfg.adversary_scale,
                                  self.cfg.adversarial_form)
        return model_params, rest, terms

    def objective(self, params: Params, batch: dict, *, compact: bool = False) -> torch.Tensor:
        model_params, rest, terms = self._split(params, batch)
        return self.inner.objective(model_params, rest, compact=compact) + zero_valued(terms).mean()

    def fused_sum(self, params: Params, batch: dict, weights: torch.Tensor) -> torch.Tensor:
        model_params, rest, terms = self._split(params, batch)
        return self.inner.fused_sum(model_params, rest, weights) + (weights * zero_valued(terms)).sum()

    def private_arrays(self, client: int, server_round: int) -> dict[str, torch.Tensor]:
        out = self.inner.private_arrays(client, server_round)
        out["prepare/trait"] = torch.tensor(self.labels[int(client)])
        return out

    # --- evaluation: the inner task's (the head plays no part) -----------------------------------------------------
    def evaluate(self, stage: str, shared: Params, personal: Params, clients: np.ndarray) -> dict[str, np.ndarray]:
        return self.inner.evaluate(stage, shared, {k: v for k, v in personal.items() if k != HEAD}, clients)


def build_trait_adversary(task: ClientTask, cfg: PrivacyConfig, dataset) -> ClientTask:
    """``task`` wrapped by :class:`TraitAdversaryTask` when ``cfg.adversarial_weight > 0`` (``task`` itself
    otherwise: with weight 0 the run is the plain recipe's); the labels come from the dataset's user attributes."""
    if cfg.adversarial_weight == 0:
        return task
    from ffmrec.privacy.traits import load_traits

    try:
        traits = load_traits(dataset)
    except DataError as e:
        raise ConfigError(f"privacy.adversarial_weight={cfg.adversarial_weight} needs the trait "
                          f"privacy.trait={cfg.trait!r}, but {e} Or set privacy.adversarial_weight=0.") from None
    if cfg.trait not in traits.labels:
        raise ConfigError(f"privacy.trait={cfg.trait!r} is not among dataset {dataset.name!r}'s traits "
                          f"({', '.join(traits.names)}): choose one of those, or set privacy.adversarial_weight=0.")
    return TraitAdversaryTask(task, traits.labels[cfg.trait], len(traits.classes[cfg.trait]), cfg)
