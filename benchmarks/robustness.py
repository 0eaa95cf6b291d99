"""Robustness of a federated recommender (FedSASRec by default, or ``--method lumos``): noisy histories and adversarial
clients, with and without the core's robust strategies.

Each row is one ``ffmrec run METHOD`` on the dataset (the recipe plus this script's small budget, ``--set``
overrides on top) and reports the honest users' test HR@20 / NDCG@20 and the exposure ER@10 of the attackers' target
item (a seeded unpopular item; measured in every row, attacked or not):

- ``attackers``: "0%", "1%" or "5%" of the clients are malicious (:mod:`ffmrec.federated.adversary.attack`:
  popular-item sequences labelled with the target, the local loss boosted by each of ``--boosts``; with
  ``--no-auxiliary`` the attackers train only the model's loss, not the method's auxiliary terms; with ``--attack
  target_row`` their step moves only the target's embedding row), under each strategy of ``--strategies``;
- ``noise``: a share p of each training history replaced by random unseen items (attackers 0%, the first strategy
  or ``--noise-strategies``).

``ndcg_loss_vs_no_attack`` is ``1 - NDCG@20 / NDCG@20 of the reference``, where the reference is the no-attack,
no-noise row of the first strategy (the undefended baseline); ``ndcg_loss_vs_same_strategy`` uses the no-attack row
of the row's own strategy (the cost of the attack alone, not of the defence); both against the clean row of the same
seed (``--set seed=43`` adds rows of another seed: the attackers, their target and the training all change).

    python benchmarks/robustness.py [--dataset ml-100k] [--method fedsasrec|lumos] [--out DIR]
        [--strategies fedavg krum ...] [--fractions 0 0.05 0.01] [--noise 0.1 0.2 0.3] [--noise-strategies fedavg krum]
        [--boosts 1 3] [--no-auxiliary] [--attack explicit_boosting|target_row] [--set key=value ...]

Resumable: run folders live under ``--out`` (a finished run is only re-tested), and the results file is rewritten
after every row (``benchmarks/results/robustness_<dataset>.json``, ``robustness_<method>_<dataset>.json`` for another
method); ``--reuse`` keeps the rows already there and runs only the missing ones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import RESULTS, peak_rss_mb, write_results

from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe

#: the small budget every row shares (stated in each row): 100 rounds of 32 clients, histories cut to 50 items
BUDGET = ["threads=1", "federated.rounds=100", "federated.eval_every=25", "model.max_len=50",
          "federated.clients_per_round=32", "federated.chunk_size=32", "federated.adversary.measure_exposure=true",
          "federated.adversary.boost=1.0"]

#: the recipes' seed: rows written before the "seed" field was added ran with it
SEED = 42

#: strategy label -> overrides (robust rules apply the mean step with server_lr 1, i.e. FedAvg's)
STRATEGIES = {
    "fedadam": ["federated.strategy=fedadam"],
    "fedavg": ["federated.strategy=fedavg", "federated.server_lr=1.0"],
    "krum": ["federated.strategy=krum", "federated.server_lr=1.0", "federated.krum_malicious=8",
             "federated.krum_multi=24"],
    "krum-f4": ["federated.strategy=krum", "federated.server_lr=1.0", "federated.krum_malicious=4",
                "federated.krum_multi=28"],  # sized for up to 12.5% attackers per round: averages more clients
    "trimmed_mean": ["federated.strategy=trimmed_mean", "federated.server_lr=1.0", "federated.trim_ratio=0.15"],
    "median": ["federated.strategy=median", "federated.server_lr=1.0"],
    "norm_bounded_fedavg": ["federated.strategy=fedavg", "federated.server_lr=1.0", "federated.max_update_norm=1.0"],
}


def one_row(method: str, dataset: str, root: Path, strategy: str, fraction: float, noise: float,
            extra: list[str], boost: float = 1.0, auxiliary: bool = True,
            attack: str = "explicit_boosting") -> dict:
    overrides = [*BUDGET, *STRATEGIES[strategy], f"federated.adversary.fraction={fraction}",
                 f"federated.noise.p={noise}", *extra]
    if boost != 1.0:
        overrides.append(f"federated.adversary.boost={boost:g}")
    if not auxiliary:
        overrides.append("federated.adversary.auxiliary=false")
    if attack != "explicit_boosting":
        overrides.append(f"federated.adversary.attack={attack}")
    config = load_recipe(method, dataset, overrides)
    name = (f"{strategy}-att{fraction:g}-noise{noise:g}" + (f"-boost{boost:g}" if boost != 1.0 else "")
            + ("" if auxiliary else "-noaux") + ("" if attack == "explicit_boosting" or not fraction else f"-{attack}")
            + (f"-seed{config.seed}" if config.seed != SEED else ""))
    t0 = time.perf_counter()
    result = pipeline(config, root / name, progress=False)
    m, s = result.metrics, result.summary
    fed = config.federated
    print(f"{name}: HR@20={m['HR@20']:.4f} NDCG@20={m['NDCG@20']:.4f} ER@10={m['ER@10']:.4f} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return {"dataset": dataset, "method": method, "setting": "federated", "strategy": strategy,
            "attackers": f"{fraction * 100:g}%", "noise": noise, "seed": config.seed,
            "rounds": fed.rounds, "clients_per_round": fed.clients_per_round, "max_len": config.model.max_len,
            "boost": fed.adversary.boost, "auxiliary": fed.adversary.auxiliary, "attack": fed.adversary.attack,
            "overrides": overrides,
            "metrics": {"HR@10": m["HR@10"], "NDCG@10": m["NDCG@10"], "HR@20": m["HR@20"], "NDCG@20": m["NDCG@20"],
                        "ER@10": m["ER@10"], "best_round": s["best_round"],
                        "seconds_per_round": round(s["seconds_per_round"], 3),
                        "wall_seconds": round(s["wall_seconds"], 1), "peak_rss_mb": round(peak_rss_mb(), 1)}}


def add_losses(rows: list[dict]) -> None:
    """``ndcg_loss_vs_no_attack`` (against the first strategy's clean row) and ``ndcg_loss_vs_same_strategy``, each
    against the clean row of the same seed."""
    clean = {(r["strategy"], r.get("seed", SEED)): r["metrics"]["NDCG@20"] for r in rows
             if r["attackers"] == "0%" and r["noise"] == 0}
    first = rows[0]["strategy"] if rows else None
    for r in rows:
        ndcg, seed = r["metrics"]["NDCG@20"], r.get("seed", SEED)
        if clean.get((first, seed)):
            r["metrics"]["ndcg_loss_vs_no_attack"] = round(1 - ndcg / clean[(first, seed)], 4)
        if clean.get((r["strategy"], seed)):
            r["metrics"]["ndcg_loss_vs_same_strategy"] = round(1 - ndcg / clean[(r["strategy"], seed)], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--method", default="fedsasrec", choices=["fedsasrec", "lumos"])
    parser.add_argument("--out", default=None, help="keep the run folders here (default: a temp dir)")
    parser.add_argument("--strategies", nargs="+", default=["fedavg", "krum"], choices=sorted(STRATEGIES),
                        help="the first is the undefended reference")
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.0, 0.05, 0.01])
    parser.add_argument("--noise", nargs="*", type=float, default=[0.1, 0.2, 0.3])
    parser.add_argument("--noise-strategies", nargs="*", default=None, choices=sorted(STRATEGIES),
                        help="strategies of the noise rows (default: the first of --strategies)")
    parser.add_argument("--boosts", nargs="+", type=float, default=[1.0],
                        help="the attackers' boost (federated.adversary.boost) of the attacked rows, one row each")
    parser.add_argument("--no-auxiliary", action="store_true",
                        help="the attackers of the attacked rows train only the model's loss "
                             "(federated.adversary.auxiliary=false: no LUMOS views)")
    parser.add_argument("--attack", default="explicit_boosting", choices=["explicit_boosting", "target_row"],
                        help="the attack of the attacked rows (federated.adversary.attack)")
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides (key=value) for every row")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the rows already in the results file and run only the missing ones")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="ffmrec-robustness-"))
    rows: list[dict] = []
    name = f"robustness_{args.dataset}" if args.method == "fedsasrec" else f"robustness_{args.method}_{args.dataset}"
    previous = RESULTS / f"{name}.json"
    if args.reuse and previous.exists():  # keep the rows an earlier invocation wrote (each names its overrides)
        rows = json.loads(previous.read_text())["rows"]
        for r in rows:  # rows written before these fields: the recipes' seed, attackers running the whole objective
            r.setdefault("seed", SEED)
            r.setdefault("auxiliary", True)
            r.setdefault("attack", "explicit_boosting")
    seed = load_recipe(args.method, args.dataset, args.set).seed
    done = {(r["strategy"], r["attackers"], r["noise"], r.get("boost", 1.0), r.get("auxiliary", True),
             r.get("attack", "explicit_boosting")) for r in rows if r.get("seed", SEED) == seed}
    aux = not args.no_auxiliary
    plan = [(s, f, 0.0, b if f else 1.0, aux or not f, args.attack if f else "explicit_boosting")
            for b in args.boosts for f in args.fractions for s in args.strategies]  # the most telling rows first
    plan += [(s, 0.0, p, 1.0, True, "explicit_boosting") for s in (args.noise_strategies or args.strategies[:1])
             for p in args.noise]
    for strategy, fraction, noise, boost, auxiliary, attack in dict.fromkeys(plan):  # a clean row once, whatever
        if (strategy, f"{fraction * 100:g}%", noise, boost, auxiliary, attack) in done:  # the attack
            continue
        rows.append(one_row(args.method, args.dataset, root, strategy, fraction, noise, args.set, boost, auxiliary,
                            attack))
        add_losses(rows)
        write_results(name, rows)


if __name__ == "__main__":
    main()
