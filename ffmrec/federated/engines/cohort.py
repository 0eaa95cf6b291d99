"""A cohort: the clients one machine simulates, trained together. The fast simulator is one cohort of every client; a
Flower SuperNode in cohort mode is one cohort of its partition; in per-user mode a cohort of one.

:class:`DeviceStore` holds the cohort's personal state (one table per personal parameter, a row per client; it never
leaves the machine) and a copy of it as it was at the best validated round. :class:`Cohort` runs a round for some of
its clients:

1. each client ``prepare``\\ s its input with its own generator (``(seed, round, client)``);
2. clients are grouped by weight into chunks (little padding); a chunk is collated and trained
   - *fused*, when nothing needs per-client updates, the task can sum its clients' weighted objectives over a chunk
     (``fusable``), clients take one plain SGD step and no transform applies: one batched backward gives ``sum_c n_c * delta_c``
     exactly (the mean of one SGD step is linear in the clients' gradients:
     ``sum_c n_c (-lr grad L_c) = -lr grad(sum_c n_c L_c)``);
   - *vectorised*: :func:`~ffmrec.federated.client.local_update` under ``torch.func.vmap`` (each client its own copy
     of the weights and its own noise), or the task's stateful trainer one client at a time;
3. the client-side transform is applied to each client's delta (row by row, own generator);
4. the result is one :class:`~ffmrec.federated.records.ClientRecord` per client, or a
   :class:`~ffmrec.federated.records.PartialSum` per chunk when records are not wanted.

A chunk that raises is retried client by client, so a faulty device fails alone.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import torch
from torch.func import vmap

from ffmrec.federated.aggregation import WeightedSum
from ffmrec.federated.client import ClientConfig, local_update
from ffmrec.federated.records import ClientRecord, PartialSum
from ffmrec.federated.transforms import ClientTransform
from ffmrec.tasks.base import ClientTask, Params, client_generator
from ffmrec.utils.io import load_checkpoint, save_checkpoint


class DeviceStore:
    """Personal rows of ``clients`` (``table[name]`` is ``(len(clients), 1, ...)``), their best-round copy, and the
    devices' ``secret``: the seed of their outgoing updates' randomness (local DP noise, pseudo rows), drawn from the
    operating system and never sent. Seeded from the run's seed instead, which the server knows, that noise could be
    regenerated and subtracted by the server (and pseudo rows told from real ones). It is kept with the devices' state,
    so a resumed run draws the same noise. ``secret`` given (``federated.noise_seed``, experiments only) replaces the
    draw, making the noise reproducible, and removable by anyone who knows it."""

    def __init__(self, task: ClientTask, clients: np.ndarray, secret: int | None = None):
        self.secret = secrets.randbits(63) if secret is None else int(secret)
        self.clients = np.asarray(clients, dtype=np.int64)
        self.index = {int(c): i for i, c in enumerate(self.clients)}
        rows = [task.initial_personal(int(c)) for c in self.clients]
        self.table: Params = {k: torch.stack([r[k] for r in rows]) for k in task.personal_names} if rows else {}
        self.best: Params = {k: v.clone() for k, v in self.table.items()}

    def rows(self, ids, best: bool = False) -> Params:
        idx = torch.as_tensor([self.index[int(c)] for c in ids], dtype=torch.long)
        source = self.best if best else self.table
        return {k: v[idx] for k, v in source.items()}

    def set_rows(self, ids, values: Params) -> None:
        idx = torch.as_tensor([self.index[int(c)] for c in ids], dtype=torch.long)
        for k, v in values.items():
            self.table[k][idx] = v.to(self.table[k].dtype)

    def mark_best(self) -> None:
        self.best = {k: v.clone() for k, v in self.table.items()}

    def state_dict(self) -> dict:
        return {"table": {k: v.clone() for k, v in self.table.items()},
                "best": {k: v.clone() for k, v in self.best.items()}, "secret": self.secret}

    def load_state_dict(self, state: dict) -> None:
        self.secret = int(state.get("secret", self.secret))  # a checkpoint from before the secret keeps a fresh one
        self.table = {k: v.clone() for k, v in state["table"].items()}
        self.best = {k: v.clone() for k, v in state["best"].items()}

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.state_dict())

    def load(self, path: Path) -> bool:
        state = load_checkpoint(path)
        if state is None:
            return False
        self.load_state_dict(state)
        return True


class Cohort:
    """Runs rounds and evaluations for ``clients`` of ``task`` (default: all) on this machine."""

    def __init__(self, task: ClientTask, clients: np.ndarray | None = None, chunk_size: int = 128,
                 transform: ClientTransform | None = None, fused: bool = True):
        self.task = task
        self.clients = np.arange(task.num_clients) if clients is None else np.asarray(clients, dtype=np.int64)
        self.chunk_size = chunk_size
        self.transform = transform
        self.fused = fused
        self.store = DeviceStore(task, self.clients, getattr(transform, "noise_seed", None))

    # --- training ---------------------------------------------------------------------------------------------------
    def can_fuse(self, cfg: ClientConfig, want_records: bool) -> bool:
        return (self.fused and not want_records and self.task.fusable and self.task.trainer == "functional"
                and self.transform is None and cfg.optimizer == "sgd" and cfg.local_steps == 1)

    def _chunks(self, client_ids) -> list[np.ndarray]:
        ids = np.array([c for c in client_ids if self.task.weight(int(c)) > 0], dtype=np.int64)
        weights = np.array([self.task.weight(int(c)) for c in ids], dtype=np.int64)
        ids = ids[np.argsort(weights, kind="stable")]  # similar lengths together: little padding
        size = 1 if self.task.trainer == "stateful" else self.chunk_size
        return [ids[i:i + size] for i in range(0, len(ids), size)]

    def train(self, server_round: int, client_ids, shared: Params, cfg: ClientConfig, want_records: bool
              ) -> tuple[list[ClientRecord], list[PartialSum], list[tuple[int, str]]]:
        """``(records, partial sums, failures)`` of one round for ``client_ids`` (all of this cohort's)."""
        fused = self.can_fuse(cfg, want_records)
        records: list[ClientRecord] = []
        partials: list[PartialSum] = []
        failures: list[tuple[int, str]] = []
        for chunk in self._chunks(client_ids):
            pieces = [chunk]
            while pieces:
                piece = pieces.pop(0)
                try:
                    if fused:
                        partials.append(self._fused(server_round, piece, shared, cfg))
                    else:
                        out = self._per_client(server_round, piece, shared, cfg)
                        if want_records:
                            records.extend(out)
                        else:
                            partials.append(sum_records(out))
                except Exception as e:  # noqa: BLE001 -- whatever a client raises must not kill the round
                    if len(piece) > 1:  # retry client by client: one faulty device fails alone
                        pieces = [piece[i:i + 1] for i in range(len(piece))] + pieces
                    else:
                        failures.append((int(piece[0]), f"{type(e).__name__}: {e}"))
        return records, partials, failures

    def _fused(self, server_round: int, chunk: np.ndarray, shared: Params, cfg: ClientConfig) -> PartialSum:
        """One batched backward of the chunk's summed objective: ``sum_c n_c * delta_c`` without per-client grads."""
        task = self.task
        batch = task.collate([task.prepare(int(c), server_round) for c in chunk])
        batch["users"] = torch.arange(len(chunk))  # row c of the chunk's personal rows
        n = torch.as_tensor([task.weight(int(c)) for c in chunk], dtype=torch.float64)
        leaves = {k: v.detach().requires_grad_(True) for k, v in shared.items()}
        rows = self.store.rows(chunk)
        own = {k: v.flatten(0, 1).requires_grad_(True) for k, v in rows.items()}  # (C, ...)
        summed = task.fused_sum({**leaves, **own}, batch, n.float())  # sum_c n_c * L_c
        grads = torch.autograd.grad(summed, [*leaves.values(), *own.values()])
        sums = {k: -cfg.lr * g for k, g in zip(leaves, grads)}
        personal = {}
        for (k, p), g in zip(own.items(), grads[len(leaves):]):  # row c of g is n_c * (client c's own gradient)
            g = g / n.to(g.dtype).view(-1, *([1] * (p.dim() - 1)))
            personal[k] = (p.detach() - cfg.personal_lr * g).unsqueeze(1)
        self.store.set_rows(chunk, personal)
        return PartialSum(sums, float(n.sum()), float(summed.detach()), len(chunk), [int(c) for c in chunk])

    def _per_client(self, server_round: int, chunk: np.ndarray, shared: Params, cfg: ClientConfig
                    ) -> list[ClientRecord]:
        task = self.task
        rows = self.store.rows(chunk)
        if task.trainer == "stateful":
            (c,) = chunk
            delta, own, loss = task.train_stateful(int(c), server_round, shared, {k: v[0] for k, v in rows.items()}, cfg)
            deltas = {k: v.detach().unsqueeze(0) for k, v in delta.items()}
            personal = {k: v.detach().unsqueeze(0) for k, v in own.items()}
            losses = torch.tensor([float(loss)])
        else:
            batch = task.collate([task.prepare(int(c), server_round) for c in chunk])

            def one(personal_rows, example):
                return local_update(task.objective, shared, personal_rows, example, cfg)

            with torch.no_grad():
                deltas, personal, losses = vmap(one, randomness="error")(rows, batch)
        if self.transform is not None:
            gens = [client_generator(self.store.secret, server_round, int(c), "transform") for c in chunk]
            deltas = self.transform(deltas, gens)
        self.store.set_rows(chunk, personal)
        reported = self.transform.metadata if self.transform is not None else (lambda w, m: (w, m))
        return [ClientRecord(int(c), {k: v[i] for k, v in deltas.items()},
                             *reported(task.weight(int(c)), {"loss": float(losses[i])})) for i, c in enumerate(chunk)]

    # --- evaluation --------------------------------------------------------------------------------------------------
    def evaluate(self, stage: str, shared: Params, client_ids, best: bool = False,
                 batch_size: int = 4096) -> dict[str, np.ndarray]:
        """The task's evaluation columns for ``client_ids`` (in that order), with their current or best-round rows."""
        client_ids = np.asarray(client_ids, dtype=np.int64)
        parts = []
        for start in range(0, len(client_ids), batch_size):
            ids = client_ids[start:start + batch_size]
            parts.append(self.task.evaluate(stage, shared, self.store.rows(ids, best=best), ids))
        if not parts:
            return self.task.failed_columns(0)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def sum_records(records: list[ClientRecord]) -> PartialSum:
    """The partial sum of some clients' records (through the one weighted sum)."""
    acc = WeightedSum()
    acc.add_stacked({k: torch.stack([r.tensors[k] for r in records]) for k in records[0].tensors},
                    torch.tensor([r.weight for r in records], dtype=torch.float64),
                    torch.tensor([r.metrics.get("loss", 0.0) for r in records], dtype=torch.float64))
    return PartialSum(acc.sums, acc.weight, acc.loss, acc.count, [r.client_id for r in records])
