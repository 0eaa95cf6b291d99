"""Wire a federated run together: task, strategy, engine, driver loop."""

from __future__ import annotations

from pathlib import Path

from ffmrec.federated.server import FederatedResult, run_server
from ffmrec.federated.strategies import build_strategy
from ffmrec.federated.task import SequentialTask
from ffmrec.models.sasrec import SASRec


def build_task(config, dataset, split) -> SequentialTask:
    return SequentialTask(
        split,
        lambda num_users: SASRec(config.model, dataset.num_items, num_users),
        seed=config.seed,
        mask_history=config.eval.mask_history,
    )


def run_federated(config, dataset, split, out_dir: Path, progress: bool = True) -> FederatedResult:
    """Run the driver loop on the configured engine; Flower's engines run the same loop inside their ServerApp."""
    if config.federated.engine == "flower-sim":
        from ffmrec.federated.engines.flower.engine import run_flower_simulation

        return run_flower_simulation(config, out_dir, dataset.num_users)
    if config.federated.engine == "flower-deploy":
        from ffmrec.federated.engines.flower.engine import run_flower_deployment

        return run_flower_deployment(config, out_dir, dataset.num_users)
    from ffmrec.federated.engines.fast import FastSimulator

    task = build_task(config, dataset, split)
    strategy = build_strategy(config.federated, embedding_params=("item_emb.weight",))
    engine = FastSimulator(task, chunk_size=config.federated.chunk_size)
    return run_server(task.num_clients, task.initial_shared(), engine, strategy, config.federated,
                      config.eval.ks, out_dir, config.seed, progress)
