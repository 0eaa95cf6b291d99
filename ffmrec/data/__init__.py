"""Datasets by name: ``load_dataset("beauty")`` -> :class:`Dataset`.

The data directory holds one folder per dataset (``ml-1m/``, ``ml-100k/``, ``amazon/beauty/``, ...; see each reader's
module docstring). It is ``data_dir`` when given, else ``$FFMREC_DATA_DIR``, else ``./data``. A missing file of a public
dataset is downloaded from its official source when the network allows (``FFMREC_OFFLINE=1`` forbids it). Processed
datasets are cached (see :mod:`ffmrec.data.cache`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ffmrec.data.amazon import AmazonS3Rec
from ffmrec.data.cache import cache_key, cache_path, load_cached, save_cached
from ffmrec.data.dataset import Dataset
from ffmrec.data.generic import SUFFIXES, GenericSource
from ffmrec.data.movielens import MovieLens1M, MovieLens100K
from ffmrec.data.preprocess import DataOptions, build_dataset
from ffmrec.data.redial import redial_status
from ffmrec.data.source import Source
from ffmrec.errors import ConfigError

DATASETS: dict[str, Callable[[Path], Source]] = {
    "ml-1m": MovieLens1M,
    "ml-100k": MovieLens100K,
    "beauty": partial(AmazonS3Rec, "beauty"),
    "sports": partial(AmazonS3Rec, "sports"),
    "toys": partial(AmazonS3Rec, "toys"),
    "generic": GenericSource.from_folder,
}


def data_dir_or_default(data_dir: str | Path | None = None) -> Path:
    """``data_dir``, else ``$FFMREC_DATA_DIR``, else ``./data``."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get("FFMREC_DATA_DIR") or "data")


def resolve_source(name: str | Path | Source, data_dir: str | Path | None = None) -> Source:
    """The Source for a registered name, a path to a ``.csv``/``.parquet`` interactions file or to a folder holding
    ``interactions.csv|parquet`` (see :mod:`ffmrec.data.generic`), or a Source itself."""
    if isinstance(name, Source):
        return name
    key = str(name)
    if key in DATASETS:
        return DATASETS[key](data_dir_or_default(data_dir))
    if key == "redial":
        raise ConfigError(
            "dataset='redial' is a corpus of recommendation dialogues (conversations), not user-item interaction "
            "sequences, so 'ffmrec run' cannot train on it: read it with ffmrec.data.redial.read_redial, or choose one "
            f"of {', '.join(sorted(DATASETS))} or your own interactions file."
        )
    if Path(key).is_dir():
        if any((Path(key) / f"interactions{s}").is_file() for s in SUFFIXES):
            return GenericSource.from_folder(Path(key))
        raise ConfigError(
            f"dataset={key!r} is a folder without an interactions.csv|tsv|parquet file: give the interactions file "
            "itself (e.g. --dataset folder/ratings.csv), or put it in the folder as interactions.csv."
        )
    if Path(key).suffix.lower() in SUFFIXES:
        return GenericSource.from_path(Path(key))
    raise ConfigError(
        f"dataset={key!r} is unknown: use one of {', '.join(sorted(DATASETS))}, a path to a .csv/.parquet interactions file, "
        "or a folder holding interactions.csv|parquet."
    )


def load_dataset(name: str | Path | Source, data_dir: str | Path | None = None, options: DataOptions | None = None) -> Dataset:
    """Read, filter and index a dataset (from the cache when its files and options are unchanged)."""
    options = options if options is not None else DataOptions()
    source = resolve_source(name, data_dir)
    if isinstance(source, GenericSource):
        source = dataclasses.replace(source, options=options)
    elif options.changed_source_fields():
        field_name = options.changed_source_fields()[0]
        raise ConfigError(
            f"data.{field_name}={getattr(options, field_name)!r} describes your own CSV/Parquet files, but dataset "
            f"{source.name!r} is read by its own reader: remove data.{field_name}."
        )
    files = source.input_files()  # may download; DataError if a file is missing
    if options.cache:
        key = cache_key(source.name, files, options)
        path = cache_path(source.name, key)
        cached = load_cached(path, key)
        if cached is not None:
            return cached
    dataset = build_dataset(source.read(), options)
    if options.cache:
        save_cached(path, key, dataset)  # only after a successful parse
    return dataset


def dataset_status(data_dir: str | Path | None = None) -> list[dict]:
    """For each known dataset: name, description, path, present (loadable), missing files, partial-data notes.

    Never downloads and never parses; see :func:`dataset_statistics` for counts.
    """
    root = data_dir_or_default(data_dir)
    rows = [{**factory(root).status().as_dict(), "name": name} for name, factory in DATASETS.items()]
    redial = redial_status(root).as_dict()
    redial["notes"].insert(0, "dialogues, not interactions: not for 'ffmrec run'")
    rows.append(redial)
    return rows


def dataset_statistics(name: str | Path | Source, data_dir: str | Path | None = None, options: DataOptions | None = None) -> dict:
    """``load_dataset(...).stats()``: users, items, interactions, density, sequence lengths, side information."""
    return load_dataset(name, data_dir, options).stats()


__all__ = [
    "DATASETS",
    "DataOptions",
    "Dataset",
    "GenericSource",
    "dataset_statistics",
    "dataset_status",
    "load_dataset",
    "resolve_source",
]
