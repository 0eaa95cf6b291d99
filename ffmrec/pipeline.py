"""One entry function, :func:`pipeline`, from a resolved :class:`RunConfig` to a finished run folder.

A run folder holds ``config.yaml`` (fully resolved), ``history.jsonl`` (one line per epoch or round), checkpoints,
``metrics.json`` (final test metrics, flat: ``{"HR@10": ..., "NDCG@10": ...}``) and ``report.md`` with a plot of the
validation curve. Starting the same config again on the same folder resumes from the last checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ffmrec.config import dump_yaml, to_dict
from ffmrec.data import load_dataset
from ffmrec.errors import ConfigError
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.federated.sampling import resolve_clients_per_round
from ffmrec.methods import RunConfig, resolve_method
from ffmrec.report import write_report
from ffmrec.train.trainer import train
from ffmrec.utils.io import atomic_write_text, write_json

__all__ = ["RunConfig", "RunResult", "pipeline"]


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, float]
    summary: dict


LENGTH_KEYS = (("train", "epochs"), ("federated", "rounds"))


def _without_length(data: dict) -> dict:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for section, key in LENGTH_KEYS:
        data.get(section, {}).pop(key, None)
    return data


def _check_out_dir(out_dir: Path, config) -> None:
    """An existing run folder may only be resumed with the same config; its length (``train.epochs``,
    ``federated.rounds``) may change, to extend a run or to end it at the epoch/round it has reached."""
    existing = out_dir / "config.yaml"
    if existing.exists():
        old = yaml.safe_load(existing.read_text(encoding="utf-8")) or {}
        if _without_length(old) != _without_length(to_dict(config)):
            raise ConfigError(
                f"{out_dir} holds a run with a different config: resume it with the same settings (only "
                "train.epochs and federated.rounds may change), or choose a new --out folder."
            )


def pipeline(config: RunConfig, out_dir: str | Path, progress: bool = True) -> RunResult:
    out_dir = Path(out_dir)
    config_text = dump_yaml(to_dict(config))
    _check_out_dir(out_dir, config)
    if config.threads:
        torch.set_num_threads(config.threads)
    dataset = load_dataset(config.dataset, options=config.data)  # fails before anything is written
    split = LeaveOneOut(dataset.sequences())
    if config.setting == "federated":  # impossible client counts fail before anything is written
        resolve_clients_per_round(split.num_users, config.federated.clients_per_round, config.federated.fraction)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", config_text)
    t0 = time.perf_counter()
    method = resolve_method(config.method)
    if config.setting == "centralized":
        task = method.build_task(config, dataset, split)
        torch.manual_seed(config.seed)
        model = task.build_model(1)
        hooks = {}
        if method.centralized_objective is not None:  # e.g. cl4srec: the task's objective over augmented batches
            objective, make_batches = method.centralized_objective(config, model, split)
            hooks = {"objective": objective, "make_batches": make_batches}
        res = train(model, split, config.train, config.eval, out_dir, config.seed, progress, **hooks)
        metrics = res.test
        summary = {"best_epoch": res.best_epoch, "epochs": res.epochs_run, "seconds_per_epoch": res.seconds_per_epoch,
                   "best_valid": res.best_valid}
    else:
        from ffmrec.federated.run import run_federated

        res = run_federated(config, method.build_task(config, dataset, split), out_dir, progress)
        metrics = res.test
        summary = {"best_round": res.best_round, "rounds": res.rounds_run, "seconds_per_round": res.seconds_per_round,
                   "failed_clients": res.failures, "best_valid": res.best_valid}
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["dataset"] = {"name": dataset.name, **dataset.stats()}
    write_json(out_dir / "metrics.json", metrics)
    write_report(out_dir, config, metrics, summary)
    return RunResult(out_dir, metrics, summary)
