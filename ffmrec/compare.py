"""Compare finished runs: one table of final test metrics (mean ± std over seeds), a paired significance test over
users against the first run, and their validation curves on one figure.

Every run writes each user's test rank (``test_ranks.npz``). Two runs on the same data rank the same users' same
held-out items, so their per-user scores pair up: for a run with several seeds a user's score is its mean over the
seeds, and the test is the Wilcoxon signed-rank test of the paired per-user differences (Wilcoxon 1945; users whose
scores are equal in both runs are left out, its ``zero_method="wilcox"``), two-sided, of the chosen metric (default
NDCG@10). Runs on different data (another dataset, other filtering, other users) get no p-value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ffmrec.errors import ConfigError
from ffmrec.recommend import SEEDS_FILE, check_run_dir
from ffmrec.utils.io import History, load_columns

__all__ = ["Comparison", "RunGroup", "compare", "per_user_metric"]


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each user's ``HR@K``, ``NDCG@K`` or ``MRR`` (``MRR@K``) from 1-based target ranks ``(U,)``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    name, _, k = metric.partition("@")
    cut = float(k) if k else np.inf
    if name == "HR" and k:
        return (ranks <= cut).astype(np.float64)
    if name == "NDCG" and k:
        return np.where(ranks <= cut, 1.0 / np.log2(ranks + 1.0), 0.0)
    if name == "MRR":
        return np.where(ranks <= cut, 1.0 / ranks, 0.0)
    raise ConfigError(f"metric={metric!r} has no per-user form: use HR@K, NDCG@K or MRR, e.g. NDCG@10.")


@dataclass
class RunGroup:
    """One compared run: a single run folder, or a folder of seed runs."""

    name: str
    path: Path
    seed_dirs: list[Path]
    config: dict
    metrics: dict[str, float]  # mean over seeds
    std: dict[str, float]  # sample std over seeds (empty for one seed)
    per_user: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (U,) mean over seeds

    @property
    def data_key(self) -> str:
        """What fixes the users and their held-out items: the dataset and its filtering."""
        return json.dumps([self.config.get("dataset"), self.config.get("data")], sort_keys=True)

    @property
    def x_key(self) -> str:
        return "epoch" if any("epoch" in line for line in History(self.seed_dirs[0] / "history.jsonl").read()) else "round"


def open_group(path: str | Path) -> RunGroup:
    path = Path(path)
    if (path / SEEDS_FILE).exists() and not (path / "config.yaml").exists():
        names = json.loads((path / SEEDS_FILE).read_text(encoding="utf-8"))["runs"]
        dirs = [check_run_dir(path / n) for n in names]
    else:
        dirs = [check_run_dir(path)]
    configs = [yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8")) or {} for d in dirs]
    metrics = [json.loads((d / "metrics.json").read_text(encoding="utf-8")) for d in dirs]
    keys = [k for k in metrics[0] if all(k in m for m in metrics)]
    values = {k: np.array([m[k] for m in metrics], dtype=np.float64) for k in keys}
    std = {k: float(v.std(ddof=1)) for k, v in values.items()} if len(dirs) > 1 else {}
    name = path.name if len(dirs) > 1 or path.name else str(path)
    return RunGroup(name, path, dirs, configs[0], {k: float(v.mean()) for k, v in values.items()}, std)


def load_per_user(group: RunGroup, metric: str) -> dict[int, float] | None:
    """``{user: metric}`` of the users every seed scored (mean over seeds); None when a run has no
    ``test_ranks.npz``."""
    per_seed = []
    for d in group.seed_dirs:
        if not (d / "test_ranks.npz").exists():
            return None
        cols = load_columns(d / "test_ranks.npz")
        per_seed.append(dict(zip(cols["user"].tolist(), per_user_metric(cols["rank"], metric).tolist())))
    users = set.intersection(*(set(s) for s in per_seed))
    return {u: float(np.mean([s[u] for s in per_seed])) for u in sorted(users)}


def paired_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired per-user scores ``a`` and ``b`` (1.0 when no user
    differs)."""
    from scipy.stats import wilcoxon

    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if not np.any(diff != 0):
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


