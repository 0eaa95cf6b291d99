"""Recipes: YAML files of :class:`~ffmrec.pipeline.RunConfig` fields shipped with the package.

A recipe may carry ``dataset_overrides: {<dataset>: {<section>: {...}}}``, merged in when that dataset is chosen
(e.g. a longer ``model.max_len`` for MovieLens). A shipped recipe run on your own file (a dataset it has no overrides
for) takes such settings from the data's statistics instead (:func:`defaults_from_data`), unless ``--set`` gives them;
the choice is stated at the top of the run's ``config.yaml`` and in its report. The resolved config, overrides
applied, is what a run writes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from ffmrec.config import from_dict, load_yaml, parse_overrides, set_key
from ffmrec.errors import ConfigError


def recipe_paths() -> dict[str, Path]:
    folder = resources.files("ffmrec.recipes")
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), (dict, type(None))) else v
    return out


def defaults_from_data(lengths: np.ndarray) -> tuple[dict, list[str]]:
    """Settings that the shipped recipes set per dataset, chosen from the users' sequence lengths: ``model.max_len``
    is the smallest of 50, 100 and 200 that covers 90% of the sequences (200 when none does: longer histories are cut
    to their most recent items), and long histories (max_len 200, as MovieLens) get ``model.dropout`` 0.2, like the
    MovieLens overrides. Returns the settings (nested) and one line per setting saying why."""
    p90 = float(np.percentile(lengths, 90)) if len(lengths) else 0.0
    max_len = next((n for n in (50, 100, 200) if n >= p90), 200)
    settings = {"model": {"max_len": max_len}}
    notes = [f"model.max_len={max_len}: chosen from the data (90% of the {len(lengths)} sequences have at most "
             f"{p90:.0f} items)"]
    if max_len >= 200:
        settings["model"]["dropout"] = 0.2
        notes.append("model.dropout=0.2: chosen from the data (long histories, as in MovieLens)")
    return settings, notes


def _data_defaults(data: dict, set_keys: set[str], model_config: type) -> tuple[dict, list[str]]:
    """:func:`defaults_from_data` of the run's dataset, less the keys the user set and the model does not have."""
    import dataclasses

    from ffmrec.data import load_dataset
    from ffmrec.data.preprocess import DataOptions

    model_fields = {f.name for f in dataclasses.fields(model_config)}
    if "max_len" not in model_fields:
        return {}, []
    options = from_dict(DataOptions, data.get("data") or {}, prefix="data.")
    settings, notes = defaults_from_data(load_dataset(str(data["dataset"]), options=options).sequence_lengths())
    model = {k: v for k, v in settings["model"].items() if k in model_fields and f"model.{k}" not in set_keys}
    return {"model": model}, [n for n in notes if n.split("=")[0].split(".")[1] in model]


def describe_keys(config, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, value, help)`` of every setting of a resolved config, sections flattened (``train.lr``)."""
    import dataclasses

    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe_keys(value, f"{prefix}{f.name}.")
        else:
            rows.append((prefix + f.name, _show(value), f.metadata.get("help", "")))
    return rows


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) and value in ("", ",", "\t", ";", "|") else str(value)


def load_recipe(name: str, dataset: str | None = None, overrides: list[str] = ()):
    """The resolved RunConfig of recipe ``name`` (a shipped name or a YAML path) for ``dataset`` with ``overrides``."""
    from ffmrec.data import DATASETS
    from ffmrec.methods import config_class, resolve_method

    paths = recipe_paths()
    if name in paths:
        path = paths[name]
    elif name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.exists():
            raise ConfigError(f"recipe file {path} does not exist: give a shipped recipe ({', '.join(sorted(paths))}) or an existing YAML path.")
    else:
        raise ConfigError(f"unknown recipe {name!r}: choose one of {', '.join(sorted(paths))} (see 'ffmrec recipes'), or give a YAML file.")
    data = load_yaml(path)
    per_dataset = data.pop("dataset_overrides", None) or {}
    if dataset is not None:
        data["dataset"] = dataset
    data = _merge(data, per_dataset.get(data.get("dataset"), {}))
    pairs = parse_overrides(list(overrides))
    for key, value in pairs:  # the method fixes the types of the model and task sections: apply it first
        if key == "method":
            data["method"] = value.strip()
    run_config = config_class(str(data.get("method", "sasrec")))
    for key, value in pairs:
        if key == "dataset":
            data = _merge(data, per_dataset.get(value, {}))
        set_key(data, run_config, key, value)
    notes = []
    if name in paths and per_dataset and str(data.get("dataset")) not in per_dataset and str(data.get("dataset")) not in set(DATASETS) - {"generic"}:
        defaults, notes = _data_defaults(data, {key for key, _ in pairs}, resolve_method(str(data.get("method"))).model_config)
        data = _merge(data, defaults)
    config = from_dict(run_config, data)
    config.defaults_from_data = notes  # stated in the run's config.yaml and report (not a config key)
    return config
