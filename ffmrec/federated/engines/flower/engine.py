"""ffmrec's driver loop on Flower: the task factory, the driver and the engine adapter the Flower apps use.

The flat Flower run config carries the whole resolved :class:`~ffmrec.pipeline.RunConfig` as YAML under
``ffmrec-config`` and the run folder under ``run-dir``. On every SuperNode, :func:`build_task` turns it into the same
:class:`~ffmrec.federated.task.SequentialTask` the fast simulator uses (each node only ever trains its own users); on the
server, :func:`run_driver` runs :func:`~ffmrec.federated.server.run_server` with a :class:`FlowerEngine`, so sampling,
aggregation, checkpoints and history are the same code as in every other engine.

Personal state lives in each SuperNode's ``Context`` (never on the server), so :meth:`FlowerEngine.state_dict` is
empty: a resumed Flower run restores the server's state exactly, and the devices keep theirs while they are alive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from ffmrec.config import dump_yaml, from_dict, to_dict
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.base import Params, RoundResult, reduce_outcomes
from ffmrec.federated.server import FederatedResult, run_server

CONFIG_KEY = "ffmrec-config"
RUN_DIR_KEY = "run-dir"


def flower_run_config(config, out_dir: Path) -> dict:
    """The flat Flower run config of a resolved RunConfig."""
    return {
        CONFIG_KEY: dump_yaml(to_dict(config)),
        RUN_DIR_KEY: str(Path(out_dir).resolve()),
        "task-factory": "ffmrec.federated.engines.flower.engine:build_task",
        "driver": "ffmrec.federated.engines.flower.engine:run_driver",
        "client-timeout": float(config.federated.client_timeout),
    }


def _run_config(flat: dict):
    from ffmrec.pipeline import RunConfig

    return from_dict(RunConfig, yaml.safe_load(flat[CONFIG_KEY]))


def _task(config):
    from ffmrec.data import load_dataset
    from ffmrec.eval.protocol import LeaveOneOut
    from ffmrec.federated.run import build_task as build_sequential_task

    dataset = load_dataset(config.dataset, options=config.data)
    return build_sequential_task(config, dataset, LeaveOneOut(dataset.sequences()))


def build_task(flat: dict):
    """Task factory of the ClientApp (``task-factory`` in the run config)."""
    torch.set_num_threads(1)  # one Ray actor per core
    return _task(_run_config(flat))


class FlowerEngine:
    """The driver's :class:`~ffmrec.federated.engines.base.Engine` on a Flower Grid (through the executor)."""

    def __init__(self, executor, num_items: int):
        self.executor = executor
        self.num_items = num_items

    def train_round(self, server_round: int, client_ids: list[int], shared: Params, cfg: ClientConfig,
                    need_updates: bool) -> RoundResult:
        arrays = {k: v.detach().cpu().numpy() for k, v in shared.items()}
        outcomes = self.executor.train(server_round, client_ids, arrays, {**cfg.to_record(), "server-round": server_round})
        good = [o for o in outcomes if o.error is None and o.num_examples > 0]
        failures = [(o.client_id, o.error.splitlines()[0]) for o in outcomes if o.error is not None]
        if not good:
            return RoundResult(num_ok=0, failures=failures)
        deltas = [{k: torch.as_tensor(v) for k, v in o.delta.items()} for o in good]
        total, loss, mean, stacked, weights = reduce_outcomes(
            deltas, [o.num_examples for o in good], [o.metrics.get("loss", float("nan")) for o in good], need_updates)
        return RoundResult(num_ok=len(good), failures=failures, total_weight=total, loss=loss, mean_delta=mean,
                           deltas=stacked, weights=weights, client_ids=[o.client_id for o in good])

    def rank(self, stage: str, shared: Params, users: np.ndarray) -> np.ndarray:
        """Each user's device ranks its own held-out item; a device that fails counts as a miss (worst rank)."""
        arrays = {k: v.detach().cpu().numpy() for k, v in shared.items()}
        outcomes = {o.client_id: o for o in self.executor.evaluate([int(u) for u in users], arrays, stage)}
        worst = self.num_items
        return np.array([
            int(outcomes[u].metrics["rank"]) if u in outcomes and outcomes[u].error is None else worst
            for u in (int(u) for u in users)
        ], dtype=np.int64)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def run_driver(flat: dict, executor) -> FederatedResult:
    """Driver of the ServerApp (``driver`` in the run config): ffmrec's own loop over the Flower engine."""
    from ffmrec.federated.strategies import build_strategy

    config = _run_config(flat)
    task = _task(config)
    strategy = build_strategy(config.federated, embedding_params=("item_emb.weight",))
    engine = FlowerEngine(executor, task.model.num_items)
    return run_server(task.num_clients, task.initial_shared(), engine, strategy, config.federated, config.eval.ks,
                      Path(flat[RUN_DIR_KEY]), config.seed, progress=False)


def run_flower_simulation(config, out_dir: Path, num_users: int) -> FederatedResult:
    """A whole federated run in Flower's simulation engine (in-process, Ray backend)."""
    from ffmrec.federated.engines.flower.simulation import run_flower_simulation as simulate

    nodes = max(1, min(config.federated.num_supernodes, num_users))
    return simulate(flower_run_config(config, out_dir), nodes)


def run_flower_deployment(config, out_dir: Path, num_users: int) -> FederatedResult:
    """A whole federated run on Flower's deployment engine, on this machine: a SuperLink and SuperNodes as separate
    processes on 127.0.0.1, TLS certificates made for the run, SuperNode authentication on (each node's key
    registered). To spread SuperNodes over machines instead, follow the steps in
    :mod:`ffmrec.federated.engines.flower.deploy`."""
    import dataclasses

    from ffmrec.errors import FFMRecError
    from ffmrec.federated.engines.flower.deploy import DeploymentCluster, DeploymentError, read_result

    result_dir = Path(out_dir).resolve() / "flower-result"
    flat = {**flower_run_config(config, out_dir), "output-dir": str(result_dir)}
    nodes = max(1, min(config.federated.num_supernodes, num_users))
    try:
        with DeploymentCluster(num_supernodes=nodes, workdir=Path(out_dir).resolve() / "flower-cluster") as cluster:
            cluster.run_app(flat, timeout=config.federated.deploy_timeout)
    except DeploymentError as e:
        raise FFMRecError(
            f"the Flower deployment run in {out_dir} failed ({str(e).splitlines()[0]}); see "
            f"{Path(out_dir) / 'flower-cluster'} for the SuperLink and SuperNode logs, or run with federated.engine=fast."
        ) from None
    saved = read_result(result_dir)
    return FederatedResult(**{f.name: saved[f.name] for f in dataclasses.fields(FederatedResult)})
