"""One entry function, :func:`pipeline`, from a resolved :class:`RunConfig` to a finished run folder.

A run folder holds ``config.yaml`` (fully resolved), ``history.jsonl`` (one line per epoch or round), checkpoints,
``metrics.json`` (final test metrics, flat: ``{"HR@10": ..., "NDCG@10": ...}``) and ``report.md`` with a plot of the
validation curve. Starting the same config again on the same folder resumes from the last checkpoint.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ffmrec.config import dump_yaml, to_dict
from ffmrec.data import load_dataset
from ffmrec.errors import ConfigError
from ffmrec.eval.cold import make_split
from ffmrec.federated.sampling import resolve_clients_per_round
from ffmrec.methods import RunConfig, build_federated_task, from_dict_run_config, resolve_method
from ffmrec.report import write_report
from ffmrec.train.trainer import train
from ffmrec.utils.io import History, atomic_write_text, write_json

__all__ = ["RunConfig", "RunResult", "pipeline"]


class NoValidationWarning(UserWarning):
    """The run's test metrics come from its last parameters: no validation ever chose a best epoch/round."""


@dataclass
class RunResult:
    """A finished run: its folder, final test metrics and summary (for several seeds: their mean, the std in the
    summary, each seed's run in ``runs``). The history, the trained model and recommendations are read from the
    folder when first asked for."""

    out_dir: Path
    metrics: dict[str, float]
    summary: dict
    runs: list[RunResult] = field(default_factory=list)

    @property
    def history(self) -> list[dict]:
        """One dict per epoch or round (``history.jsonl``)."""
        return History(self.out_dir / "history.jsonl").read()

    @functools.cached_property
    def trained(self):
        """The run's best model with its users' personal state (:class:`ffmrec.recommend.TrainedModel`)."""
        from ffmrec.recommend import load_trained

        return load_trained(self.out_dir)

    @property
    def model(self):
        """The trained model (best epoch or round), in eval mode."""
        return self.trained.model

    def recommend(self, user, k: int = 10, explain: bool = False):
        """Top ``k`` items for the dataset's original user id ``user`` (:class:`ffmrec.recommend.Recommendations`)."""
        return self.trained.recommend(user, k, explain)


LENGTH_KEYS = (("train", "epochs"), ("federated", "rounds"))


def _without_length(data: dict) -> dict:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for section, key in LENGTH_KEYS:
        data.get(section, {}).pop(key, None)
    return data


