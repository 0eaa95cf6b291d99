"""The Python entry: :func:`run` trains a recipe into a run folder, :func:`load` opens a finished one; both return a
:class:`~ffmrec.pipeline.RunResult` (metrics, history, the trained model, ``recommend(user, k)``). The ``ffmrec``
command line is a thin layer over these two functions.

    import ffmrec
    result = ffmrec.run("fedsasrec", dataset="ml-100k", overrides={"federated.rounds": 20}, out="runs/quick")
    print(result.metrics["NDCG@10"])
    print(result.recommend("1", k=5, explain=True).format())
    same = ffmrec.load("runs/quick")

``seeds=N`` runs the same config with N seeds (``seed``, ``seed + 1``, ...) into ``out/seed-<seed>/`` and writes
``out/seeds.json`` with each seed's metrics, their mean and their sample standard deviation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ffmrec.errors import ConfigError
from ffmrec.pipeline import RunResult
from ffmrec.recommend import SEEDS_FILE, check_run_dir
from ffmrec.utils.io import write_json

__all__ = ["RunResult", "load", "run"]


def _flatten(overrides: dict[str, Any] | list[str], prefix: str = "") -> list[str]:
    """``{"train": {"epochs": 1}, "federated.rounds": 3}`` -> ``["train.epochs=1", "federated.rounds=3"]`` (a list
    of ``key=value`` strings, as ``--set`` gives them, is kept as it is)."""
    if isinstance(overrides, (list, tuple)):
        return list(overrides)
    out = []
    for key, value in (overrides or {}).items():
        key = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, key + ".")
        else:
            out.append(f"{key}={value if isinstance(value, str) else json.dumps(value)}")
    return out


def default_out(config) -> Path:
    return Path("runs") / f"{config.method}-{config.dataset.replace('/', '_')}"


def run(
    recipe: str = "sasrec",
    dataset: str | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    out: str | Path | None = None,
    *,
    seeds: int = 1,
    tensorboard: bool = False,
    progress: bool = False,
) -> RunResult:
    """Train ``recipe`` (a shipped name or a YAML path) on ``dataset`` with ``overrides`` (``{"train.epochs": 5}``
    or nested dicts) into ``out`` (default ``runs/METHOD-DATASET``; an existing run folder is resumed).

    :param seeds: run the config this many times, with seeds ``seed .. seed + seeds - 1``, into ``out/seed-<seed>``;
        the result's metrics are their mean, ``summary["std"]`` their standard deviation, ``runs`` each seed's run.
    :param tensorboard: also write every history line to TensorBoard events in ``<run>/tensorboard``.
    """
    from ffmrec.pipeline import pipeline
    from ffmrec.recipes import load_recipe
    from ffmrec.utils.tracking import enable_tensorboard

    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds={seeds!r} must be an integer >= 1, e.g. 3.")
    sets = _flatten(overrides or {})
    config = load_recipe(recipe, dataset, sets)  # every key checked before anything is written
    out = Path(out) if out is not None else default_out(config)
    if seeds == 1:
        if tensorboard:
            enable_tensorboard(out)
        return pipeline(config, out, progress=progress)
    if (out / "config.yaml").exists():
        raise ConfigError(f"{out} holds a single run: choose a new out folder for seeds={seeds}.")
    runs = []
    for seed in range(config.seed, config.seed + seeds):
        sub = out / f"seed-{seed}"
        if tensorboard:
            enable_tensorboard(sub)
        runs.append(pipeline(load_recipe(recipe, dataset, [*sets, f"seed={seed}"]), sub, progress=progress))
    result = _seeds_result(out, runs)
    write_json(out / SEEDS_FILE, {"recipe": recipe, "seeds": list(range(config.seed, config.seed + seeds)),
                                  "runs": [r.out_dir.name for r in runs], "mean": result.metrics,
                                  "std": result.summary["std"], "per_seed": [r.metrics for r in runs]})
    return result


def _seeds_result(out: Path, runs: list[RunResult]) -> RunResult:
    keys = [k for k in runs[0].metrics if all(k in r.metrics for r in runs)]
    values = {k: np.array([r.metrics[k] for r in runs], dtype=np.float64) for k in keys}
    mean = {k: float(v.mean()) for k, v in values.items()}
    std = {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()}
    return RunResult(out, mean, {"seeds": len(runs), "std": std}, runs=runs)


def load(run_dir: str | Path) -> RunResult:
    """The finished run in ``run_dir`` (or, for a folder of seeds, their mean with each seed's run in ``runs``)."""
    run_dir = Path(run_dir)
    seeds_file = run_dir / SEEDS_FILE
    if seeds_file.exists() and not (run_dir / "config.yaml").exists():
        info = json.loads(seeds_file.read_text(encoding="utf-8"))
        return _seeds_result(run_dir, [load(run_dir / name) for name in info["runs"]])
    run_dir = check_run_dir(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.exists() else {}
    return RunResult(run_dir, metrics, summary)
