"""CL4SRec: Contrastive Learning for Sequential Recommendation (Xie et al., ICDE 2022, arXiv:2010.14395).

Each training sequence yields two *views*, each made by one of three random augmentations (Sec. IV-B of the paper):

- **crop**: a random contiguous subsequence of ``max(1, floor(eta * n))`` items;
- **mask**: ``floor(gamma * n)`` random positions replaced by a learned mask token;
- **reorder**: a random contiguous subsequence of ``floor(beta * n)`` items shuffled in place.

The two views of a pair use two different augmentations, drawn uniformly (as the reference implementation does). The
sequence encoder maps every view to one vector, and the NT-Xent loss (:func:`info_nce`) pulls the two views of a pair
together and pushes them from every other view in the batch. The training objective is the model's next-item loss plus
``lambda`` times that contrastive loss (Eq. 10).

Two settings share the same augmentations, views and loss (one implementation):

- **centralized** (``cl4srec``, the paper): a batch holds ``pairs`` view pairs of each user; the negatives of a view are
  all other views in the batch, across users (:class:`CL4SRecObjective` with ``in_batch_negatives=True``, batches from
  :func:`contrastive_batches`, augmentations seeded from ``(seed, epoch, user)``);
- **federated** (``fedcl4srec``, :class:`CL4SRecTask`): a client sees only its own history, so its ``pairs`` view pairs
  are contrasted with each other only: the negatives of a view are the client's other views. Views are drawn on the
  device from the client's own ``(seed, round, client, "aug")`` stream and never leave it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ffmrec.data.batching import iterate_batches, left_pad
from ffmrec.errors import ConfigError
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.models.base import Recommender
from ffmrec.tasks.base import Params, client_generator
from ffmrec.tasks.sequential import SequentialTask

AUGMENTATIONS = ("crop", "mask", "reorder")
#: The generator stream of augmentations and of the views' dropout noise (separate from the next-item example's).
STREAM = "aug"


@dataclass
class ContrastiveConfig:
    """The contrastive term of CL4SRec."""

    crop_ratio: float = field(default=0.6, metadata={"help": "eta: a cropped view keeps max(1, floor(eta * n)) contiguous items of a length-n sequence."})
    mask_ratio: float = field(default=0.3, metadata={"help": "gamma: a masked view replaces floor(gamma * n) items by the mask token (needs model.mask_token=true unless 0)."})
    reorder_ratio: float = field(default=0.6, metadata={"help": "beta: a reordered view shuffles floor(beta * n) contiguous items."})
    temperature: float = field(default=1.0, metadata={"help": "tau of the NT-Xent loss: similarities are divided by it."})
    similarity: str = field(default="dot", metadata={"help": "'dot' (inner product of the sequence vectors, as in CL4SRec) or 'cos' (of the normalised vectors)."})
    weight: float = field(default=0.1, metadata={"help": "lambda: the objective is the next-item loss + lambda * InfoNCE."})
    pairs: int = field(default=4, metadata={"help": "View pairs per user per step. Federated: a client's views are each other's negatives, so it needs several; centralized: other users' views are negatives too (the paper uses 1)."})

    def __post_init__(self) -> None:
        for name, low_open in (("crop_ratio", True), ("mask_ratio", False), ("reorder_ratio", False)):
            value = getattr(self, name)
            if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
                interval = "(0, 1]" if low_open else "[0, 1]"
                raise ConfigError(f"task.{name}={value} is outside {interval}: choose a fraction such as 0.3 or 0.6.")
        if self.mask_ratio == 1.0:
            raise ConfigError("task.mask_ratio=1.0 masks every item of a view, which then carries no information: "
                              "choose a value below 1, e.g. 0.3.")
        if not self.temperature > 0:
            raise ConfigError(f"task.temperature={self.temperature} must be > 0, e.g. 1.0 (CL4SRec) or 0.2.")
        if self.similarity not in ("dot", "cos"):
            raise ConfigError(f"task.similarity={self.similarity!r} is unknown: use 'dot' or 'cos'.")
        if self.weight < 0:
            raise ConfigError(f"task.weight={self.weight} must be >= 0, e.g. 0.1 (CL4SRec's lambda).")
        if self.weight == 0:
            warnings.warn("task.weight=0 turns the contrastive term off: this trains plain (Fed)SASRec with extra "
                          "work; use method sasrec or fedsasrec instead, or set task.weight > 0.", stacklevel=2)
        if self.pairs < 1:
            raise ConfigError(f"task.pairs={self.pairs} must be a positive integer, e.g. 4.")


# --- augmentations: pure functions of one item-id sequence and a generator ------------------------------------------
def _count(ratio: float, n: int) -> int:
    return math.floor(ratio * n + 1e-9)  # 0.6 * 5 is 3, not 2.9999...


def crop(seq: torch.Tensor, eta: float, g: torch.Generator) -> torch.Tensor:
    """A random contiguous subsequence of ``max(1, floor(eta * n))`` items of ``seq`` ``(n,)``."""
    n = len(seq)
    keep = min(n, max(1, _count(eta, n)))
    start = int(torch.randint(0, n - keep + 1, (1,), generator=g))
    return seq[start:start + keep].clone()


def mask(seq: torch.Tensor, gamma: float, mask_id: int, g: torch.Generator) -> torch.Tensor:
    """``seq`` with ``floor(gamma * n)`` random positions replaced by ``mask_id``."""
    positions = torch.randperm(len(seq), generator=g)[:_count(gamma, len(seq))]
    out = seq.clone()
    out[positions] = mask_id
    return out


def reorder(seq: torch.Tensor, beta: float, g: torch.Generator) -> torch.Tensor:
    """``seq`` with a random contiguous subsequence of ``floor(beta * n)`` items shuffled."""
    n = len(seq)
    span = _count(beta, n)
    start = int(torch.randint(0, n - span + 1, (1,), generator=g))
    out = seq.clone()
    out[start:start + span] = seq[start:start + span][torch.randperm(span, generator=g)]
    return out


def augment(seq: torch.Tensor, name: str, cfg: ContrastiveConfig, mask_id: int | None,
            g: torch.Generator) -> torch.Tensor:
    """One view of ``seq`` by the augmentation ``name`` (one of :data:`AUGMENTATIONS`)."""
    if name == "crop":
        return crop(seq, cfg.crop_ratio, g)
    if name == "mask":
        if mask_id is None:
            return seq.clone()  # mask_ratio == 0 (checked by check_mask_token)
        return mask(seq, cfg.mask_ratio, mask_id, g)
    if name == "reorder":
        return reorder(seq, cfg.reorder_ratio, g)
    raise ValueError(f"unknown augmentation {name!r}")


def view_pairs(history: np.ndarray, pairs: int, cfg: ContrastiveConfig, mask_id: int | None,
               g: torch.Generator) -> torch.Tensor:
    """``(2, pairs, L)`` item ids, left-padded with 0: row ``[0, p]`` and row ``[1, p]`` are two views of ``history``
    by two different augmentations drawn uniformly. ``history`` should already be cut to the model's ``max_len``."""
    seq = torch.as_tensor(np.asarray(history), dtype=torch.long)
    first, second = [], []
    for _ in range(pairs):
        a, b = torch.randperm(len(AUGMENTATIONS), generator=g)[:2].tolist()
        first.append(augment(seq, AUGMENTATIONS[a], cfg, mask_id, g))
        second.append(augment(seq, AUGMENTATIONS[b], cfg, mask_id, g))
    views = left_pad(first + second)  # (2 * pairs, L)
    return views.view(2, pairs, views.shape[-1])


