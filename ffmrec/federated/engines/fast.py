"""ffmrec's fast simulator: thousands of clients per round in one process, vectorised.

It runs the same :func:`~ffmrec.federated.client.local_update` as the Flower engines, mapped over a chunk of clients
with ``torch.func.vmap`` (each client its own copy of the weights, its own personal rows, its own dropout masks).
Clients are grouped by history length so that a chunk is trimmed to its longest history (the models are exact under
left padding). The simulated devices' storage, every user's personal rows, lives here.

When the strategy only needs the example-weighted mean of the deltas and each client takes one plain SGD step, the
mean is linear in the clients' gradients:

    sum_i n_i * (-lr * grad L_i) / sum_i n_i  =  -lr * grad( sum_i n_i * L_i / sum_i n_i )

so the simulator computes it with one ordinary batched backward per chunk instead of materialising a gradient per
client (the *fused* path). Both paths are checked against Flower's simulation engine in the tests.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, vmap

from ffmrec.eval.ranking import rank_targets
from ffmrec.federated.client import ClientConfig, local_update
from ffmrec.federated.engines.base import Params, RoundResult
from ffmrec.federated.task import SequentialTask, client_seed
from ffmrec.train.batching import next_item_batch


class FastSimulator:
    def __init__(self, task: SequentialTask, chunk_size: int = 128, fused: bool = True):
        self.task = task
        self.chunk_size = chunk_size
        self.fused = fused
        rows = [task.initial_personal(c) for c in range(task.num_clients)]
        self.personal: Params = {k: torch.stack([r[k] for r in rows]) for k in task.personal_names}  # (U, 1, ...)
        self._eval_model = None

    # --- training -------------------------------------------------------------------------------------------------
    def _chunks(self, client_ids: list[int]) -> list[np.ndarray]:
        ids = np.array([c for c in client_ids if self.task.num_examples[c] > 0], dtype=np.int64)
        order = np.argsort(self.task.num_examples[ids], kind="stable")  # similar lengths together: little padding
        ids = ids[order]
        return [ids[i:i + self.chunk_size] for i in range(0, len(ids), self.chunk_size)]

    def _batch(self, chunk: np.ndarray) -> dict[str, torch.Tensor]:
        return next_item_batch([self.task.histories[c] for c in chunk], np.arange(len(chunk)), self.task.max_len)

    def train_round(self, server_round: int, client_ids: list[int], shared: Params, cfg: ClientConfig,
                    need_updates: bool) -> RoundResult:
        fused = self.fused and not need_updates and cfg.optimizer == "sgd" and cfg.local_epochs == 1
        step = self._fused_chunk if fused else self._vmapped_chunk
        sums = {k: torch.zeros_like(v) for k, v in shared.items()}  # sum_i n_i * delta_i
        parts: list[tuple[np.ndarray, Params]] = []  # per-client deltas, when the strategy needs them
        ok: list[int] = []
        failures: list[tuple[int, str]] = []
        loss_sum = 0.0
        def commit(piece: np.ndarray, out) -> None:
            nonlocal loss_sum
            weighted, deltas, loss, personal = out
            for k, v in weighted.items():
                sums[k] += v
            for k, v in personal.items():
                self.personal[k][piece] = v
            if deltas is not None:
                parts.append((piece, deltas))
            ok.extend(int(c) for c in piece)
            loss_sum += loss

        for i, chunk in enumerate(self._chunks(client_ids)):
            seed = client_seed(self.task.seed, server_round, -1 - i)
            out, error = self._attempt(step, chunk, shared, cfg, need_updates, seed)
            if error is None:
                commit(chunk, out)
                continue
            # The chunk raised: retry client by client, so that one faulty device fails alone.
            for c in chunk:
                out, error = self._attempt(step, chunk[chunk == c], shared, cfg, need_updates, seed)
                if error is None:
                    commit(chunk[chunk == c], out)
                else:
                    failures.append((int(c), error))
        weights = torch.as_tensor(self.task.num_examples[ok], dtype=torch.float32)
        total = float(weights.double().sum())
        if not ok:
            return RoundResult(num_ok=0, failures=failures)
        result = RoundResult(num_ok=len(ok), failures=failures, total_weight=total, loss=loss_sum / total,
                             weights=weights, client_ids=ok)
        if need_updates:
            result.deltas = {k: torch.cat([d[k] for _, d in parts]) for k in shared}
        else:
            result.mean_delta = {k: v / total for k, v in sums.items()}
        return result

    @staticmethod
    def _attempt(step, piece, shared, cfg, need_updates, seed):
        torch.manual_seed(seed)
        try:
            return step(piece, shared, cfg, need_updates), None
        except Exception as e:  # noqa: BLE001 -- whatever a client raises must not kill the round
            return None, f"{type(e).__name__}: {e}"

    def _fused_chunk(self, chunk: np.ndarray, shared: Params, cfg: ClientConfig, need_updates: bool):
        """One batched backward of the chunk's summed loss: sum_i n_i * delta_i without per-client gradients."""
        batch = self._batch(chunk)
        n = torch.as_tensor(self.task.num_examples[chunk], dtype=torch.float32)
        leaves = {k: v.detach().requires_grad_(True) for k, v in shared.items()}
        own = {k: self.personal[k][chunk].flatten(0, 1).requires_grad_(True) for k in self.personal}  # (C, ...)
        mean_loss = functional_call(self.task.model, {**leaves, **own}, (batch,), {"compact": True})
        summed = mean_loss * n.sum()  # sum over the chunk's positions = sum_i n_i * L_i
        grads = torch.autograd.grad(summed, [*leaves.values(), *own.values()])
        weighted = {k: -cfg.lr * g for k, g in zip(leaves, grads)}
        personal = {}
        for (k, p), g in zip(own.items(), grads[len(leaves):]):  # row i of g is n_i * (client i's own gradient)
            g = g / n.view(-1, *([1] * (p.dim() - 1)))
            personal[k] = (p.detach() - cfg.personal_lr * g).unsqueeze(1)
        return weighted, None, float(summed.detach()), personal

    def _vmapped_chunk(self, chunk: np.ndarray, shared: Params, cfg: ClientConfig, need_updates: bool):
        """:func:`local_update` mapped over the chunk's clients."""
        model = self.task.model

        def one(personal_row, batch):
            return local_update(model, shared, personal_row, batch, cfg)

        batch = self._batch(chunk)
        own = {k: self.personal[k][chunk] for k in self.personal}  # (C, 1, ...)
        with torch.no_grad():
            deltas, personal, losses = vmap(one, randomness="different")(own, batch)
        n = torch.as_tensor(self.task.num_examples[chunk], dtype=torch.float32)
        weighted = {k: torch.tensordot(n, d, dims=1) for k, d in deltas.items()}
        loss = float((n.double() * losses.double()).sum())
        return weighted, (deltas if need_updates else None), loss, personal

    # --- evaluation -----------------------------------------------------------------------------------------------
    def rank(self, stage: str, shared: Params, users: np.ndarray) -> np.ndarray:
        """Ranks of ``users``' held-out items under the global model plus each user's own personal rows."""
        if self._eval_model is None:
            self._eval_model = self.task.build_model(max(self.task.num_clients, 1))
        model = self._eval_model
        model.load_state_dict({**shared, **{k: v.flatten(0, 1) for k, v in self.personal.items()}})
        model.eval()
        histories, targets, users = self.task.split.stage(stage, users)
        return rank_targets(model.full_sort_predict, histories, targets, users, max_len=self.task.max_len,
                            batch_size=1024, mask_history=self.task.mask_history)

    # --- checkpointing --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"personal": {k: v.clone() for k, v in self.personal.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.personal = {k: v.clone() for k, v in state["personal"].items()}
