"""Shared by the benchmark scripts: machine description, peak RSS, and the results file format.

Every script writes ``benchmarks/results/<name>.json``::

    {"benchmark": str, "command": str, "machine": str, "date": str,
     "rows": [{"dataset": str, "method": str, "setting": "centralized" | "federated" | "local",
               "metrics": {"HR@10": float, ...}, ...}]}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    import torch

    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem_gb:.0f} GiB RAM, no GPU; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and its finished children), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def command_line() -> str:
    """This process's command, the script as seen from the repository root wherever it was started from."""
    return "python " + " ".join(shlex.quote(a) for a in [
        os.path.relpath(os.path.abspath(sys.argv[0]), RESULTS.parent.parent), *sys.argv[1:]])


def write_results(name: str, rows: list[dict]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "command": command_line(),
        "machine": machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
        "rows": rows,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return out


def overrides_for(dataset: str, items: list[str]) -> list[str]:
    """``key=value`` items for every dataset, plus ``DATASET:key=value`` items for ``dataset`` only."""
    out = []
    for item in items:
        key = item.split("=", 1)[0]
        if ":" in key:
            prefix, rest = item.split(":", 1)
            if prefix == dataset:
                out.append(rest)
        else:
            out.append(item)
    return out


def budget_metrics(config, summary: dict) -> dict:
    """The run's budget and speed for a results row: rounds (federated) or epochs (centralized), the best one, and
    seconds per round or epoch."""
    if config.setting == "federated":
        return {"rounds": summary["rounds"], "best_round": summary["best_round"],
                "clients_per_round": config.federated.clients_per_round,
                "seconds_per_round": round(summary["seconds_per_round"], 3)}
    return {"epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
            "seconds_per_epoch": round(summary["seconds_per_epoch"], 2)}
