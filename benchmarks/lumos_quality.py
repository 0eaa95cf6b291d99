"""LUMOS against its baselines and ablations on one dataset, same protocol and harness, one run per method and seed.

Each method runs its shipped recipe (``lumos*`` methods through the ``lumos`` recipe with ``method=...``) plus ``--set``
with ffmrec's pipeline into ``--out/METHOD-DATASET-sSEED`` (resumable), and its row goes to
``benchmarks/results/<--results>.json`` as soon as it finishes. Rows: test HR/NDCG@10/20 (leave-one-out, full
ranking), rounds or epochs and the best one, seconds per round or epoch, peak RSS, and for LUMOS the cost of writing
the views per client (milliseconds; tokens for the LLM backend), measured on ``--view-clients`` clients.

``--cold`` adds the cold-item rows (``"setting": "cold-items"``: ``eval.protocol=cold-items``, a seeded 10% of the
items held out of all training; HR/NDCG over the users whose test item is cold, their number and the median rank of
their test item (1 = first)) for each ``--cold-reprs`` item representation of each ``--cold-methods`` method.

``local-sasrec`` (each user trains their own SASRec alone, no federation; models materialised one cohort at a time,
see :mod:`ffmrec.train.local_only`) reports the local epochs and learning rate chosen on validation, the grid it
chose from, and the seconds of training and ranking every user's model.

    python benchmarks/lumos_quality.py --dataset beauty --seeds 42 43 44 --out runs/lumos \\
        [--methods lumos fedsasrec ...] [--cold] [--set [METHOD:]key=value ...] [--results lumos_quality]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import RESULTS, budget_metrics, command_line, overrides_for, peak_rss_mb, write_results

from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe

METHODS = ["lumos", "lumos-no-future", "lumos-no-paraphrase", "lumos-no-counterfactual", "fedsasrec", "fedcl4srec",
           "sasrec", "cl4srec", "local-sasrec"]
UNSUPPORTED: dict[str, str] = {}  # method -> why it is skipped


def config_for(method: str, dataset: str, overrides: list[str]):
    recipe = "lumos" if method.startswith("lumos") else method
    extra = [f"method={method}"] if recipe != method else []
    return load_recipe(recipe, dataset, [*extra, *overrides])


def view_cost(config, clients: int) -> dict:
    """Milliseconds (and LLM tokens) per client of writing its views in round 1, over ``clients`` seeded clients."""
    from ffmrec.methods import build_federated_task

    task = build_federated_task(config)
    ids = np.random.default_rng(config.seed).choice(task.num_clients, min(clients, task.num_clients), replace=False)
    before = task.generator.cost.per_client()["clients"]
    t0 = time.perf_counter()
    for c in ids:
        task.view_sequences(int(c), 1)
    wall = (time.perf_counter() - t0) * 1000.0 / len(ids)
    cost = task.generator.cost
    assert cost.calls - before == len(ids)
    return {"view_ms_per_client": round(wall, 3), "view_generator_ms_per_client": round(cost.ms / cost.calls, 3),
            "view_tokens_per_client": round(cost.tokens / cost.calls, 1), "view_backend": config.task.backend}


def run(method: str, dataset: str, root: Path, overrides: list[str], setting_label: str | None,
        view_clients: int) -> dict:
    config = config_for(method, dataset, overrides)
    tag = "" if setting_label is None else f"-{setting_label}-{config.model.item_repr}"
    result = pipeline(config, root / f"{method}-{dataset}{tag}-s{config.seed}")
    if config.setting == "local":  # a model per user: no rounds or epochs of one model
        extra = {"local_epochs": result.summary["best"]["epochs"], "local_lr": result.summary["best"]["lr"],
                 "grid_epochs": list(config.task.epochs), "grid_lr": list(config.task.lr),
                 "seconds": round(result.summary["wall_seconds"], 1)}
    else:
        extra = budget_metrics(config, result.summary)
    if method.startswith("lumos") and view_clients > 0:
        extra.update(view_cost(config, view_clients))
    if setting_label == "cold-items":  # where the cold targets land when none reaches the top 20
        ranks = np.load(result.out_dir / "test_ranks.npz")
        scored = ranks["rank"][ranks["scored"].astype(bool)]
        extra.update({"scored_users": int(len(scored)), "median_rank": float(np.median(scored)),
                      "id_dropout": config.model.id_dropout})
    row = {"dataset": dataset, "method": method, "setting": setting_label or config.setting, "seed": config.seed,
           "item_repr": config.model.item_repr,
           "metrics": {**result.metrics, **extra, "peak_rss_mb": round(peak_rss_mb(), 1)}}
    print(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--methods", nargs="*", default=METHODS, help="methods of the main rows (none: --cold rows only)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--cold", action="store_true", help="add the cold-item rows")
    parser.add_argument("--cold-methods", nargs="+", default=["fedsasrec", "lumos"])
    parser.add_argument("--cold-reprs", nargs="+", default=["id", "text", "hybrid"])
    parser.add_argument("--cold-id-dropout", type=float, default=0.0,
                        help="model.id_dropout of the hybrid cold-item rows (0 = off; the row states it)")
    parser.add_argument("--view-clients", type=int, default=256, help="clients timed for the view cost (0 = skip)")
    parser.add_argument("--set", nargs="*", default=[], help="overrides: key=value, or METHOD:key=value")
    parser.add_argument("--out", required=True, help="run folders (keep them to resume)")
    parser.add_argument("--results", default="lumos_quality", help="name of the results file")
    args = parser.parse_args()
    path = RESULTS / f"{args.results}.json"

    def keep(row: dict) -> None:
        """Add (or replace) ``row``, with the command that made it, to the file as it is now: rows that other
        invocations wrote meanwhile (other seeds or methods run beside this one) stay."""
        rows = json.loads(path.read_text())["rows"] if path.exists() else []
        key = (row["dataset"], row["method"], row["setting"], row["seed"], row.get("item_repr"))
        rows = [r for r in rows if (r["dataset"], r["method"], r["setting"], r.get("seed"), r.get("item_repr")) != key]
        rows.append({**row, "command": command_line()})
        write_results(args.results, rows)

    for seed in args.seeds:
        for method in args.methods:
            if method in UNSUPPORTED:
                print(f"skipping {method}: {UNSUPPORTED[method]}")
                continue
            keep(run(method, args.dataset, Path(args.out), [f"seed={seed}", *overrides_for(method, args.set)], None,
                     args.view_clients))
        if args.cold:
            for method in args.cold_methods:
                for repr_ in args.cold_reprs:
                    overrides = [f"seed={seed}", "eval.protocol=cold-items", f"model.item_repr={repr_}",
                                 *overrides_for(method, args.set)]
                    if repr_ == "hybrid" and args.cold_id_dropout:
                        overrides.append(f"model.id_dropout={args.cold_id_dropout}")
                    keep(run(method, args.dataset, Path(args.out), overrides, "cold-items", 0))


if __name__ == "__main__":
    main()
