"""Quality of sequential recommenders on one dataset, one run per method, same protocol and budget.

Each method runs its shipped recipe (plus ``--set``) with ``ffmrec``'s pipeline into ``--out/METHOD-DATASET`` (resumable:
the same command continues an interrupted run), and its row is written to ``benchmarks/results/<--results>.json`` as
soon as it finishes, so that a long benchmark keeps what it measured. Rows: test HR/NDCG@10/20 under the leave-one-out
full-ranking protocol, rounds or epochs run and the best one, seconds per round or epoch, peak RSS.

    python benchmarks/sequential_quality.py --dataset beauty --methods fedsasrec fedcl4srec --out runs/quality \\
        [--set [METHOD:]key=value ...] [--results sequential_quality]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS, budget_metrics, overrides_for, peak_rss_mb, write_results

from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe


def run_method(method: str, dataset: str, root: Path, overrides: list[str]) -> dict:
    config = load_recipe(method, dataset, overrides)
    result = pipeline(config, root / f"{method}-{dataset}")
    extra = budget_metrics(config, result.summary)
    return {"dataset": dataset, "method": method, "setting": config.setting, "seed": config.seed,
            "metrics": {**result.metrics, **extra, "peak_rss_mb": round(peak_rss_mb(), 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--methods", nargs="+", default=["fedsasrec", "fedcl4srec"])
    parser.add_argument("--set", nargs="*", default=[], help="overrides: key=value, or METHOD:key=value")
    parser.add_argument("--out", required=True, help="run folders (keep them to resume)")
    parser.add_argument("--results", default="sequential_quality", help="name of the results file")
    args = parser.parse_args()
    path = RESULTS / f"{args.results}.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    for method in args.methods:
        row = run_method(method, args.dataset, Path(args.out), overrides_for(method, args.set))
        rows = [r for r in rows if (r["dataset"], r["method"]) != (args.dataset, method)] + [row]
        write_results(args.results, rows)


if __name__ == "__main__":
    main()