def collate_views(views: Sequence[dict], time_axes: dict[str, tuple[int, ...]] | None = None) -> dict:
    """Batch the ``views`` of several users (each ``{"input_ids": (2, P, L), "noise": {site: (2, P, ...)}}``, noise
    optional): ids left-padded with 0 along ``L``, noise with 1 along its time axes (``time_axes`` of the model's
    sites, without the leading ``(2, P)``)."""
    time_axes = time_axes or {}
    out = {"input_ids": left_pad([v["input_ids"] for v in views], (2,))}  # (B, 2, P, L)
    if "noise" in views[0]:
        out["noise"] = {k: left_pad([v["noise"][k] for v in views], tuple(a + 2 for a in time_axes.get(k, ())), 1.0)
                        for k in views[0]["noise"]}
    return out


# --- the loss ------------------------------------------------------------------------------------------------------
def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 1.0, reduce: bool = True) -> torch.Tensor:
    """NT-Xent (Chen et al., SimCLR, ICML 2020; CL4SRec Eq. 9) of ``N`` positive pairs ``(z1[i], z2[i])``, each
    ``(..., N, d)``: over the ``2N`` views, the positive of a view is its pair's other view and its negatives are the
    other ``2N - 2`` views (leading dimensions are independent batches)::

        l(i) = -log( exp(s(i, pos(i)) / tau) / sum_{k != i} exp(s(i, k) / tau) ),   s(a, b) = <z_a, z_b>

    averaged over the ``2N`` anchors (and, with ``reduce``, over the leading dimensions; else one value per leading
    index). Normalise ``z`` first for cosine similarity.
    """
    n = z1.shape[-2]
    z = torch.cat([z1, z2], dim=-2)  # (..., 2N, d)
    sim = z @ z.transpose(-1, -2) / temperature  # (..., 2N, 2N)
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    log_p = sim.masked_fill(eye, float("-inf")).log_softmax(dim=-1)  # a view is not its own negative
    anchors = torch.arange(2 * n, device=z.device)
    positives = (anchors + n) % (2 * n)  # view i of z1 <-> view i of z2
    per_anchor = -log_p[..., anchors, positives]  # (..., 2N)
    return per_anchor.mean() if reduce else per_anchor.mean(-1)


