"""``report.md``: the final metrics, the run's summary, and plots of the validation curve and the training loss."""

from __future__ import annotations

import json
from pathlib import Path

from ffmrec.utils.io import History, atomic_write_text


def plot_validation(history: list[dict], path: Path, x_key: str) -> bool:
    """Validation HR@10/NDCG@10 (or the first K found) against epochs or rounds; False when nothing to plot."""
    keys = sorted({k for line in history for k in line if k.startswith("valid/") and k[6:].split("@")[0] in ("HR", "NDCG")})
    series = {k[6:]: [(line[x_key], line[k]) for line in history if k in line] for k in keys}
    return _plot_curves(series, path, x_key, "validation metric")


def plot_training_loss(history: list[dict], path: Path, x_key: str) -> bool:
    """The mean training loss of every epoch or round; False when no line has one."""
    points = [(line[x_key], line["loss"]) for line in history if isinstance(line.get("loss"), (int, float))]
    return _plot_curves({"training loss": points} if points else {}, path, x_key, "training loss")


def plot_federated(history: list[dict], out_dir: Path, x_key: str) -> list[tuple[str, str]]:
    """Federated runs: megabytes sent per round (up and down) and failed clients per round, the same series
    TensorBoard gets; ``[(title, file)]`` of the figures drawn."""
    traffic = {f"{k[6:]} (MB)": [(line[x_key], line[k] / 1e6) for line in history if k in line]
               for k in ("bytes_up", "bytes_down")}
    failed = {"failed clients": [(line[x_key], line["failed"]) for line in history if "failed" in line]}
    drawn = []
    if _plot_curves(traffic, out_dir / "bytes_per_round.png", x_key, "MB per round"):
        drawn.append(("Bytes per round", "bytes_per_round.png"))
    if _plot_curves(failed, out_dir / "client_failures.png", x_key, "failed clients"):
        drawn.append(("Client failures", "client_failures.png"))
    return drawn


def _plot_curves(series: dict[str, list[tuple[int, float]]], path: Path, x_key: str, ylabel: str) -> bool:
    fig = curves_figure(series, x_key, ylabel)
    if fig is None:
        return False
    save_figure(fig, path)
    return True


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically (a temporary file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def curves_figure(series: dict[str, list[tuple[int, float]]], x_key: str, ylabel: str):
    """A figure of ``{label: [(epoch or round, value), ...]}`` on an integer x axis, every point marked (larger in
    short runs), so that a run with one point shows a visible dot at a whole-numbered epoch/round; None if empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    xs = sorted({x for points in series.values() for x, _ in points})
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    size = 6 if max(len(points) for points in series.values()) <= 20 else 3
    for name, points in series.items():
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", markersize=size, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if xs[0] == xs[-1]:  # one epoch/round: a window around it, not a fractional axis
        ax.set_xlim(xs[0] - 1, xs[0] + 1)
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def write_report(out_dir: Path, config, metrics: dict[str, float], summary: dict) -> None:
    history = History(out_dir / "history.jsonl").read()
    x_key = "round" if config.setting == "federated" else "epoch"
    has_plot = plot_validation(history, out_dir / "validation_curve.png", x_key)
    has_loss = plot_training_loss(history, out_dir / "training_loss.png", x_key)
    federated_plots = plot_federated(history, out_dir, x_key) if x_key == "round" else []
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
    if has_loss:
        lines += ["## Training loss", "", "![training loss](training_loss.png)", ""]
    for title, file in federated_plots:
        lines += [f"## {title}", "", f"![{title.lower()}]({file})", ""]
    atomic_write_text(out_dir / "report.md", "\n".join(lines))
