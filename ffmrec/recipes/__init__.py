"""Recipes: YAML files of :class:`~ffmrec.pipeline.RunConfig` fields shipped with the package.

A recipe may carry ``dataset_overrides: {<dataset>: {<section>: {...}}}``, merged in when that dataset is chosen
(e.g. a longer ``model.max_len`` for MovieLens). The resolved config, overrides applied, is what a run writes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

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


def load_recipe(name: str, dataset: str | None = None, overrides: list[str] = ()):
    """The resolved RunConfig of recipe ``name`` (a shipped name or a YAML path) for ``dataset`` with ``overrides``."""
    from ffmrec.methods import config_class

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
    return from_dict(run_config, data)
