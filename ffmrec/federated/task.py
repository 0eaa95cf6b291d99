"""A federated sequential-recommendation task: one client per user, the model split into shared and personal parts.

The task is everything an engine needs and nothing about how clients are run: the users' data (each client sees only
its own history), the model architecture, the initial parameters and the per-client entry points that Flower's
ClientApp calls. Personal parameters are tables with one row per user; a client only ever holds its own row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.eval.ranking import exclude_history, pad_left, target_ranks
from ffmrec.federated.client import ClientConfig, local_update
from ffmrec.models.base import Recommender
from ffmrec.train.batching import next_item_batch, num_examples

Params = dict[str, torch.Tensor]


def client_seed(seed: int, server_round: int, client_id: int) -> int:
    """A 63-bit seed for one client's randomness in one round (identical in every engine and after a resume)."""
    digest = hashlib.blake2b(f"{seed}/{server_round}/{client_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass
class ClientUpdate:
    """What one client returns; ``personal`` stays on the device."""

    delta: dict[str, np.ndarray]
    num_examples: int
    metrics: dict[str, float]
    personal: dict[str, np.ndarray]


class SequentialTask:
    """Federated next-item prediction over a leave-one-out split (FedSASRec and its descendants).

    ``build_model(num_users)`` builds the architecture; it is called with ``num_users=1`` for one device and with all
    users for batched evaluation.
    """

    def __init__(self, split: LeaveOneOut, build_model, seed: int, mask_history: bool = True):
        self.split = split
        self.build_model = build_model
        self.seed = seed
        self.mask_history = mask_history
        self.model: Recommender = build_model(1)  # the architecture of one device
        self.max_len: int = self.model.cfg.max_len
        self.histories = split.train_sequences()
        self.num_examples = np.array([num_examples(h, self.max_len) for h in self.histories], dtype=np.int64)
        self.shared_names = self.model.shared_parameter_names()
        self.personal_names = tuple(self.model.personal_parameters)

    @property
    def num_clients(self) -> int:
        return self.split.num_users

    # --- parameters -------------------------------------------------------------------------------------------
    def initial_shared(self) -> Params:
        torch.manual_seed(self.seed)
        model = self.build_model(1)
        params = dict(model.named_parameters())
        return {k: params[k].detach().clone() for k in self.shared_names}

    def initial_personal(self, client_id: int) -> Params:
        """A user's personal rows, drawn from their own seed (so every engine starts them identically)."""
        g = torch.Generator().manual_seed(client_seed(self.seed, 0, client_id))
        params = dict(self.model.named_parameters())
        return {k: torch.randn(params[k].shape, generator=g) * 0.02 for k in self.personal_names}

    # --- one device ---------------------------------------------------------------------------------------------
    def client_batch(self, client_id: int, width: int | None = None) -> dict[str, torch.Tensor]:
        """The user's training example without a batch dimension: ``input_ids``/``targets`` ``(T,)``, ``users`` ``()``."""
        batch = next_item_batch([self.histories[client_id]], np.array([0]), self.max_len, width)
        return {k: v[0] for k, v in batch.items()}

    def train_client(self, client_id: int, server_round: int, shared: Params, personal: Params,
                     cfg: ClientConfig) -> tuple[Params, Params, float]:
        """Run :func:`local_update` for one client with its seeded randomness."""
        torch.manual_seed(client_seed(self.seed, server_round, client_id))
        delta, own, loss = local_update(self.model, shared, personal, self.client_batch(client_id), cfg)
        return {k: v.detach() for k, v in delta.items()}, {k: v.detach() for k, v in own.items()}, float(loss)

    def client_update(self, client_id: int, shared: dict[str, np.ndarray], personal: dict[str, np.ndarray] | None,
                      round_config: dict) -> ClientUpdate:
        """Flower's entry point: numpy in, numpy out."""
        server_round = int(round_config.get("server-round", 0))
        cfg = ClientConfig(**{k: round_config[k] for k in ClientConfig.__dataclass_fields__ if k in round_config})
        own = {k: torch.as_tensor(v) for k, v in personal.items()} if personal else self.initial_personal(client_id)
        params = {k: torch.as_tensor(shared[k]) for k in self.shared_names}
        if self.num_examples[client_id] == 0:
            zero = {k: np.zeros_like(v) for k, v in shared.items()}
            return ClientUpdate(zero, 0, {"loss": float("nan")}, {k: v.numpy() for k, v in own.items()})
        delta, own, loss = self.train_client(client_id, server_round, params, own, cfg)
        return ClientUpdate(
            delta={k: v.numpy() for k, v in delta.items()},
            num_examples=int(self.num_examples[client_id]),
            metrics={"loss": loss},
            personal={k: v.numpy() for k, v in own.items()},
        )

    @torch.no_grad()
    def client_rank(self, client_id: int, shared: Params, personal: Params, stage: str) -> int:
        """Rank of the user's held-out item under the global model plus the user's personal rows (on the device)."""
        history, target = self.split.history_and_target(stage, client_id)
        self.model.load_state_dict({**shared, **personal}, strict=True)
        self.model.eval()
        batch = {"input_ids": pad_left([history], self.max_len), "users": torch.zeros(1, dtype=torch.long)}
        scores = self.model.full_sort_predict(batch)
        t = torch.tensor([target])
        if self.mask_history:
            scores = exclude_history(scores, pad_left([history], len(history)), t)
        return int(target_ranks(scores, t)[0])

    def client_evaluate(self, client_id: int, shared: dict[str, np.ndarray], personal: dict[str, np.ndarray] | None,
                        stage: str) -> dict[str, float]:
        own = {k: torch.as_tensor(v) for k, v in personal.items()} if personal else self.initial_personal(client_id)
        params = {k: torch.as_tensor(v) for k, v in shared.items()}
        return {"rank": float(self.client_rank(client_id, params, own, stage))}