@dataclass
class Comparison:
    runs: list[RunGroup]
    metric: str
    p_values: list[float | None]  # against runs[0]; None for runs[0] and runs on other data
    notes: list[str]
    figure: Path | None = None

    def table(self) -> str:
        """A plain-text table: one row per run, final metrics as mean ± std, the p-value against the first run."""
        keys = [k for k in self.runs[0].metrics if all(k in r.metrics for r in self.runs)]
        header = ["run", "seeds", *keys, f"p ({self.metric} vs {self.runs[0].name})"]
        rows = []
        for run, p in zip(self.runs, self.p_values):
            cells = [run.name, str(len(run.seed_dirs))]
            for k in keys:
                cells.append(f"{run.metrics[k]:.4f} ± {run.std[k]:.4f}" if run.std else f"{run.metrics[k]:.4f}")
            cells.append("-" if p is None else f"{p:.3g}")
            rows.append(cells)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def to_dict(self) -> dict:
        return {"metric": self.metric, "test": "wilcoxon signed-rank, paired over users, two-sided",
                "figure": str(self.figure) if self.figure else None,
                "runs": [{"name": r.name, "path": str(r.path), "seeds": len(r.seed_dirs), "mean": r.metrics,
                          "std": r.std, "p_value": p} for r, p in zip(self.runs, self.p_values)],
                "notes": self.notes}


def compare(run_dirs: list[str | Path], metric: str = "NDCG@10", figure: str | Path | None = None) -> Comparison:
    """Compare finished runs (single runs or folders of seeds); the first is the baseline of the paired tests.
    ``figure`` (a .png path) draws their validation ``metric`` curves on one plot."""
    if len(run_dirs) < 1:
        raise ConfigError("compare needs at least one run folder: pass RUN_DIR [RUN_DIR ...].")
    groups = [open_group(p) for p in run_dirs]
    names = [g.name for g in groups]
    for g in groups:  # same folder names under different parents: use the paths
        if names.count(g.name) > 1:
            g.name = str(g.path)
    if metric not in groups[0].metrics:
        raise ConfigError(f"metric={metric!r} is not among {groups[0].name}'s metrics: choose one of "
                          f"{', '.join(groups[0].metrics)}.")
    notes: list[str] = []
    base = load_per_user(groups[0], metric)
    if base is None:
        notes.append(f"{groups[0].name} has no per-user test ranks (test_ranks.npz; runs before this file existed): "
                     "no p-values.")
    p_values: list[float | None] = [None]
    for g in groups[1:]:
        other = load_per_user(g, metric) if base is not None else None
        common = sorted(set(base) & set(other)) if base is not None and other is not None else []
        if base is None or other is None:
            p_values.append(None)
        elif g.data_key != groups[0].data_key or not common:
            p_values.append(None)
            notes.append(f"{g.name} ran on other data than {groups[0].name}: its users do not pair, no p-value.")
        else:
            p_values.append(paired_test(np.array([base[u] for u in common]), np.array([other[u] for u in common])))
    if any(p is not None for p in p_values):
        notes.append(f"p: two-sided Wilcoxon signed-rank test over users of per-user {metric} (mean over seeds), "
                     f"paired with {groups[0].name}.")
    result = Comparison(groups, metric, p_values, notes)
    if figure is not None:
        result.figure = plot_curves(groups, metric, Path(figure))
    return result


def plot_curves(groups: list[RunGroup], metric: str, path: Path) -> Path | None:
    """Validation ``metric`` against epochs/rounds, one line per run (mean over seeds, ± std shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"valid/{metric}"
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    drawn = False
    x_keys = set()
    for g in groups:
        curves = {}
        for d in g.seed_dirs:
            for line in History(d / "history.jsonl").read():
                if key in line:
                    curves.setdefault(int(line[g.x_key]), []).append(float(line[key]))
        if not curves:
            continue
        xs = sorted(curves)
        mean = np.array([np.mean(curves[x]) for x in xs])
        std = np.array([np.std(curves[x], ddof=1) if len(curves[x]) > 1 else 0.0 for x in xs])
        ax.plot(xs, mean, marker="o", markersize=3, label=f"{g.name} ({g.x_key}s)")
        if len(g.seed_dirs) > 1:
            ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
        x_keys.add(g.x_key)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel(" / ".join(sorted(x_keys)))
    ax.set_ylabel(f"validation {metric}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from ffmrec.report import save_figure

    save_figure(fig, path)
    return path
