"""TensorBoard tracking: every line of a run's ``history.jsonl`` also becomes TensorBoard scalars.

A run folder that has a ``tensorboard/`` sub-folder is tracked: :meth:`ffmrec.utils.io.History.append` hands each
line to :func:`log_line`, which writes its numbers (loss, validation metrics, seconds, and for federated runs
``bytes_up``/``bytes_down`` per round and the ``failed`` client count) at the line's epoch or round. ``ffmrec run
--tensorboard`` (or ``ffmrec.run(..., tensorboard=True)``) creates the folder with :func:`enable_tensorboard`; the
marker lives in the run folder itself, so Flower's ServerApp process, which writes the history of a Flower run,
tracks it too, and a resumed run keeps being tracked. View with ``tensorboard --logdir RUN_DIR/tensorboard``.
"""

from __future__ import annotations

import math
from pathlib import Path

TB_DIR = "tensorboard"
STEP_KEYS = ("epoch", "round")

_writers: dict[Path, object] = {}


def enable_tensorboard(run_dir: str | Path) -> Path:
    """Track the run in ``run_dir`` from now on; returns the event-file folder."""
    path = Path(run_dir) / TB_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def scalars(line: dict) -> tuple[int | None, dict[str, float]]:
    """``(step, {tag: value})`` of a history line: its finite numbers, step keys and booleans left out."""
    step = next((int(line[k]) for k in STEP_KEYS if k in line), None)
    values = {}
    for key, value in line.items():
        if key in STEP_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            values[key] = float(value)
    return step, values


def log_line(run_dir: Path, line: dict) -> None:
    """Write ``line``'s scalars to the run's TensorBoard events when the run is tracked; nothing otherwise."""
    tb_dir = Path(run_dir) / TB_DIR
    if not tb_dir.is_dir():
        return
    step, values = scalars(line)
    if step is None or not values:
        return
    key = tb_dir.resolve()
    writer = _writers.get(key)
    if writer is None:
        from torch.utils.tensorboard import SummaryWriter  # imported only when a run is tracked

        writer = _writers[key] = SummaryWriter(log_dir=str(tb_dir))
    for tag, value in values.items():
        writer.add_scalar(tag, value, step)
    writer.flush()


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every tag's ``(step, value)`` points in the run's event files (what TensorBoard shows)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / TB_DIR))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def close_writers() -> None:
    """Flush and close every open event file (tests; the end of a process closes them too)."""
    for writer in _writers.values():
        writer.close()
    _writers.clear()
