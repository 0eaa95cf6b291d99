"""What one client does: the seams every federated engine and the driver loop call.

A *client task* owns the clients' private data (each client only ever sees its own), the model architecture, which
parameters are shared and which personal, and four seams:

``prepare(client, round)``
    Runs on the device each round with the client's own generator (:func:`client_generator`, from
    ``(seed, round, client)``), and builds that round's training inputs from the client's private data: the padded
    sequence, augmented or generated views, dropout noise and sampled negatives. What it builds never leaves the device.
``objective(params, batch)``
    The local objective: the model's loss plus the task's own terms, as a pure function of the parameters (so that
    ``torch.func`` can differentiate and ``vmap`` it).
``trainer``
    ``"functional"``: the engines run :func:`ffmrec.federated.client.local_update` on the objective, vectorised over
    clients with ``vmap``; ``"stateful"``: the task trains one client at a time with a real optimizer on a stateful
    module (a Hugging Face model with PEFT adapters), through :meth:`ClientTask.train_stateful`.
``evaluate(stage, shared, personal, clients)``
    Per-client evaluation columns computed where the data lives (the held-out item's rank, or set-based counts);
    :meth:`ClientTask.summarize` turns the columns of all clients into the run's metrics.

A task that can compute ``sum_c n_c * L_c`` over a collated chunk, each client's term from its own data only
(:meth:`ClientTask.fused_sum`), sets :attr:`ClientTask.fusable`; only then may an engine take the fused path (one
batched backward for a whole chunk: exact for one SGD step, by linearity). Everything else runs client by client
(vectorised). A per-position mean loss gets ``fused_sum`` for free (the batch mean times the total weight); a loss with
an InfoNCE term must sum per client explicitly, or stay unfused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

Params = dict[str, torch.Tensor]


def client_seed(seed: int, server_round: int, client_id: int, stream: str = "") -> int:
    """A 63-bit seed for one client's randomness in one round (identical in every engine and after a resume);
    ``stream`` separates independent uses (``"transform"`` for the outgoing update's noise)."""
    digest = hashlib.blake2b(f"{seed}/{server_round}/{client_id}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def client_generator(seed: int, server_round: int, client_id: int, stream: str = "") -> torch.Generator:
    """A torch generator seeded by :func:`client_seed`."""
    return torch.Generator().manual_seed(client_seed(seed, server_round, client_id, stream))


def payload_bytes(tensors: Params) -> int:
    """Bytes of the tensors' data, the size every engine reports for what a client sends or receives."""
    return int(sum(t.numel() * t.element_size() for t in tensors.values()))


class ClientTask:
    """Base of every client task (see the module docstring for the seams)."""

    #: ``"functional"`` (vmappable pure update) or ``"stateful"`` (one client at a time, a real optimizer).
    trainer: str = "functional"
    #: :meth:`fused_sum` computes ``sum_c n_c * L_c`` exactly (see the module docstring).
    fusable: bool = False
    #: ``"ranking"`` (HR/NDCG/MRR over ranks), ``"set"`` (precision/recall/F1/MRR/Hits@K) or ``"regression"``.
    metric_kind: str = "ranking"
    seed: int = 0
    shared_names: list[str]
    personal_names: tuple[str, ...] = ()
    #: Shared embedding tables whose rows a client touches sparsely (row-wise FedAvg averages them per row).
    embedding_params: tuple[str, ...] = ()

    # --- the population --------------------------------------------------------------------------------------------
    @property
    def num_clients(self) -> int:
        raise NotImplementedError

    def weight(self, client: int) -> int:
        """The client's weight in averaging (its training examples); 0 means it has nothing to train on."""
        raise NotImplementedError

    @property
    def max_weight(self) -> int:
        """The largest weight an honest client can claim (the driver refuses records above it)."""
        raise NotImplementedError

    # --- parameters ------------------------------------------------------------------------------------------------
    def initial_shared(self) -> Params:
        raise NotImplementedError

    def initial_personal(self, client: int) -> Params:
        """The client's personal rows, each ``(1, ...)``, drawn from its own seed (identical in every engine)."""
        return {}

    def shared_specs(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Name -> (shape, dtype) of every shared tensor: exactly what a client may send."""
        return {k: (tuple(v.shape), v.dtype) for k, v in self.initial_shared().items()}

    # --- on the device ---------------------------------------------------------------------------------------------
    def prepare(self, client: int, server_round: int) -> dict:
        """The client's training input for this round (no batch dimension), from its own generator."""
        raise NotImplementedError

    def collate(self, prepared: Sequence[dict]) -> dict:
        """Stack prepared inputs of several clients into one batch (padding as the model needs)."""
        raise NotImplementedError

    def objective(self, params: Params, batch: dict, *, compact: bool = False) -> torch.Tensor:
        """The local objective of a batch (a scalar), a pure function of ``params`` (shared and personal)."""
        raise NotImplementedError

    def fused_sum(self, params: Params, batch: dict, weights: torch.Tensor) -> torch.Tensor:
        """``sum_c n_c * L_c`` over a collated chunk (``batch["users"]`` indexes the chunk's personal rows); the default
        holds when the objective is a mean over positions whose count per client is its weight."""
        return self.objective(params, batch, compact=True) * weights.sum()

    def train_stateful(self, client: int, server_round: int, shared: Params, personal: Params,
                       cfg) -> tuple[Params, Params, float]:
        """Stateful trainer: ``(shared delta, new personal rows, loss)`` for one client."""
        raise NotImplementedError(f"{type(self).__name__} has no stateful trainer")

    def private_arrays(self, client: int, server_round: int) -> dict[str, torch.Tensor]:
        """Everything the client holds that must never leave it (raw data, ``prepare`` outputs); the egress audit
        checks no outgoing tensor equals any of these."""
        prepared = self.prepare(client, server_round) if self.weight(client) > 0 else {}
        out = {}
        for key, value in _flatten(prepared).items():
            out[f"prepare/{key}"] = value
        return out

    # --- evaluation where the data lives ---------------------------------------------------------------------------
    def evaluate(self, stage: str, shared: Params, personal: Params, clients: np.ndarray) -> dict[str, np.ndarray]:
        """Per-client evaluation columns; ``personal[name]`` holds the clients' rows in the order of ``clients``."""
        raise NotImplementedError

    def summarize(self, columns: dict[str, np.ndarray]) -> dict[str, float]:
        """The run's metrics from the columns of every evaluated client."""
        raise NotImplementedError

    def failed_columns(self, num: int) -> dict[str, np.ndarray]:
        """Columns for clients whose evaluation failed: they count as misses."""
        raise NotImplementedError


class TaskWrapper(ClientTask):
    """A task that changes some seams of an ``inner`` task and hands every other seam, and every attribute it does not
    define (``histories``, ``split``, ``model``, ...), to ``inner``. Subclasses override only what they change."""

    def __init__(self, inner: ClientTask):
        self.inner = inner
        self.seed = inner.seed
        self.trainer = inner.trainer
        self.fusable = inner.fusable
        self.metric_kind = inner.metric_kind
        self.shared_names = list(inner.shared_names)
        self.personal_names = tuple(inner.personal_names)
        self.embedding_params = inner.embedding_params

    def __getattr__(self, name):
        if name == "inner":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def unwrapped(self) -> ClientTask:
        """The innermost task (the one that holds the data and the model)."""
        task = self.inner
        return task.unwrapped if isinstance(task, TaskWrapper) else task

    @property
    def num_clients(self) -> int:
        return self.inner.num_clients

    def weight(self, client: int) -> int:
        return self.inner.weight(client)

    @property
    def max_weight(self) -> int:
        return self.inner.max_weight

    def initial_shared(self) -> Params:
        return self.inner.initial_shared()

    def initial_personal(self, client: int) -> Params:
        return self.inner.initial_personal(client)

    def shared_specs(self):
        return self.inner.shared_specs()

    def prepare(self, client: int, server_round: int) -> dict:
        return self.inner.prepare(client, server_round)

    def collate(self, prepared: Sequence[dict]) -> dict:
        return self.inner.collate(prepared)

    def objective(self, params: Params, batch: dict, *, compact: bool = False) -> torch.Tensor:
        return self.inner.objective(params, batch, compact=compact)

    def fused_sum(self, params: Params, batch: dict, weights: torch.Tensor) -> torch.Tensor:
        return self.inner.fused_sum(params, batch, weights)

    def train_stateful(self, client: int, server_round: int, shared: Params, personal: Params, cfg):
        return self.inner.train_stateful(client, server_round, shared, personal, cfg)

    def private_arrays(self, client: int, server_round: int) -> dict[str, torch.Tensor]:
        return self.inner.private_arrays(client, server_round)

    def evaluate(self, stage: str, shared: Params, personal: Params, clients: np.ndarray) -> dict[str, np.ndarray]:
        return self.inner.evaluate(stage, shared, personal, clients)

    def summarize(self, columns: dict[str, np.ndarray]) -> dict[str, float]:
        return self.inner.summarize(columns)

    def failed_columns(self, num: int) -> dict[str, np.ndarray]:
        return self.inner.failed_columns(num)


def _flatten(tree: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, torch.Tensor):
            out[prefix + key] = value
    return out
