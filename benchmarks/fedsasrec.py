"""FedSASRec against centralized SASRec, measured in one run.

1. Cost: the wall time of one federated round over ALL users (one local epoch each, fast simulator, FedAdam) divided by
   the wall time of one centralized epoch over the same training sequences with the same model (Adam, batch 256);
   the two are timed alternately, ``--repeats`` times each, and the medians compared (``round_over_centralized_epoch``).
2. Quality: ``ffmrec run sasrec`` and ``ffmrec run fedsasrec`` on each dataset (recipes as shipped, plus ``--set``),
   test HR/NDCG@10/20 under the leave-one-out full-ranking protocol; peak RSS.

    python benchmarks/fedsasrec.py [--datasets beauty ml-1m] [--repeats 3] [--skip-quality] [--reuse-cost]
        [--set [DATASET:]key=value ...] [--central-set [DATASET:]key=value ...]

Runs are resumable: with the same ``--out`` an interrupted benchmark continues where it stopped; ``--reuse-cost`` keeps
the cost rows an earlier invocation wrote to the results file (and measures only the missing ones).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, overrides_for, peak_rss_mb, write_results

from ffmrec.data import load_dataset
from ffmrec.data.batching import iterate_batches
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.federated.engines.fast import FastSimulator
from ffmrec.federated.server import aggregate
from ffmrec.federated.strategies import FedAdam
from ffmrec.methods import build_sequential_task
from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe


def time_round_vs_epoch(name: str, repeats: int, overrides: list[str]) -> dict:
    config = load_recipe("fedsasrec", name, overrides)
    dataset = load_dataset(config.dataset, options=config.data)
    split = LeaveOneOut(dataset.sequences())
    task = build_sequential_task(config, dataset, split)
    engine = FastSimulator(task, chunk_size=config.federated.chunk_size)
    strategy = FedAdam(config.federated.server_lr)
    shared = task.initial_shared()
    all_users = list(range(task.num_clients))

    model = task.build_model(task.num_clients)
    model.load_state_dict({**shared, **{k: v.flatten(0, 1) for k, v in engine.cohort.store.table.items()}})
    opt = torch.optim.Adam(model.parameters(), lr=config.federated.server_lr)
    histories = [task.histories[u] for u in range(task.num_clients)]

    def centralized_epoch() -> float:
        model.train()
        t0 = time.perf_counter()
        for batch in iterate_batches(histories, task.max_len, 256, np.random.default_rng(0)):
            loss = model.calculate_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    def federated_round() -> float:
        nonlocal shared
        t0 = time.perf_counter()
        result = engine.train_round(1, all_users, shared, config.federated.client, want_records=False)
        shared = strategy.apply(shared, aggregate(result, strategy)[0])
        return time.perf_counter() - t0

    epochs, rounds = [], []
    for _ in range(repeats):
        epochs.append(centralized_epoch())
        rounds.append(federated_round())
    e, r = statistics.median(epochs), statistics.median(rounds)
    print(f"{name}: centralized epoch {e:.1f}s, federated round over {len(all_users)} users {r:.1f}s, ratio {r / e:.2f}")
    return {"dataset": name, "method": "fedsasrec", "setting": "federated",
            "metrics": {"round_over_centralized_epoch": round(r / e, 3), "round_seconds": round(r, 2),
                        "centralized_epoch_seconds": round(e, 2), "clients_per_round": len(all_users),
                        "repeats": repeats, "peak_rss_mb": round(peak_rss_mb(), 1)}}


def quality(name: str, root: Path, overrides: list[str], central: list[str]) -> list[dict]:
    rows = []
    # federated first: the centralized run folder may be shared with benchmarks/sasrec_centralized.py (same --out),
    # in which case the finished, deterministic centralized run is resumed (nothing left to train) rather than redone
    for recipe, setting in (("fedsasrec", "federated"), ("sasrec", "centralized")):
        config = load_recipe(recipe, name, overrides if recipe == "fedsasrec" else central)
        result = pipeline(config, root / f"{recipe}-{name}")
        s = result.summary
        extra = ({"rounds": s["rounds"], "best_round": s["best_round"], "clients_per_round": config.federated.clients_per_round,
                  "seconds_per_round": round(s["seconds_per_round"], 3)} if setting == "federated"
                 else {"epochs": s["epochs"], "best_epoch": s["best_epoch"], "seconds_per_epoch": round(s["seconds_per_epoch"], 2)})
        rows.append({"dataset": name, "method": recipe, "setting": setting,
                     "metrics": {**result.metrics, **extra, "wall_seconds": round(s["wall_seconds"], 1),
                                 "peak_rss_mb": round(peak_rss_mb(), 1)}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["beauty", "ml-1m"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--reuse-cost", action="store_true",
                        help="keep the cost rows already in results/fedsasrec.json; measure only the missing ones")
    parser.add_argument("--set", nargs="*", default=[], help="fedsasrec recipe overrides: key=value, or DATASET:key=value")
    parser.add_argument("--central-set", nargs="*", default=[],
                        help="sasrec recipe overrides (same form), e.g. to match benchmarks/sasrec_centralized.py's run")
    parser.add_argument("--out", default=None, help="keep the run folders here (default: a temp dir)")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="ffmrec-bench-"))
    rows = []
    if args.reuse_cost:  # keep the cost rows an earlier run of this script measured
        previous = RESULTS / "fedsasrec.json"
        if previous.exists():
            rows = [r for r in json.loads(previous.read_text())["rows"]
                    if "round_over_centralized_epoch" in r["metrics"] and r["dataset"] in args.datasets]
    for name in args.datasets:
        if not any(r["dataset"] == name for r in rows):
            rows.append(time_round_vs_epoch(name, args.repeats, overrides_for(name, args.set)))
            write_results("fedsasrec", rows)
        if not args.skip_quality:
            rows.extend(quality(name, root, overrides_for(name, args.set), overrides_for(name, args.central_set)))
            write_results("fedsasrec", rows)


if __name__ == "__main__":
    main()
