"""Build BENCHMARKS.md from benchmarks/results/*.json, beside the published anchors (../shared/ANCHORS.md).

    python benchmarks/make_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

from common import RESULTS

ROOT = Path(__file__).resolve().parent.parent

# Published reference numbers (full ranking, leave-one-out), as compiled in ../shared/ANCHORS.md.
ANCHORS = {
    ("beauty", "centralized"): "SASRec, RecBole, CE: HR@10 0.083 / NDCG@10 0.0416 (RecBole issue 1290); SASRec as reported in papers 0.0605 / 0.0318",
    ("sports", "centralized"): "SASRec, RecBole, CE: HR@10 0.048 / NDCG@10 0.0227 (RecBole issue 1290)",
    ("ml-1m", "centralized"): "SASRec+ (CE), full ML-1M: HR@10 0.3152 / NDCG@10 0.1821 (RecSys'23 reproducibility study); ours uses the staged partial file (users 1-2999)",
}

PROTOCOL = ("leave-one-out (last item = test, second-to-last = validation), full ranking over all items, the user's own "
            "history masked (RecBole's convention), pessimistic ties; model selected on validation NDCG@10")


def fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def derived(name: str, doc: dict) -> list[str]:
    """Figures computed from a results file's rows (nothing that is not in the JSON)."""
    if name != "fedsasrec":
        return []
    out = []
    by = {(r["dataset"], r["method"]): r["metrics"] for r in doc["rows"] if "NDCG@10" in r["metrics"]}
    for (dataset, method), m in by.items():
        central = by.get((dataset, "sasrec"))
        if method == "fedsasrec" and central:
            out.append(f"- {dataset}: FedSASRec NDCG@10 / centralized SASRec NDCG@10 = {m['NDCG@10'] / central['NDCG@10']:.3f}, "
                       f"HR@10 ratio {m['HR@10'] / central['HR@10']:.3f}")
    return out


def section(doc: dict, columns: list[str], title: str, notes: list[str]) -> list[str]:
    lines = [f"## {title}", "", f"- command: `{doc['command']}`", f"- machine: {doc['machine']}", f"- date: {doc['date']}",
             *[f"- {n}" for n in notes], "",
             "| dataset | method | setting | " + " | ".join(columns) + " | anchor |",
             "|---|---|---|" + "---|" * len(columns) + "---|"]
    for row in doc["rows"]:
        m = row["metrics"]
        anchor = ANCHORS.get((row["dataset"], row["setting"]), "")
        lines.append(f"| {row['dataset']} | {row['method']} | {row['setting']} | "
                     + " | ".join(fmt(m.get(c, "")) for c in columns) + f" | {anchor} |")
    return lines + [""]


def main() -> None:
    out = ["# Benchmarks", "",
           "Every figure below is read from `benchmarks/results/*.json`, written by the script named in its section; "
           "regenerate this file with `python benchmarks/make_table.py`. Anchors are the published numbers compiled in "
           "`../shared/ANCHORS.md`. Speeds are ratios measured side by side in one run on the same machine. The runs of "
           "2026-11-23 shared the 2 cores with each other (two or three benchmark processes at once), so their "
           "seconds are inflated; the ratios compare figures taken under the same load.", ""]
    quality = ["HR@10", "NDCG@10", "HR@20", "NDCG@20"]
    specs = {
        "sasrec_centralized": (quality + ["epochs", "best_epoch", "seconds_per_epoch", "peak_rss_mb"],
                               "Centralized SASRec", [f"protocol: {PROTOCOL}", "max length 50 (Amazon), 200 (MovieLens); full-catalogue cross-entropy",
                               "a run ends by early stopping (patience 3 evaluations, every 2 epochs) or by its epoch budget; the command's DATASET:train.epochs=N ended those runs at the epoch they had reached in this session, so where best_epoch equals epochs the model was still improving",
                               "ml-1m: the staged partial ratings file (users 1-2999), so not comparable with the full-ML-1M anchor"]),
        "fedsasrec": (quality + ["round_over_centralized_epoch", "round_seconds", "centralized_epoch_seconds", "rounds",
                                 "best_round", "clients_per_round", "epochs", "peak_rss_mb"],
                      "FedSASRec against centralized SASRec (same run)", [f"protocol: {PROTOCOL}",
                      "federated: one client per user, one local SGD step per round, FedAdam on the server; evaluated with the global model plus each user's personal vector",
                      "cost row: one federated round over all users (fast simulator, fused FedAvg path) against one centralized epoch, medians of alternating repeats, torch on 1 thread (OMP_NUM_THREADS=1); beauty's row was written by an earlier invocation of the same script (`--repeats 2 --set threads=1`) and kept by `--reuse-cost`, ml-1m's by this one (`repeats` in the row)",
                      "quality rows: the centralized run is the same deterministic run folder as in the section above (resumed: nothing left to train); wall_seconds in the JSON is that of the resuming invocation",
                      "ml-1m: 64 clients per round; the run was ended at round 602 by the session's time (ml-1m:federated.rounds=602), like the centralized one at epoch 16: both still improving, so the ml-1m ratio compares two unconverged models"]),
        "federated_throughput": (["clients_per_round", "fast_seconds", "fast_clients_per_second", "flower_sim_seconds",
                                  "flower_sim_clients_per_second", "speedup_vs_flower_sim", "peak_rss_mb"],
                                 "Client updates per second: fast simulator vs Flower simulation", [
                                     "workload tiny: FedSASRec's client update on a synthetic 7,000-user, 500-item dataset with about 10k shared parameters (the size of the anchor's trivial client); workload beauty: the fedsasrec recipe (d=64, 2 blocks, 12,101 items, 0.8M shared parameters)",
                                     "Flower: ffmrec's ServerApp/ClientApp in flwr.simulation (Ray, 2 CPUs, 1 per ClientApp actor, 500 SuperNodes), time from the first push to the last reply of the round's train messages; fast: one train_round call after a warm-up",
                                     "anchor: Flower 1.41 simulation of a trivial client (one SGD step on a 10k-parameter model with Flower's own strategy), 3.2-8.0 ms per client, 48 s per 6,000-client round (../shared/ANCHORS.md); our Flower figures are far slower per client than that anchor: each message runs ffmrec's whole client update (torch.func, ArrayRecord conversion) in one of 2 Ray actors, on a machine shared with other benchmark runs"]),
    }
    specs["federated_throughput_beauty"] = (specs["federated_throughput"][0], specs["federated_throughput"][1]
                                            + " (beauty workload)", specs["federated_throughput"][2])
    for name, (columns, title, notes) in specs.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            doc = json.loads(path.read_text())
            out += section(doc, columns, title, notes)
            out += derived(name, doc) + ([""] if derived(name, doc) else [])
        else:
            out += [f"## {title}", "", f"Not measured yet: run `python benchmarks/{name}.py`.", ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(out))
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
