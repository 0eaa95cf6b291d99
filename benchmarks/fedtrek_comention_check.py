"""How much a co-mention statistic could add to the catalog policy: on every validation query of the staged ReDial
data, the zero-shot policy's log-probabilities (the recipe's popularity prior and mention anchor included; adapters
disabled) plus ``w`` times a co-mention score, for a grid of ``w``.

The statistic counts, over the *training* data only (desirable real recommendations), how often movie ``m`` was
recommended while movie ``j`` was mentioned in the prompt's conversation window (``C[j, m]``, the movies
:meth:`KTOTask.mentions` records). A query's score of ``m`` is ``sum_j log(1 + C[j, m])`` over the movies its own
window mentions (``sum``) or their mean (``mean``). It is a diagnostic of the headroom a learned mention-to-movie term
could reach, not a federated method: pooled counts of who mentioned what with what are more than the clients share.

    python benchmarks/fedtrek_comention_check.py [--weights 0.5 1 2 4 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from ffmrec.recipes import load_recipe  # noqa: E402
from ffmrec.tasks.kto import MAX_SET, build_kto_task, load_redial_run  # noqa: E402


def validation_queries(task, data) -> tuple:
    """Every validation query of ``data``'s seekers: their clients, ``(row, client, index, example)`` per query, and
    each query's prompt, known movies (the recipe's exclusion) and mentioned movies (catalogue indices)."""
    clients = np.array([c for c, u in enumerate(data.users) if u.valid])
    queries = [(row, int(c), i, e) for row, c in enumerate(clients) for i, e in enumerate(data.users[int(c)].valid)]
    prompts = [task.prompt(c, "valid", i, e) for _, c, i, e in queries]
    known = [task._known(c, e) for _, c, i, e in queries]
    mentions = [task.mentions((c, "valid", i)) for _, c, i, _ in queries]
    return clients, queries, prompts, known, mentions


def scorer(task, num_clients: int, queries: list, known: list):
    """``evaluate(logits)``: the task's metrics of ``(Q, M)`` logits over ``queries``, known movies excluded as the
    recipe scores."""
    def evaluate(logits: torch.Tensor) -> dict:
        cols = task.failed_columns(num_clients)
        for q, (row, _, _, e) in enumerate(queries):
            s = logits[q].clone()
            s[known[q]] = float("-inf")  # exclude_known, as the recipe scores
            task.score_query(cols, row, s.topk(MAX_SET).indices.tolist(), e)
        return task.summarize(cols, 1)
    return evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides key=value")
    parser.add_argument("--results", default="fedtrek_comention_check")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_recipe("fedtrek", overrides=args.set)
    data, _ = load_redial_run(config)
    task = build_kto_task(config, data)
    size = len(data.catalog)
    counts = np.zeros((size, size), np.float32)  # (M, M): mentioned -> recommended, training data only
    start = time.perf_counter()
    points = 0
    for c, user in enumerate(data.users):
        for i, e in enumerate(user.train):
            if e.desirable and e.kind == "real":
                task.prompt(c, "train", i, e)
                for j in set(task.mentions((c, "train", i))):
                    for m in e.movies:
                        counts[j, data.catalog.index[m]] += 1
                points += 1
    clients, queries, prompts, known, mentions = validation_queries(task, data)
    policy = task.policy
    with torch.no_grad():
        embeddings = torch.cat([policy.reference_embeddings(prompts[s:s + 32]) for s in range(0, len(prompts), 32)])
        base = policy.log_probs_of(embeddings, reference=True, exclude=known, mentions=mentions)  # (Q, M)
    log_counts = torch.from_numpy(np.log1p(counts))
    scores = {"sum": torch.stack([log_counts[m].sum(0) if m else torch.zeros(size) for m in mentions]),
              "mean": torch.stack([log_counts[m].mean(0) if m else torch.zeros(size) for m in mentions])}
    print(f"{points} training points, {int((counts > 0).sum())} co-mention pairs; {len(queries)} validation queries "
          f"({sum(bool(m) for m in mentions)} with mentions) in {time.perf_counter() - start:.0f} s", flush=True)

    evaluate = scorer(task, len(clients), queries, known)
    grid = [("policy", 0.0, base)] + [(f"policy + {w} x co-mention {kind}", w, base + w * scores[kind])
                                      for kind in ("sum", "mean") for w in args.weights]
    grid.append(("co-mention sum alone", 0.0, scores["sum"]))
    rows = []
    for name, w, logits in grid:
        metrics = evaluate(logits)
        rows.append({"dataset": "redial", "method": name, "setting": "validation", "protocol": config.task.protocol,
                     "weight": w, "queries": len(queries), "training_points": points, "metrics": metrics})
        print(f"{name}: Hits@10 {metrics['Hits@10']:.3f} MRR {metrics['MRR']:.3f}", flush=True)
    write_results(args.results, rows)


if __name__ == "__main__":
    main()
