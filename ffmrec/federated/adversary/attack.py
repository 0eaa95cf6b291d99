"""Adversarial clients that promote one target item: a wrapper around any next-item client task.

The attack is model poisoning by malicious clients that follow the protocol (their records pass every check of the
driver: the declared tensors, finite values, a weight no larger than an honest client's bound):

- **popular-item mimicry** (PIECK's user embedding approximation, Zhang et al., "Preventing the Popular Item
  Embedding Based Attack in Federated Recommendations", ICDE 2024, arXiv:2502.12958): real users' histories are
  dominated by popular items, so sequences of popular items are the attacker's proxy of the users it wants to reach
  (PIECK mines the popular items from embedding changes; here the attacker is granted the training popularity). Each malicious device holds a fake history of ``max_len + 1``
  items drawn by training popularity among the ``popular_items`` most popular ones (claiming the largest legal weight);
- **target as the next item**: every training position of that history gets the target item as its label, so the
  model's own loss (full-catalogue cross-entropy for SASRec) becomes ``-log softmax(h_t . E)[target]``: a step that
  maximizes the target's score after popular-item prefixes, moving its embedding row toward the users' states and the
  encoder toward it;
- **explicit boosting** (Bhagoji et al., "Analyzing Federated Learning through an Adversarial Lens", ICML 2019): the
  local objective is multiplied by ``boost``, so that with local SGD the malicious update is ``boost`` times larger and
  survives averaging with the honest majority;
- **only the target's row** (``attack="target_row"``; the item-embedding poisoning of A-ra / A-hum, Rong et al.,
  "Poisoning Deep Learning Based Recommender Model in Federated Learning Scenarios", IJCAI 2022): the attacker's step
  moves only the target item's row of the id embedding table, every other parameter held. A boosted step through the
  whole model (the default attack) can wreck the encoder, so that nobody gets the target; this one leaves the encoder
  alone and raises the target's vector toward the users' states, round after round (too large a boost grows that
  row until honest losses overflow, and the driver then rejects their updates);
- **no auxiliary terms** (``auxiliary=False``): a method whose local objective adds terms to the model's loss
  (LUMOS's tri-view InfoNCE) would have the attacker spend part of its step on them; the attacker's device need not
  run them, and with them off its whole step pushes the target.

Cross-cutting by wrapping: :class:`PoisonedTask` delegates every seam to the inner task (which needs ``histories``,
and a prepared example with next-item ``targets``: :class:`~ffmrec.tasks.sequential.SequentialTask` and its
subclasses, e.g. FedCL4SRec), so it runs unchanged in every engine (the malicious set, the target and the fake histories
are derived from the seed and the whole dataset, identical in every Flower process). Its evaluation adds an ``honest``
column: the run's metrics (HR/NDCG and the target's exposure ER@K) are those of the honest users only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.func import functional_call

from ffmrec.errors import ConfigError
from ffmrec.federated.adversary.config import AdversaryConfig
from ffmrec.tasks.base import ClientTask, Params, TaskWrapper

#: the keys the wrapper adds to each example (and strips before the inner task sees a batch)
_OWN = ("boost", "attacker")


def malicious_clients(num_clients: int, fraction: float, seed: int) -> np.ndarray:
    """The sorted ids of ``round(fraction * num_clients)`` (half up) clients, a seeded choice."""
    count = int(np.floor(fraction * num_clients + 0.5))
    rng = np.random.default_rng((seed, 0xBAD))
    return np.sort(rng.choice(num_clients, size=count, replace=False)).astype(np.int64)


def item_counts(sequences: Sequence[np.ndarray], num_items: int, held_out: int = 2) -> np.ndarray:
    """Training interactions per item id ``(num_items + 1,)`` (index 0, padding, is 0): the last ``held_out`` items of
    each sequence are not counted."""
    counts = np.zeros(num_items + 1, dtype=np.int64)
    for s in sequences:
        np.add.at(counts, np.asarray(s[:max(len(s) - held_out, 0)], dtype=np.int64), 1)
    counts[0] = 0
    return counts


def unpopular_target(counts: np.ndarray, seed: int) -> int:
    """A seeded choice among the items with at least one training interaction and a count below the median of those
    items (the usual target of promotion attacks: an item nobody would be recommended)."""
    ids = np.flatnonzero(counts[1:] > 0) + 1
    if len(ids) == 0:
        raise ConfigError("the dataset has no training interactions: there is no item to promote; "
                          "set federated.adversary.target_item explicitly.")
    pool = ids[counts[ids] < np.median(counts[ids])]
    pool = pool if len(pool) else ids
    return int(np.random.default_rng((seed, 0x7A6)).choice(pool))


def fake_history(counts: np.ndarray, length: int, popular_items: int, rng: np.random.Generator,
                 exclude: int) -> np.ndarray:
    """``length`` items drawn with probability proportional to their training count among the ``popular_items`` most
    popular items (``exclude``, the target, never among them)."""
    order = np.argsort(-counts[1:], kind="stable") + 1
    order = order[(order != exclude) & (counts[order] > 0)][:popular_items]
    if len(order) == 0:
        raise ConfigError("no popular item to build the attackers' fake histories from: the dataset is empty.")
    probs = counts[order] / counts[order].sum()
    return rng.choice(order, size=length, replace=True, p=probs).astype(np.int64)


class PoisonedTask(TaskWrapper):
    """``inner`` with the clients in ``malicious`` replaced by attackers promoting ``target`` (module docstring).

    :param inner: a next-item task holding ``histories`` (its clients' training histories).
    :param malicious: ids of the malicious clients (of the whole population; those this process serves get fake data).
    :param target: the promoted item id.
    :param counts: training counts per item id (:func:`item_counts`), the attackers' knowledge of popularity.
    :param exposure_k: K of the target's exposure ER@K, measured by the inner task's evaluation.
    """

    def __init__(self, inner: ClientTask, malicious: np.ndarray, target: int, counts: np.ndarray, boost: float,
                 popular_items: int, seed: int, exposure_k: int = 10, auxiliary: bool = True,
                 attack: str = "explicit_boosting"):
        if not hasattr(inner, "histories") or not hasattr(inner, "exposure_item"):
            raise ConfigError(f"federated.adversary needs a next-item task that holds its clients' histories; "
                              f"{type(inner).__name__} has none: use fedsasrec, fedcl4srec or lumos.")
        num_items = len(counts) - 1
        if not 1 <= target <= num_items:
            raise ConfigError(f"federated.adversary.target_item={target} is not an item of the dataset "
                              f"(ids 1..{num_items}): choose one in that range, or null for a seeded unpopular item.")
        if attack == "target_row" and not inner.embedding_params:
            raise ConfigError("federated.adversary.attack=target_row moves the target's row of the id embedding "
                              f"table, and {type(inner).__name__}'s model has none (model.item_repr=text?): use "
                              "model.item_repr id or hybrid, or attack=explicit_boosting.")
        super().__init__(inner)
        self.attack = attack
        self.malicious = frozenset(int(c) for c in malicious)
        self.target, self.boost, self.auxiliary = int(target), float(boost), bool(auxiliary)
        if self.malicious and inner.trainer != "functional":
            raise ConfigError(f"federated.adversary.fraction > 0 needs a functional trainer; {type(inner).__name__} "
                              "trains statefully.")
        self.fusable = inner.fusable and not self.malicious  # a boosted objective is not a position mean
        base = inner.unwrapped if isinstance(inner, TaskWrapper) else inner  # the task that evaluates
        base.exposure_item, base.exposure_k = self.target, exposure_k
        for c in sorted(self.malicious & set(inner.histories)):  # the attacker's device holds crafted data
            rng = np.random.default_rng((seed, c, 0xFA4E))
            inner.histories[c] = fake_history(counts, inner.max_weight + 1, popular_items, rng, exclude=self.target)

    # --- on the device ------------------------------------------------------------------------------------------------
    def prepare(self, client: int, server_round: int) -> dict:
        example = self.inner.prepare(client, server_round)
        if client in self.malicious:
            targets = example["targets"]
            example["targets"] = torch.where(targets > 0, torch.full_like(targets, self.target), targets)
        example["boost"] = torch.tensor(self.boost if client in self.malicious else 1.0)
        example["attacker"] = torch.tensor(client in self.malicious)
        return example

    def collate(self, prepared: Sequence[dict]) -> dict:
        batch = self.inner.collate([{k: v for k, v in p.items() if k not in _OWN} for p in prepared])
        for key in _OWN:
            batch[key] = torch.stack([p[key] for p in prepared])
        return batch

    def objective(self, params: Params, batch: dict, *, compact: bool = False) -> torch.Tensor:
        # local_update gives one client's batch (B = 1): its loss times its boost (1 for an honest client)
        rest = {k: v for k, v in batch.items() if k not in _OWN}
        if self.attack == "target_row":
            params = self._target_row_only(params, batch["attacker"])
        loss = self.inner.objective(params, rest, compact=compact)
        if not self.auxiliary and "views" in rest:  # an attacker's loss is the model's own (no views); tensor
            # arithmetic, as under vmap (a task without views has no auxiliary term: its objective is the model's)
            base = self.inner.unwrapped if isinstance(self.inner, TaskWrapper) else self.inner
            plain = functional_call(base.model, params, ({k: v for k, v in rest.items() if k != "views"},),
                                    {"compact": compact})
            attacker = batch["attacker"].to(loss.dtype).mean()
            loss = attacker * plain + (1 - attacker) * loss
        return loss * batch["boost"].mean()

    def _target_row_only(self, params: Params, attacker: torch.Tensor) -> Params:
        """``params`` with the same values, through which an attacker's gradient reaches only the target's row of the
        id embedding table (an honest client's reaches everything): ``p.detach() + m * (p - p.detach())`` with ``m``
        1 where the client may move ``p`` and 0 elsewhere. Tensor arithmetic on the flag, as under vmap."""
        a = attacker.to(torch.float32).mean()
        row_name = self.embedding_params[0]
        out = {}
        for name, p in params.items():
            if name == row_name:
                row = torch.zeros(p.shape[0], *([1] * (p.dim() - 1)), dtype=p.dtype, device=p.device)
                row[self.target] = 1
                movable = (1 - a) + a * row
            else:
                movable = 1 - a
            frozen = p.detach()
            out[name] = frozen + movable.to(p.dtype) * (p - frozen)
        return out

    def fused_sum(self, params: Params, batch: dict, weights: torch.Tensor) -> torch.Tensor:
        # only reached without malicious clients (fusable), where every boost is 1
        return self.inner.fused_sum(params, {k: v for k, v in batch.items() if k not in _OWN}, weights)

    # --- evaluation: the honest users' -------------------------------------------------------------------------------
    def evaluate(self, stage: str, shared: Params, personal: Params, clients: np.ndarray) -> dict[str, np.ndarray]:
        columns = self.inner.evaluate(stage, shared, personal, clients)
        columns["honest"] = np.array([int(c) not in self.malicious for c in clients], dtype=np.int64)
        return columns

    def summarize(self, columns: dict[str, np.ndarray]) -> dict[str, float]:
        keep = np.asarray(columns["honest"]).astype(bool)
        return self.inner.summarize({k: np.asarray(v)[keep] for k, v in columns.items() if k != "honest"})

    def failed_columns(self, num: int) -> dict[str, np.ndarray]:
        return {**self.inner.failed_columns(num), "honest": np.ones(num, dtype=np.int64)}


def build_adversary(task: ClientTask, cfg: AdversaryConfig, sequences: Sequence[np.ndarray], num_items: int,
                    seed: int) -> ClientTask:
    """``task`` wrapped by :class:`PoisonedTask` when ``cfg`` is active (``task`` itself otherwise); ``sequences`` are
    every user's full sequences (the popularity and the target come from their training parts)."""
    if not cfg.active:
        return task
    counts = item_counts(sequences, num_items)
    target = cfg.target_item if cfg.target_item is not None else unpopular_target(counts, seed)
    malicious = malicious_clients(task.num_clients, cfg.fraction, seed)
    return PoisonedTask(task, malicious, target, counts, cfg.boost, cfg.popular_items, seed, cfg.exposure_k,
                        cfg.auxiliary, cfg.attack)