def check_mask_token(model: Recommender, cfg: ContrastiveConfig) -> int | None:
    """The mask token's item id (``None`` when nothing is masked); a clear error when the model has none."""
    if cfg.mask_ratio == 0:
        return None
    if model.mask_token_id is None:
        raise ConfigError(f"task.mask_ratio={cfg.mask_ratio} masks items with a mask token, which the model lacks: "
                          "set model.mask_token=true (or task.mask_ratio=0 to drop the mask augmentation).")
    return model.mask_token_id


class CL4SRecObjective(nn.Module):
    """``model's loss + lambda * InfoNCE`` of a batch with ``batch["views"]`` (see :func:`collate_views`).

    ``in_batch_negatives=True``: all views of the batch are one pool (centralized CL4SRec, other users' views are
    negatives); ``False``: each row's views are contrasted only among themselves (one federated client's views).
    Holds no parameters of its own: ``functional_call`` on it takes the model's parameters prefixed with ``model.``.
    """

    def __init__(self, model: Recommender, cfg: ContrastiveConfig, in_batch_negatives: bool):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.in_batch_negatives = in_batch_negatives

    def forward(self, batch: dict, compact: bool = True, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The objective of the batch; with ``weights`` ``(B,)`` (federated, per-client pools only) the fused sum
        ``sum_b n_b * (CE_b + lambda * InfoNCE_b)``, where the CE part is a mean over positions whose count per client
        is its weight."""
        views = batch["views"]
        rec = self.model.calculate_loss({k: v for k, v in batch.items() if k != "views"}, compact=compact)
        if weights is not None:
            rec = rec * weights.sum()
        if self.cfg.weight == 0:
            return rec
        ids = views["input_ids"]  # (B, 2, P, L)
        B, _, P, L = ids.shape
        flat = {"input_ids": ids.reshape(B * 2 * P, L)}
        if "users" in batch:  # a view is encoded for its own user (personal rows)
            flat["users"] = batch["users"].unsqueeze(1).expand(B, 2 * P).reshape(B * 2 * P)
        if "noise" in views:
            flat["noise"] = {k: v.flatten(0, 2) for k, v in views["noise"].items()}
        z = self.model.encode_sequence(flat, compact).view(B, 2, P, -1)  # (B, 2, P, d)
        if self.cfg.similarity == "cos":
            z = F.normalize(z, dim=-1)
        if self.in_batch_negatives:
            cl = info_nce(z[:, 0].flatten(0, 1), z[:, 1].flatten(0, 1), self.cfg.temperature)  # one pool of B * P pairs
        elif weights is not None:  # each row its own pool, weighted by its client's weight
            cl = (weights * info_nce(z[:, 0], z[:, 1], self.cfg.temperature, reduce=False)).sum()
        else:
            cl = info_nce(z[:, 0], z[:, 1], self.cfg.temperature)  # (B, P, d): each row its own pool
        return rec + self.cfg.weight * cl


# --- centralized ---------------------------------------------------------------------------------------------------
def contrastive_batches(histories: Sequence[np.ndarray], max_len: int, batch_size: int, cfg: ContrastiveConfig,
                        mask_id: int | None, seed: int) -> Callable[[int, np.random.Generator], Iterator[dict]]:
    """The centralized trainer's ``make_batches(epoch, rng)``: the next-item batches of
    :func:`~ffmrec.data.batching.iterate_batches` (same users, same shuffle), each with ``cfg.pairs`` view pairs per
    user drawn from ``(seed, epoch, user)``. Dropout of the views comes from torch's generator, as the model's own."""

    def make_batches(epoch: int, rng: np.random.Generator) -> Iterator[dict]:
        for batch in iterate_batches(histories, max_len, batch_size, rng):
            views = [{"input_ids": view_pairs(histories[u][-max_len:], cfg.pairs, cfg, mask_id,
                                              client_generator(seed, epoch, u, STREAM))}
                     for u in batch["users"].tolist()]
            batch["views"] = collate_views(views)
            yield batch

    return make_batches


# --- federated -----------------------------------------------------------------------------------------------------
class ViewTask(SequentialTask):
    """A sequential task whose examples also carry ``views`` (see :func:`collate_views`) and whose local objective is
    the module ``self.loss`` (the model's loss plus a term over the views, e.g. :class:`CL4SRecObjective`), called
    with the model's parameters through ``functional_call``."""

    loss: nn.Module

    def collate(self, prepared: Sequence[dict]) -> dict:
        batch = super().collate([{k: v for k, v in p.items() if k != "views"} for p in prepared])
        batch["views"] = collate_views([p["views"] for p in prepared], self.model.noise_time_axes())
        return batch

    def objective(self, params: Params, batch: dict, *, compact: bool = False) -> torch.Tensor:
        return functional_call(self.loss, {f"model.{k}": v for k, v in params.items()}, (batch,), {"compact": compact})

    def fused_sum(self, params: Params, batch: dict, weights: torch.Tensor) -> torch.Tensor:
        return functional_call(self.loss, {f"model.{k}": v for k, v in params.items()}, (batch,),
                               {"compact": True, "weights": weights})


class CL4SRecTask(ViewTask):
    """FedCL4SRec: next-item prediction plus ``lambda`` times InfoNCE over each client's own view pairs.

    ``prepare`` adds ``views`` to the sequential example: ``cfg.pairs`` pairs of augmented views of the client's
    training history (its last ``max_len`` items), and their dropout noise, from the client's ``"aug"`` stream.
    The objective is not a per-position mean (InfoNCE couples a client's views), so :meth:`fused_sum` adds each client's
    own InfoNCE weighted by its weight explicitly; with it the fused path is exact (tested against the per-client one).
    """

    def __init__(self, split: LeaveOneOut, build_model: Callable[[int], Recommender], seed: int,
                 cfg: ContrastiveConfig, mask_history: bool = True, ks: Sequence[int] = (10, 20),
                 clients: np.ndarray | None = None):
        super().__init__(split, build_model, seed, mask_history=mask_history, ks=ks, clients=clients)
        self.cfg = cfg
        self.mask_id = check_mask_token(self.model, cfg)
        self.loss = CL4SRecObjective(self.model, cfg, in_batch_negatives=False)
        self.fusable = not self.loss.in_batch_negatives

    def prepare(self, client: int, server_round: int) -> dict:
        example = super().prepare(client, server_round)
        g = client_generator(self.seed, server_round, client, STREAM)
        ids = view_pairs(self.histories[client][-self.max_len:], self.cfg.pairs, self.cfg, self.mask_id, g)
        views = {"input_ids": ids}  # (2, P, L)
        shapes = {k: s for k, s in self.model.noise_shapes(ids.shape[-1]).items() if k != "negatives"}
        if shapes:  # encoding a view needs only the dropout sites
            views["noise"] = {k: torch.rand((*ids.shape[:2], *s), generator=g) for k, s in shapes.items()}
        example["views"] = views
        return example

