"""The ``ffmrec`` command line.

    ffmrec datasets                      known datasets, which are present, statistics
    ffmrec recipes [RECIPE]              shipped recipes; with RECIPE every config key, its value and help
    ffmrec run RECIPE [--dataset NAME] [--set key=value ...] [--out DIR] [--seeds N] [--tensorboard]
    ffmrec recommend RUN_DIR --user U [--k 10] [--explain] [--json]
    ffmrec compare RUN_DIR [RUN_DIR ...] [--metric NDCG@10] [--figure PATH]
    ffmrec attack RUN_DIR [--labelled 0.3] [--seed 0] [--rounds R ...]   attribute-inference attacks on a recorded run

Errors the user can fix print one line (``ffmrec: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from ffmrec.errors import FFMRecError


def _cmd_datasets(args) -> int:
    from ffmrec.data import DATASETS, dataset_statistics, dataset_status

    rows = dataset_status(args.data_dir)
    print(f"{'name':<10} {'present':<8} {'users':>8} {'items':>8} {'interactions':>13}  notes")
    for row in rows:
        stats = {}
        if row["present"] and row["name"] in DATASETS and not args.no_stats:
            try:
                stats = dataset_statistics(row["name"], args.data_dir)
            except FFMRecError as e:
                row.setdefault("notes", []).append(str(e))
        notes = "; ".join(row.get("notes") or []) or row.get("description", "")
        print(f"{row['name']:<10} {'yes' if row['present'] else 'no':<8} {stats.get('users', '-'):>8} "
              f"{stats.get('items', '-'):>8} {stats.get('interactions', '-'):>13}  {notes}")
    return 0


def _cmd_recipes(args) -> int:
    from ffmrec.config import load_yaml
    from ffmrec.recipes import describe_keys, load_recipe, recipe_paths

    if args.recipe:  # every key of one recipe's config, its value and its help
        config = load_recipe(args.recipe, args.dataset)
        rows = describe_keys(config)
        width = max(len(f"{key}={value}") for key, value, _ in rows)
        for key, value, help_text in rows:
            print(f"{f'{key}={value}':<{width}}  {help_text}")
        print(f"\nSet any of them with: ffmrec run {args.recipe} --set KEY=VALUE ...")
        return 0

    for name, path in sorted(recipe_paths().items()):
        data = load_yaml(path)
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        print(f"{name}: {first}")
        print(f"    method={data.get('method')} dataset={data.get('dataset')}  ({path})")
    print("\nRun one with: ffmrec run RECIPE [--dataset NAME] [--set section.key=value ...] [--out DIR]")
    print("List a recipe's keys, values and help with: ffmrec recipes RECIPE")
    return 0


def _cmd_run(args) -> int:
    import warnings

    from ffmrec.api import run
    from ffmrec.pipeline import NoValidationWarning

    with warnings.catch_warnings(record=True) as caught:  # the run's notes as one line each
        warnings.simplefilter("always", NoValidationWarning)
        result = run(args.recipe, args.dataset, args.set or [], args.out, seeds=args.seeds, tensorboard=args.tensorboard,
                     progress=not args.quiet)
    for w in caught:
        if issubclass(w.category, NoValidationWarning):
            print(f"ffmrec: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    out = result.out_dir
    if result.runs:  # several seeds
        std = result.summary["std"]
        print(" ".join(f"{k}={v:.4f}±{std[k]:.4f}" for k, v in result.metrics.items()))
        print(f"wrote {len(result.runs)} runs under {out}/ and their mean and std to {out}/seeds.json")
    else:
        print(" ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()))
        print(f"wrote {out}/metrics.json, {out}/report.md")
    if args.tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out}")
    return 0


def _cmd_recommend(args) -> int:
    from ffmrec.recommend import load_trained

    recs = load_trained(args.run_dir).recommend(args.user, args.k, explain=args.explain)
    print(recs.to_json() if args.json else recs.format())
    return 0


def _cmd_compare(args) -> int:
    import json

    from ffmrec.compare import compare

    result = compare(args.run_dirs, metric=args.metric, figure=None if args.figure == "none" else args.figure)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table())
        if result.figure is not None:
            print(f"validation curves: {result.figure}")
    return 0


def _cmd_attack(args) -> int:
    from ffmrec.privacy.attacks import AttackConfig
    from ffmrec.privacy.report import attack_run

    cfg = AttackConfig(labelled_fraction=args.labelled, seed=args.seed, rounds=tuple(args.rounds) if args.rounds else None)
    doc = attack_run(args.run_dir, cfg)
    print(" ".join(f"{k}={v:.4f}" for k, v in doc["summary"].items()))
    print(f"wrote {args.run_dir}/attack.json, {args.run_dir}/attack.md")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ffmrec")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ffmrec", description="Federated foundation models for recommendation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("datasets", help="list known datasets, which are present, and their statistics")
    p.add_argument("--data-dir", default=None, help="data root (default: $FFMREC_DATA_DIR)")
    p.add_argument("--no-stats", action="store_true", help="do not load the present datasets for statistics")
    p.set_defaults(func=_cmd_datasets)
    p = sub.add_parser("recipes", help="list the shipped recipes, or every config key of one with its value and help")
    p.add_argument("recipe", nargs="?", default=None, help="a recipe (name or YAML file): list its keys")
    p.add_argument("--dataset", default=None, help="with RECIPE: the keys' values for this dataset")
    p.set_defaults(func=_cmd_recipes)
    p = sub.add_parser("run", help="run a recipe")
    p.add_argument("recipe", help="a shipped recipe name (see 'ffmrec recipes') or a YAML file")
    p.add_argument("--dataset", default=None, help="dataset name or interactions file (overrides the recipe's)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", help="override config keys, e.g. train.epochs=5")
    p.add_argument("--out", default=None, help="run folder (default runs/METHOD-DATASET); an existing one is resumed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="run the config with N seeds (seed, seed+1, ...) into OUT/seed-<seed>/; mean and std in OUT/seeds.json")
    p.add_argument("--tensorboard", action="store_true", help="also write every history line to TensorBoard events in the run folder")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("recommend", help="top-K recommendations for one user from a finished run")
    p.add_argument("run_dir", help="a finished run folder (the --out of 'ffmrec run')")
    p.add_argument("--user", required=True, help="the dataset's original user id (fedtrek: the ReDial seeker's worker id)")
    p.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--explain", action="store_true", help="give each recommendation the history items that drove it (fedtrek: a liked movie of the user's PKG linked to it in the movie KG)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_recommend)
    p = sub.add_parser("compare", help="final metrics (mean ± std over seeds), paired significance tests, validation curves")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders or folders of seeds; the first is the baseline")
    p.add_argument("--metric", default="NDCG@10", help="metric of the paired test and the curves (default NDCG@10)")
    p.add_argument("--figure", default="comparison.png", help="where to draw the validation curves ('none': no figure)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("attack", help="attribute-inference attacks (gender, age, occupation) on a run's recorded egress")
    p.add_argument("run_dir", help="a run folder recorded with federated.record_rounds")
    p.add_argument("--labelled", type=float, default=0.3, help="share of users the attacker trains on (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, projections and attackers")
    p.add_argument("--rounds", type=int, nargs="+", default=None, help="recorded rounds to attack (default all)")
    p.set_defaults(func=_cmd_attack)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FFMRecError as e:
        print(f"ffmrec: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ffmrec: interrupted: checkpoints are written after every epoch or round, so the one in progress is "
              "lost; start the same command again to resume from the last finished one.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
