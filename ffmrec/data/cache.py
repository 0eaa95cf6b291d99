"""On-disk cache of processed datasets, so a second load takes milliseconds instead of a parse.

Key: sha256 of (the source's name, each input file's resolved path + size + modification time in ns, the processing
options, :data:`CACHE_FORMAT`). Size + mtime is what ``make`` and ``rsync`` trust: fast (no file reads) and correct
unless a file is rewritten with the same size within the same nanosecond. Bump :data:`CACHE_FORMAT` whenever a reader
or the preprocessing changes what it produces.

Format: one ``.npz`` per dataset (``np.savez``, loaded with ``allow_pickle=False``): the arrays as they are, ids as
unicode arrays, item text as UTF-8 bytes + offsets, user attributes column by column, and a JSON ``meta`` string.
Files are written to a temporary name and renamed, so a reader never sees half a file. A cache file that cannot be
read is deleted with a warning and the dataset is rebuilt. Folder: ``$FFMREC_CACHE_DIR``, else ``~/.cache/ffmrec``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ffmrec.data.dataset import Dataset
from ffmrec.data.preprocess import DataOptions

CACHE_FORMAT = 1


def cache_dir() -> Path:
    """``$FFMREC_CACHE_DIR``, else ``~/.cache/ffmrec``."""
    return Path(os.environ.get("FFMREC_CACHE_DIR") or Path.home() / ".cache" / "ffmrec")


def cache_key(source_name: str, files: Sequence[Path], options: DataOptions) -> str:
    """Hex sha256 of everything the processed dataset depends on (see the module docstring)."""
    stamps = []
    for path in files:
        stat = Path(path).stat()
        stamps.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    payload = {"format": CACHE_FORMAT, "source": source_name, "files": stamps, "options": options.processing_key()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(source_name: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source_name) or "dataset"
    return cache_dir() / f"{safe}-{key[:24]}.npz"


def load_cached(path: Path, key: str) -> Dataset | None:
    """The dataset cached at ``path`` under ``key``, or None when absent; an unreadable file is deleted (with a warning)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"]))
            if meta["format"] != CACHE_FORMAT or meta["key"] != key:
                raise ValueError("the file belongs to another cache key or format")
            return _dataset(meta, {name: arrays[name] for name in arrays.files})
    except Exception as exc:  # any failure means "not a usable cache file": rebuild, never fail the load
        warnings.warn(f"ignoring unreadable cache file {path} ({type(exc).__name__}: {exc}); rebuilding it", stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def save_cached(path: Path, key: str, dataset: Dataset) -> None:
    """Write ``dataset`` to ``path`` atomically; a failure to write only warns (the cache is an optimisation)."""
    arrays = _arrays(dataset)
    if arrays is None:
        return  # user attributes of a type the format does not hold: not cached, loaded fresh each time
    meta = arrays.pop("meta")
    meta["key"] = key
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache {path} ({exc}); set FFMREC_CACHE_DIR to a writable folder", stacklevel=2)
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _arrays(dataset: Dataset) -> dict | None:
    arrays: dict = {
        "items": dataset.items,
        "offsets": dataset.offsets,
        "user_ids": np.asarray(dataset.user_ids, dtype=str),
        "item_ids": np.asarray(dataset.item_ids, dtype=str),
    }
    meta: dict = {"format": CACHE_FORMAT, "name": dataset.name, "attributes": None}
    if dataset.timestamps is not None:
        arrays["timestamps"] = dataset.timestamps
    if dataset.ratings is not None:
        arrays["ratings"] = dataset.ratings
    if dataset.item_text is not None:
        arrays["item_text"], arrays["item_text_offsets"] = _pack(list(dataset.item_text))
    if dataset.user_attributes is not None:
        meta["attributes"] = []
        for i, (column, values) in enumerate(dataset.user_attributes.items()):
            kind = values.dtype.kind if isinstance(values.dtype, np.dtype) else None
            if kind in ("i", "u", "f", "b"):
                arrays[f"attr{i}"] = values.to_numpy()
            else:
                present = values.notna().to_numpy()
                strings = values[present].tolist()
                if not all(isinstance(s, str) for s in strings) or (kind is None and str(values.dtype) != "str"):
                    return None
                arrays[f"attr{i}"], arrays[f"attr{i}_offsets"] = _pack(strings)
                arrays[f"attr{i}_present"] = present
            meta["attributes"].append({"name": str(column), "dtype": str(values.dtype), "text": kind not in ("i", "u", "f", "b")})
    arrays["meta"] = meta
    return arrays


def _dataset(meta: dict, arrays: dict[str, np.ndarray]) -> Dataset:
    attributes = None
    if meta["attributes"] is not None:
        columns = {}
        for i, spec in enumerate(meta["attributes"]):
            if spec["text"]:
                present = arrays[f"attr{i}_present"]
                values = np.full(len(present), None, dtype=object)
                values[present] = _unpack(arrays[f"attr{i}"], arrays[f"attr{i}_offsets"])
                columns[spec["name"]] = pd.Series(values, dtype=spec["dtype"])
            else:
                columns[spec["name"]] = pd.Series(arrays[f"attr{i}"])
        attributes = pd.DataFrame(columns, index=pd.RangeIndex(len(arrays["user_ids"])))
    item_text = None
    if "item_text" in arrays:
        item_text = np.empty(len(arrays["item_text_offsets"]) - 1, dtype=object)
        item_text[:] = _unpack(arrays["item_text"], arrays["item_text_offsets"])
    return Dataset(
        name=meta["name"],
        items=arrays["items"],
        offsets=arrays["offsets"],
        user_ids=arrays["user_ids"],
        item_ids=arrays["item_ids"],
        timestamps=arrays.get("timestamps"),
        ratings=arrays.get("ratings"),
        item_text=item_text,
        user_attributes=attributes,
    )


def _pack(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 byte array plus character offsets (no pickling, no fixed-width padding)."""
    blob = "".join(strings)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in strings], dtype=np.int64)]).astype(np.int64)
    return np.frombuffer(blob.encode("utf-8"), dtype=np.uint8), offsets


def _unpack(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    blob = data.tobytes().decode("utf-8")
    if len(blob) != offsets[-1]:
        raise ValueError("packed strings do not match their offsets")
    bounds = offsets.tolist()
    return [blob[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
