"""Centralized SASRec (full-catalogue cross-entropy) on beauty, sports (max length 50) and ml-1m as staged (200).

Protocol: ffmrec's leave-one-out, full ranking over all items, the user's history masked (RecBole's convention), model
selected on validation NDCG@10, test metrics of the selected model. Writes benchmarks/results/sasrec_centralized.json.

    python benchmarks/sasrec_centralized.py [--datasets beauty sports ml-1m] [--set [DATASET:]key=value ...]

Runs are resumable (same ``--out``); ``--set sports:train.epochs=N`` ends an interrupted run at the epoch it reached.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import overrides_for, peak_rss_mb, write_results

from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["beauty", "sports", "ml-1m"])
    parser.add_argument("--set", nargs="*", default=[],
                        help="config overrides: key=value for every dataset, DATASET:key=value for one")
    parser.add_argument("--out", default=None, help="keep the run folders here (default: a temp dir)")
    args = parser.parse_args()
    rows = []
    root = Path(args.out or tempfile.mkdtemp(prefix="ffmrec-bench-"))
    for name in args.datasets:
        config = load_recipe("sasrec", name, overrides_for(name, args.set))
        result = pipeline(config, root / f"sasrec-{name}")
        s = result.summary
        rows.append({
            "dataset": name, "method": "sasrec", "setting": "centralized",
            "metrics": {**result.metrics, "epochs": s["epochs"], "best_epoch": s["best_epoch"],
                        "seconds_per_epoch": round(s["seconds_per_epoch"], 2), "peak_rss_mb": round(peak_rss_mb(), 1)},
            "config": {"max_len": config.model.max_len, "dropout": config.model.dropout, "batch_size": config.train.batch_size,
                       "lr": config.train.lr, "patience": config.train.patience, "eval_every": config.train.eval_every},
        })
        write_results("sasrec_centralized", rows)  # after each dataset, so a long run keeps what it has


if __name__ == "__main__":
    main()
