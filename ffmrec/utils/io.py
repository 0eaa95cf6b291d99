"""Files a run writes: atomic writes (no half-written output), checkpoints, per-user test results, and the
per-epoch/round history.

Checkpoints hold tensors and plain Python values only (dicts, lists, numbers, strings) and are read with
``torch.load(weights_only=True)``: a run folder from elsewhere can never execute code when ffmrec opens it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ffmrec.errors import FFMRecError
from ffmrec.utils.tracking import log_line


def file_mode() -> int:
    """The mode of an ordinary new file (``0o666`` less the umask: 0644 under the usual umask 022). Every file a run
    writes gets it; ``tempfile.mkstemp`` alone would leave the atomically written ones at 0600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and numpy arrays as tensors: what ``torch.load(weights_only=True)``
    reads back."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_checkpoint(path: Path, obj: dict) -> None:
    """``torch.save`` to a temp file, then rename: a kill never leaves a torn checkpoint. Numpy values are stored as
    plain numbers and tensors (:func:`plain`), so that the file loads with ``weights_only=True``."""
    path = Path(path)
    obj = plain(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, file_mode())
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, or None when there is none. Only tensors and plain values are read (torch's
    ``weights_only`` unpickler): a file holding other Python objects, which could run code when unpickled, is refused."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FFMRecError(
            f"{path}: refused to load this checkpoint: it holds Python objects other than tensors and plain values, "
            f"which could run code when read ({first[:200]}). ffmrec never writes such files: only open run folders "
            "written by ffmrec."
        ) from None
    except Exception as e:  # a checkpoint we wrote atomically should never be torn; say so clearly if it is
        raise FFMRecError(
            f"{path}: cannot read this checkpoint ({type(e).__name__}): delete it to restart from the previous "
            "one, or use a new --out folder."
        ) from None


def save_columns(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Per-user results (e.g. ``{"user": ..., "rank": ...}``, one row per user) as an ``.npz`` of plain arrays."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in columns.items()})
    atomic_write_bytes(Path(path), buf.getvalue())


def load_columns(path: Path) -> dict[str, np.ndarray]:
    """The arrays :func:`save_columns` wrote (object arrays refused: reading never unpickles)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class History:
    """``history.jsonl``: one JSON object per epoch or round, truncated to the checkpoint's count on resume."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def append(self, line: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        log_line(self.path.parent, line)  # TensorBoard, when the run folder asks for it

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` lines (the ones the checkpoint covers)."""
        lines = self.read()[:n]
        atomic_write_text(self.path, "".join(json.dumps(line) + "\n" for line in lines))
