"""Tuning LUMOS's tri-view objective on validation: its weights and temperature, at a shortened budget, one seed.

Each grid point is the ``lumos`` recipe plus its overrides (the future and paraphrase weights lambda_f and lambda_p,
the counterfactual's weight beta, the temperature tau, the view sets per client whose views are one another's
negatives, the item representation), trained for ``--rounds`` rounds (the recipe's clients per round, server and
client settings) into ``--out/POINT-DATASET-sSEED`` (resumable). The reference points are the same budget without the
tri-view term: ``fedsasrec`` with LUMOS's hybrid items (``no-views``), and with id items against LUMOS with id items
(``id-items-no-views``, ``id-items``: do the views add what the item text would). Only validation is read (NDCG@20
and HR@20 at every ``federated.eval_every`` rounds): the point is chosen on validation, and its test figures come
from ``lumos_quality.py`` at the full budget. Rows go to ``benchmarks/results/<--results>.json`` as each point finishes;
several invocations may run at once (one per core, ``--points``), each adds its rows to the file as it is then.

    python benchmarks/lumos_view_sweep.py --out runs/lumos-sweep [--rounds 600] [--points NAME ...] [--seed 42] \\
        [--set threads=1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, budget_metrics, command_line, peak_rss_mb, write_results  # noqa: E402

from ffmrec.pipeline import pipeline  # noqa: E402
from ffmrec.recipes import load_recipe  # noqa: E402

# name -> (recipe, overrides); "recipe" is lumos as shipped (lambda_f = lambda_p = 0.1, beta = 1, tau = 0.5)
GRID: dict[str, tuple[str, list[str]]] = {
    "recipe": ("lumos", []),
    "lambda0.03": ("lumos", ["task.future_weight=0.03", "task.paraphrase_weight=0.03"]),
    "lambda1": ("lumos", ["task.future_weight=1.0", "task.paraphrase_weight=1.0"]),
    "tau0.2": ("lumos", ["task.temperature=0.2"]),
    "tau1": ("lumos", ["task.temperature=1.0"]),
    "beta4": ("lumos", ["task.counterfactual_weight=4.0"]),
    "sets1": ("lumos", ["task.sets=1"]),
    "no-views": ("fedsasrec", ["model.item_repr=hybrid"]),
    "id-items": ("lumos", ["model.item_repr=id"]),
    "id-items-no-views": ("fedsasrec", []),
}


def run_point(name: str, dataset: str, seed: int, rounds: int, root: Path, extra: list[str]) -> dict:
    recipe, overrides = GRID[name]
    config = load_recipe(recipe, dataset, [f"seed={seed}", f"federated.rounds={rounds}", *overrides, *extra])
    result = pipeline(config, root / f"{name}-{dataset}-s{seed}")
    curve = {f"valid/NDCG@20 r{h['round']}": h["valid/NDCG@20"] for h in result.history if "valid/NDCG@20" in h}
    last = next(h for h in reversed(result.history) if "valid/NDCG@20" in h)
    budget = budget_metrics(config, result.summary)
    t = config.task if recipe == "lumos" else None
    return {"dataset": dataset, "method": config.method, "setting": "federated", "seed": seed, "point": name,
            "item_repr": config.model.item_repr, "overrides": overrides,
            "lambda_f": t.future_weight if t else 0.0, "lambda_p": t.paraphrase_weight if t else 0.0,
            "beta": t.counterfactual_weight if t else None, "tau": t.temperature if t else None,
            "sets": t.sets if t else None,
            "metrics": {"valid/NDCG@20": last["valid/NDCG@20"], "valid/HR@20": last["valid/HR@20"],
                        "rounds": budget["rounds"], "clients_per_round": budget["clients_per_round"],
                        "seconds_per_round": budget["seconds_per_round"], "peak_rss_mb": round(peak_rss_mb(), 1),
                        **curve}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--points", nargs="+", default=list(GRID), choices=list(GRID))
    parser.add_argument("--set", nargs="*", default=[], help="overrides key=value for every point (e.g. threads=1)")
    parser.add_argument("--out", required=True, help="run folders (keep them to resume)")
    parser.add_argument("--results", default="lumos_view_sweep")
    args = parser.parse_args()
    path = RESULTS / f"{args.results}.json"
    for name in args.points:
        row = run_point(name, args.dataset, args.seed, args.rounds, Path(args.out), args.set)
        print(json.dumps(row), flush=True)
        rows = json.loads(path.read_text())["rows"] if path.exists() else []
        key = (row["dataset"], row["point"], row["seed"], row["metrics"]["rounds"])
        rows = [r for r in rows if (r["dataset"], r["point"], r["seed"], r["metrics"]["rounds"]) != key]
        rows.append({**row, "command": command_line()})
        order = {name: i for i, name in enumerate(GRID)}
        write_results(args.results, sorted(rows, key=lambda r: order.get(r["point"], len(order))))


if __name__ == "__main__":
    main()
