"""A tiny federated task and driver for smoke-testing the Flower engines without the real model.

:class:`ToyLinearTask` implements the engine-independent task interface (``num_clients``, ``client_update``,
``client_evaluate``) with a 10-parameter linear model in numpy: user ``u`` holds ``examples_per_user`` points
``(x, y)`` drawn from its own seed, with ``y = x . w_true + b_u + noise``; the shared parameters are ``w`` (10,)
and the personal state is the user's bias ``b_u`` (1,), which never leaves the device.

:func:`fedavg_driver` is a minimal stand-in for ``ffmrec.federated.server.run_server``: seeded exact client
sampling and plain weighted FedAvg of the deltas, then one evaluation over all users. Both are selected through
the run config (``task-factory`` / ``driver``), so they work unchanged in every Flower engine and in the
processes Flower starts itself (they live in an importable module for that reason).
"""

from __future__ import annotations

import time

import numpy as np

from ffmrec.federated.task import ClientUpdate

DIM = 10


def _int_list(value) -> set[int]:
    if value is None or value == "":
        return set()
    if isinstance(value, (int, np.integer)):
        return {int(value)}
    return {int(v) for v in str(value).replace(";", ",").split(",") if v.strip()}


class ToyLinearTask:
    """Federated linear regression, one client per user (see the module docstring).

    Config keys (all optional): ``seed`` (0), ``num-users`` (6), ``examples-per-user`` (8), ``lr`` (0.1),
    ``local-steps`` (3), ``fail-users`` (comma-separated user ids whose ``client_update`` raises; for tests).
    """

    def __init__(self, config: dict):
        self.seed = int(config.get("seed", 0))
        self.num_clients = int(config.get("num-users", 6))
        self.examples = int(config.get("examples-per-user", 8))
        self.lr = float(config.get("lr", 0.1))
        self.local_steps = int(config.get("local-steps", 3))
        self.fail_users = _int_list(config.get("fail-users"))
        self.w_true = np.random.default_rng(self.seed).normal(size=DIM)

    def initial_shared(self) -> dict[str, np.ndarray]:
        return {"w": np.zeros(DIM, dtype=np.float64)}

    def _data(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1, client_id])
        x = rng.normal(size=(self.examples, DIM))
        bias = float(client_id % 3) - 1.0
        y = x @ self.w_true + bias + 0.01 * rng.normal(size=self.examples)
        return x, y

    def _check(self, client_id: int) -> None:
        if not 0 <= client_id < self.num_clients:
            raise ValueError(f"unknown client {client_id} (num_clients={self.num_clients})")

    def client_update(self, client_id: int, shared: dict[str, np.ndarray], personal: dict[str, np.ndarray] | None,
                      round_config: dict) -> ClientUpdate:
        self._check(client_id)
        if client_id in self.fail_users:
            raise RuntimeError(f"toy client {client_id} fails on purpose")
        x, y = self._data(client_id)
        w0 = np.asarray(shared["w"], dtype=np.float64)
        w = w0.copy()
        b = np.asarray(personal["b"], dtype=np.float64).copy() if personal else np.zeros(1)
        lr = float(round_config.get("lr", self.lr))
        steps = int(round_config.get("local-steps", self.local_steps))
        loss0 = float(np.mean((x @ w + b[0] - y) ** 2))
        for _ in range(steps):
            err = x @ w + b[0] - y
            w -= lr * 2 * x.T @ err / len(y)
            b -= lr * 2 * np.mean(err)
        return ClientUpdate({"w": w - w0}, len(y), {"loss": loss0, "had-personal": float(personal is not None)},
                               {"b": b})

    def client_evaluate(self, client_id: int, shared: dict[str, np.ndarray], personal: dict[str, np.ndarray] | None,
                        stage: str) -> dict[str, float]:
        self._check(client_id)
        x, y = self._data(client_id)
        b = float(np.asarray(personal["b"])[0]) if personal else 0.0
        return {"mse": float(np.mean((x @ np.asarray(shared["w"]) + b - y) ** 2)), "had-personal": float(personal is not None)}


def build_toy_task(config: dict) -> ToyLinearTask:
    return ToyLinearTask(config)


def _weighted_mean(outcomes) -> dict[str, float]:
    total = sum(o.num_examples for o in outcomes) or 1
    keys = sorted({k for o in outcomes for k in o.metrics})
    return {k: float(sum(o.metrics.get(k, 0.0) * o.num_examples for o in outcomes) / total) for k in keys}


def fedavg_driver(config: dict, executor) -> dict:
    """Stand-in server loop: ``rounds`` (2) rounds of weighted FedAvg over ``clients-per-round`` (all) seeded-sampled
    clients, then an evaluation of every client on stage ``"valid"``. Returns ``{"shared", "initial", "history"}``."""
    from ffmrec.federated.engines.flower.apps import build_task_cached

    task = build_task_cached(config)
    shared = {k: np.asarray(v) for k, v in task.initial_shared().items()}
    initial = {k: v.copy() for k, v in shared.items()}
    n = task.num_clients
    per_round = int(config.get("clients-per-round", n)) or n
    rng = np.random.default_rng(int(config.get("seed", 0)))
    history: list[dict] = []
    for server_round in range(1, int(config.get("rounds", 2)) + 1):
        ids = sorted(int(i) for i in rng.choice(n, size=min(per_round, n), replace=False))
        start = time.perf_counter()
        outcomes = executor.train(server_round, ids, shared, {"server-round": server_round})
        seconds = time.perf_counter() - start
        ok = [o for o in outcomes if o.error is None and o.delta is not None and o.num_examples > 0]
        total = sum(o.num_examples for o in ok)
        if ok:
            shared = {k: v + sum(o.delta[k] * o.num_examples for o in ok) / total for k, v in shared.items()}
        history.append({"round": server_round, "sampled": ids, "succeeded": [o.client_id for o in ok],
                        "errors": {o.client_id: o.error for o in outcomes if o.error is not None},
                        "train": _weighted_mean(ok), "seconds": seconds})
    start = time.perf_counter()
    evals = executor.evaluate(list(range(n)), shared, "valid")
    seconds = time.perf_counter() - start
    good = [o for o in evals if o.error is None]
    history.append({"stage": "valid", "clients": len(good),
                    "metrics": {k: float(np.mean([o.metrics[k] for o in good])) for k in (good[0].metrics if good else {})},
                    "errors": {o.client_id: o.error for o in evals if o.error is not None}, "seconds": seconds})
    return {"shared": shared, "initial": initial, "history": history}