def _check_out_dir(out_dir: Path, config) -> None:
    """The run folder is new, empty, or a run of the same config: an existing run may only be resumed with the same
    config; its length (``train.epochs``, ``federated.rounds``) may change, to extend a run or to end it at the
    epoch/round it has reached. A folder holding only the ``config.yaml`` of a run that never started (it failed
    before its first epoch/round) takes any config. Every refusal happens before anything is written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is an existing file, not a folder: give a new folder, or a run folder to resume.")
    _check_writable(out_dir)
    if not out_dir.is_dir():
        return
    existing = out_dir / "config.yaml"
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in ("config.yaml", "tensorboard"))  # --tensorboard
    if not existing.exists():
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise ConfigError(f"--out {out_dir} holds files that are not an ffmrec run ({shown}): choose a new or "
                              "empty folder, so that the run writes nothing among them.")
        return
    if not others:
        return
    old = yaml.safe_load(existing.read_text(encoding="utf-8")) or {}
    try:  # keys added to ffmrec since the run started take their defaults, as the run did
        old = to_dict(from_dict_run_config(old))
    except ConfigError:
        pass  # a key since removed or renamed: compared as written, so it shows as a difference
    changed = _changed_keys(_without_length(old), _without_length(to_dict(config)))
    if changed:
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        raise ConfigError(
            f"{out_dir} holds a run with a different config ({shown}): resume it with the same settings (only "
            "train.epochs and federated.rounds may change), or choose a new --out folder."
        )


def _changed_keys(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in sorted(set(old) | set(new), key=str)
                for k in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _check_writable(out_dir: Path) -> None:
    """The run folder can be created (or written into): its nearest existing ancestor is a writable folder."""
    place = out_dir
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise ConfigError(f"--out {out_dir}: {place} is a file, not a folder: give an --out path under a folder.")
    if not os.access(place, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_dir}: {place} is not writable by you: give an --out folder in a place you can "
                          "write to (e.g. under your home or the current folder).")


def _make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: cannot create the folder ({e.strerror or e}): give an --out folder in "
                          "a place you can write to.") from None


def pipeline(config: RunConfig, out_dir: str | Path, progress: bool = True) -> RunResult:
    out_dir = Path(out_dir)
    notes = getattr(config, "defaults_from_data", None) or []  # settings chosen from the data's statistics
    config_text = "".join(f"# {note}\n" for note in notes) + dump_yaml(to_dict(config))
    _check_out_dir(out_dir, config)
    if config.threads:
        torch.set_num_threads(config.threads)
    method = resolve_method(config.method)
    if method.load_data is not None:  # e.g. fedtrek: ReDial conversations, read by the method itself
        dataset, split = method.load_data(config)
    else:
        dataset = load_dataset(config.dataset, options=config.data)  # fails before anything is written
        split = make_split(dataset.sequences(), dataset.num_items, config.eval, config.seed)
        if method.needs_item_text or getattr(config.model, "item_repr", "id") != "id":
            from ffmrec.fm.text import require_item_text

            require_item_text(dataset, f"method {config.method!r}")  # fails before anything is written
    if config.setting == "federated":  # impossible client counts fail before anything is written
        resolve_clients_per_round(split.num_users, config.federated.clients_per_round, config.federated.fraction)
    _make_out_dir(out_dir)
    atomic_write_text(out_dir / "config.yaml", config_text)
    t0 = time.perf_counter()
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
    elif config.setting == "local":  # e.g. local-sasrec: a model per user, cohort by cohort (ffmrec.train.local_only)
        from ffmrec.train.local_only import run_local_only

        res = run_local_only(method.build_task(config, dataset, split), config.task, out_dir, config.eval.ks, progress)
        metrics = res.test
        summary = {"best": res.best, "epochs": res.best["epochs"], "train_eval_seconds": res.seconds,
                   "best_valid": res.best_valid, "candidates": res.candidates}
    else:
        from ffmrec.federated.run import run_federated

        res = run_federated(config, build_federated_task(config, dataset, split), out_dir, progress)
        metrics = res.test
        summary = {"best_round": res.best_round, "rounds": res.rounds_run, "seconds_per_round": res.seconds_per_round,
                   "failed_clients": res.failures, "best_valid": res.best_valid}
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["dataset"] = {"name": dataset.name, **dataset.stats()}
    if not summary["best_valid"]:  # e.g. a killed run ended at the round it reached, before its first validation
        unit, reached = ("epoch", summary["epochs"]) if config.setting == "centralized" else ("round", summary["rounds"])
        summary["note"] = (f"no validation ran: the test metrics are those of the last {unit}'s parameters ({unit} "
                           f"{reached}), not of a best {unit} chosen on validation data.")
        warnings.warn(summary["note"], NoValidationWarning, stacklevel=2)
    if getattr(config, "defaults_from_data", None):
        summary["defaults_from_data"] = config.defaults_from_data
    from ffmrec.eval.fairness import rank_fairness

    metrics.update(rank_fairness(out_dir / "test_ranks.npz", dataset))  # NDCG@20 gaps: gender, active vs inactive
    write_json(out_dir / "summary.json", summary)
    write_json(out_dir / "metrics.json", metrics)  # last: a run folder with metrics.json is finished
    write_report(out_dir, config, metrics, summary)
    return RunResult(out_dir, metrics, summary)
