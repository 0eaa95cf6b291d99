"""The ``ffmrec`` command line.

    ffmrec datasets                      known datasets, which are present, statistics
    ffmrec recipes                       shipped recipes and their settings
    ffmrec run RECIPE [--dataset NAME] [--set key=value ...] [--out DIR]

Errors the user can fix print one line (``ffmrec: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    from ffmrec.recipes import recipe_paths

    for name, path in sorted(recipe_paths().items()):
        data = load_yaml(path)
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        print(f"{name}: {first}")
        print(f"    method={data.get('method')} dataset={data.get('dataset')}  ({path})")
    print("\nRun one with: ffmrec run RECIPE [--dataset NAME] [--set section.key=value ...] [--out DIR]")
    return 0


def _cmd_run(args) -> int:
    from ffmrec.pipeline import pipeline
    from ffmrec.recipes import load_recipe

    config = load_recipe(args.recipe, args.dataset, args.set or [])
    out = Path(args.out) if args.out else Path("runs") / f"{config.method}-{config.dataset.replace('/', '_')}"
    result = pipeline(config, out, progress=not args.quiet)
    print(" ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()))
    print(f"wrote {out}/metrics.json, {out}/report.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ffmrec", description="Federated foundation models for recommendation.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("datasets", help="list known datasets, which are present, and their statistics")
    p.add_argument("--data-dir", default=None, help="data root (default: $FFMREC_DATA_DIR)")
    p.add_argument("--no-stats", action="store_true", help="do not load the present datasets for statistics")
    p.set_defaults(func=_cmd_datasets)
    p = sub.add_parser("recipes", help="list the shipped recipes")
    p.set_defaults(func=_cmd_recipes)
    p = sub.add_parser("run", help="run a recipe")
    p.add_argument("recipe", help="a shipped recipe name (see 'ffmrec recipes') or a YAML file")
    p.add_argument("--dataset", default=None, help="dataset name or interactions file (overrides the recipe's)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", help="override config keys, e.g. train.epochs=5")
    p.add_argument("--out", default=None, help="run folder (default runs/METHOD-DATASET); an existing one is resumed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_run)
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
        print("ffmrec: interrupted; start the same command again to resume from the last checkpoint.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
