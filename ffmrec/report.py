"""``report.md``: the final metrics, the run's summary, and a plot of the validation curve."""

from __future__ import annotations

import json
from pathlib import Path

from ffmrec.utils.io import History, atomic_write_text


def plot_validation(history: list[dict], path: Path, x_key: str) -> bool:
    """Validation HR@10/NDCG@10 (or the first K found) against epochs or rounds; False when nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for line in history for k in line if k.startswith("valid/") and k[6:].split("@")[0] in ("HR", "NDCG")})
    points = [line for line in history if any(k in line for k in keys)]
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for k in keys:
        xs = [line[x_key] for line in points if k in line]
        ax.plot(xs, [line[k] for line in points if k in line], marker="o", markersize=3, label=k[6:])
    ax.set_xlabel(x_key)
    ax.set_ylabel("validation metric")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return True


def write_report(out_dir: Path, config, metrics: dict[str, float], summary: dict) -> None:
    history = History(out_dir / "history.jsonl").read()
    x_key = "epoch" if config.setting == "centralized" else "round"
    has_plot = plot_validation(history, out_dir / "validation_curve.png", x_key)
    lines = [
        f"# {config.method} on {config.dataset}",
        "",
        f"Setting: {config.setting}. Protocol: leave-one-out, full ranking over all {summary['dataset'].get('items', '?')} "
        f"items, history {'masked' if config.eval.mask_history else 'not masked'}.",
        "",
        "## Test metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in metrics.items()],
        "",
        "## Run",
        "",
        "```json",
        json.dumps(summary, indent=2, default=str),
        "```",
        "",
    ]
    if has_plot:
        lines += ["## Validation curve", "", "![validation curve](validation_curve.png)", ""]
    atomic_write_text(out_dir / "report.md", "\n".join(lines))
