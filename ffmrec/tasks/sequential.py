"""Federated next-item prediction: one client per user (FedSASRec and every sequential model behind the interface).

A client holds its user's training history (the leave-one-out split's training part) and the user's personal rows of
the model's personal parameters. Each round ``prepare`` turns the history into the next-item example and draws the
model's declared noise (dropout masks, sampled negatives) from the client's own generator, so every engine computes
exactly the same update. Evaluation ranks the user's held-out item over the full catalogue on the device; with an
``exposure_item`` set (by a robustness wrapper, :mod:`ffmrec.federated.adversary`) it also ranks that item among the
user's unseen items, for its exposure ER@K.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.func import functional_call

from ffmrec.data.batching import collate, next_item_example, num_examples
from ffmrec.eval.exposure import exposure_rate
from ffmrec.eval.metrics import ranking_metrics
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.eval.ranking import rank_targets
from ffmrec.models.base import Recommender
from ffmrec.tasks.base import ClientTask, Params, client_generator


class SequentialTask(ClientTask):
    """Next-item prediction over a leave-one-out split.

    ``exposure_item`` (default None): an item whose exposure ER@``exposure_k`` the evaluation also reports.

    :param split: every user's sequence; a client only reads its own.
    :param build_model: ``build_model(num_users)`` builds the architecture (``num_users=1`` for one device: its
        personal rows are then row 0).
    :param clients: the users this process serves (a SuperNode's partition); default all.
    """

    def __init__(self, split: LeaveOneOut, build_model: Callable[[int], Recommender], seed: int,
                 mask_history: bool = True, ks: Sequence[int] = (10, 20), clients: np.ndarray | None = None):
        self.split = split
        self.build_model = build_model
        self.seed = seed
        self.mask_history = mask_history
        self.ks = tuple(ks)
        self.model: Recommender = build_model(1)  # the architecture of one device
        self.model.train()
        self.max_len = self.model.max_len
        served = range(split.num_users) if clients is None else clients
        self.histories = {int(u): split.train_sequence(int(u)) for u in served}
        self.shared_names = self.model.shared_parameter_names()
        self.personal_names = tuple(self.model.personal_parameters)
        self.embedding_params = tuple(self.model.embedding_parameters)
        self.fusable = bool(self.model.loss_is_position_mean)
        self._eval_model: Recommender | None = None
        self._eval_rows = 0
        self.exposure_item: int | None = None
        self.exposure_k = 10

    @property
    def num_clients(self) -> int:
        return self.split.num_users

    def weight(self, client: int) -> int:
        return num_examples(self.histories[client], self.max_len)

    @property
    def max_weight(self) -> int:
        return self.max_len

    # --- parameters -------------------------------------------------------------------------------------------
    def initial_shared(self) -> Params:
        torch.manual_seed(self.seed)
        params = dict(self.build_model(1).named_parameters())
        return {k: params[k].detach().clone() for k in self.shared_names}

    def initial_personal(self, client: int) -> Params:
        g = client_generator(self.seed, 0, client)
        params = dict(self.model.named_parameters())
        return {k: torch.randn(params[k].shape, generator=g) * 0.02 for k in self.personal_names}

    # --- on the device ------------------------------------------------------------------------------------------
    def prepare(self, client: int, server_round: int) -> dict:
        example = next_item_example(self.histories[client], self.max_len)
        example["users"] = torch.tensor(0)  # the device's own personal row
        shapes = self.model.noise_shapes(len(example["input_ids"]))
        if shapes:
            g = client_generator(self.seed, server_round, client)
            example["noise"] = {k: torch.rand(shape, generator=g) for k, shape in shapes.items()}
        return example

    def collate(self, prepared: Sequence[dict]) -> dict:
        return collate(prepared, self.model.noise_time_axes())

    def objective(self, params: Params, batch: dict, *, compact: bool = False) -> torch.Tensor:
        return functional_call(self.model, params, (batch,), {"compact": compact})

    def private_arrays(self, client: int, server_round: int) -> dict[str, torch.Tensor]:
        out = super().private_arrays(client, server_round)
        out["history"] = torch.as_tensor(self.histories[client])
        return out

    # --- evaluation ---------------------------------------------------------------------------------------------
    def _model_for(self, rows: int) -> Recommender:
        if self._eval_model is None or self._eval_rows < rows:
            self._eval_model = self.build_model(max(rows, 1))
            self._eval_rows = max(rows, 1)
        return self._eval_model

    @torch.no_grad()
    def evaluate(self, stage: str, shared: Params, personal: Params, clients: np.ndarray) -> dict[str, np.ndarray]:
        clients = np.asarray(clients, dtype=np.int64)
        model = self._model_for(len(clients))
        state = dict(shared)
        for name in self.personal_names:  # the clients' own rows, in order; unused rows are zero
            table = torch.zeros_like(dict(model.named_parameters())[name])
            table[:len(clients)] = personal[name].reshape(len(clients), *table.shape[1:])
            state[name] = table
        model.load_state_dict(state, strict=True)
        model.eval()
        histories, targets, _ = self.split.stage(stage, clients)
        ranks = rank_targets(model.full_sort_predict, histories, targets, np.arange(len(clients)),
                             max_len=self.max_len, batch_size=1024, mask_history=self.mask_history)
        columns = {"rank": ranks}
        if hasattr(self.split, "scored"):  # a protocol that scores only some users (cold items: cold targets)
            columns["scored"] = self.split.scored(stage, clients).astype(np.int64)
        if self.exposure_item is not None:
            # the item's rank among the user's unseen items; 0 for users who interacted with it (not in ER@K)
            item = self.exposure_item
            exposure = rank_targets(model.full_sort_predict, histories, np.full(len(clients), item, dtype=np.int64),
                                    np.arange(len(clients)), max_len=self.max_len, batch_size=1024, mask_history=True)
            seen = np.array([item in self.split.sequences[int(c)] for c in clients], dtype=bool)
            columns["exposure_rank"] = np.where(seen, 0, exposure)
        return columns

    def summarize(self, columns: dict[str, np.ndarray]) -> dict[str, float]:
        ranks = np.asarray(columns["rank"])
        if "scored" in columns:  # only the scored users count (cold-items protocol)
            ranks = ranks[np.asarray(columns["scored"]) > 0]
        metrics = ranking_metrics(ranks, self.ks)
        if "exposure_rank" in columns:
            exposure = np.asarray(columns["exposure_rank"])
            metrics[f"ER@{self.exposure_k}"] = exposure_rate(exposure, self.exposure_k, eligible=exposure > 0)
        return metrics

    def failed_columns(self, num: int) -> dict[str, np.ndarray]:
        columns = {"rank": np.full(num, self.model.num_items, dtype=np.int64)}
        if hasattr(self.split, "scored"):  # a failed client counts as a scored miss
            columns["scored"] = np.ones(num, dtype=np.int64)
        if self.exposure_item is not None:  # a failed user is eligible, and not exposed
            columns["exposure_rank"] = np.full(num, self.model.num_items, dtype=np.int64)
        return columns
