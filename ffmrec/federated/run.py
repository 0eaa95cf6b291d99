"""Wire a federated run together: task, strategy, client-side transform, observers, engine, driver loop.

The task is built by the caller (the method resolver at the edge); Flower's engines rebuild it in their own processes
from the run config's ``task-factory``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from ffmrec.federated.observers import ByteCounter, EgressAudit, Observer, Recorder
from ffmrec.federated.server import FederatedResult, run_server
from ffmrec.federated.strategies import build_strategy
from ffmrec.federated.transforms import build_transform
from ffmrec.tasks.base import ClientTask
from ffmrec.utils.io import History


def build_observers(cfg, task: ClientTask, out_dir: Path, personal_rows=None) -> list[Observer]:
    """The observers a :class:`~ffmrec.federated.config.FederatedConfig` asks for (the byte counter always)."""
    observers: list[Observer] = [ByteCounter()]
    if cfg.audit:
        observers.append(EgressAudit(task, personal_rows))
    if cfg.record_rounds:
        observers.append(Recorder(out_dir, cfg.record_rounds))
    return observers


@contextmanager
def history_progress(path: Path, rounds: int, enabled: bool = True, every: float = 0.5):
    """A rounds progress bar for engines whose driver loop runs elsewhere (Flower's ServerApp, in a thread or in the
    SuperLink's process): it follows the lines the driver appends to ``history.jsonl``."""
    if not enabled:
        yield
        return
    bar = tqdm(total=rounds, desc="rounds", dynamic_ncols=True)
    stop = threading.Event()

    def poll() -> None:
        lines = History(path).read() if path.exists() else []
        scores = [(line[k], line["round"]) for line in lines for k in ("valid/NDCG@10", "valid/F1", "valid/Hits@10")
                  if k in line]
        bar.n = len(lines)
        if lines:
            best = max(scores, key=lambda s: (s[0], -s[1])) if scores else None
            shown = f"{best[0]:.4f} (round {best[1]})" if best else "not validated yet"
            bar.set_postfix({"loss": f"{lines[-1].get('loss', float('nan')):.3f}", "best": shown}, refresh=False)
        bar.refresh()

    def follow() -> None:
        while not stop.wait(every):
            try:
                poll()
            except (OSError, ValueError):  # a line being written: read it next time
                pass

    thread = threading.Thread(target=follow, name="ffmrec-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            poll()
        except (OSError, ValueError):
            pass
        bar.close()


def run_federated(config, task: ClientTask, out_dir: Path, progress: bool = True) -> FederatedResult:
    """Run the driver loop on the configured engine; Flower's engines run the same loop inside their ServerApp."""
    fed = config.federated
    if fed.engine == "flower-sim":
        from ffmrec.federated.engines.flower.engine import run_flower_simulation

        with history_progress(Path(out_dir) / "history.jsonl", fed.rounds, progress):
            return run_flower_simulation(config, out_dir, task.num_clients)
    if fed.engine == "flower-deploy":
        from ffmrec.federated.engines.flower.engine import run_flower_deployment

        with history_progress(Path(out_dir) / "history.jsonl", fed.rounds, progress):
            return run_flower_deployment(config, out_dir, task.num_clients)
    from ffmrec.federated.engines.fast import FastSimulator

    strategy = build_strategy(fed, embedding_params=task.embedding_params)
    engine = FastSimulator(task, chunk_size=fed.chunk_size, transform=build_transform(fed))
    observers = build_observers(fed, task, out_dir, lambda c: engine.cohort.store.rows([c]))
    return run_server(task, engine, strategy, fed, out_dir, config.seed, observers, progress)
