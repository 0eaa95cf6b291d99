"""Wire a federated run together: task, strategy, client-side transform, observers, engine, driver loop.

The task is built by the caller (the method resolver at the edge); Flower's engines rebuild it in their own processes
from the run config's ``task-factory``.
"""

from __future__ import annotations

from pathlib import Path

from ffmrec.federated.observers import ByteCounter, EgressAudit, Observer, Recorder
from ffmrec.federated.server import FederatedResult, run_server
from ffmrec.federated.strategies import build_strategy
from ffmrec.federated.transforms import build_transform
from ffmrec.tasks.base import ClientTask


def build_observers(cfg, task: ClientTask, out_dir: Path, personal_rows=None) -> list[Observer]:
    """The observers a :class:`~ffmrec.federated.config.FederatedConfig` asks for (the byte counter always)."""
    observers: list[Observer] = [ByteCounter()]
    if cfg.audit:
        observers.append(EgressAudit(task, personal_rows))
    if cfg.record_rounds:
        observers.append(Recorder(out_dir, cfg.record_rounds))
    return observers


def run_federated(config, task: ClientTask, out_dir: Path, progress: bool = True) -> FederatedResult:
    """Run the driver loop on the configured engine; Flower's engines run the same loop inside their ServerApp."""
    fed = config.federated
    if fed.engine == "flower-sim":
        from ffmrec.federated.engines.flower.engine import run_flower_simulation

        return run_flower_simulation(config, out_dir, task.num_clients)
    if fed.engine == "flower-deploy":
        from ffmrec.federated.engines.flower.engine import run_flower_deployment

        return run_flower_deployment(config, out_dir, task.num_clients)
    from ffmrec.federated.engines.fast import FastSimulator

    strategy = build_strategy(fed, embedding_params=task.embedding_params)
    engine = FastSimulator(task, chunk_size=fed.chunk_size, transform=build_transform(fed))
    observers = build_observers(fed, task, out_dir, lambda c: engine.cohort.store.rows([c]))
    return run_server(task, engine, strategy, fed, out_dir, config.seed, observers, progress)
