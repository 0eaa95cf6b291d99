"""The catalog policy's fixed logit terms, chosen on validation queries: the zero-shot encoder (adapters disabled)
scored on every validation query of the staged ReDial data for a grid of popularity-prior weights and mention-anchor
weights (``model.prior_weight`` x ``model.mention_weight``). Prompts are encoded once; each grid point re-scores
them through the policy's own ``log_probs_of`` and the task's own scoring (``exclude_known`` as in the recipe).

    python benchmarks/fedtrek_anchor_sweep.py [--priors 1.0 1.3 1.6 2.0] [--mentions 0 0.3 0.4 0.5 0.6 0.8]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from ffmrec.fm.catalog_policy import log_prior  # noqa: E402
from ffmrec.recipes import load_recipe  # noqa: E402
from ffmrec.tasks.kto import MAX_SET, build_kto_task, desirable_counts, load_redial_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--priors", type=float, nargs="+", default=[1.0, 1.3, 1.6, 2.0])
    parser.add_argument("--mentions", type=float, nargs="+", default=[0.0, 0.3, 0.4, 0.5, 0.6, 0.8])
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides key=value")
    parser.add_argument("--results", default="fedtrek_anchor_sweep")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_recipe("fedtrek", overrides=["model.prior_weight=1.0", *args.set])  # > 0: the task keeps counts
    data, _ = load_redial_run(config)
    task = build_kto_task(config, data)
    policy = task.policy
    counts = torch.as_tensor(desirable_counts(data.users, data.catalog))
    clients = np.array([c for c, u in enumerate(data.users) if u.valid])
    queries = [(row, int(c), i, e) for row, c in enumerate(clients) for i, e in enumerate(data.users[int(c)].valid)]
    start = time.perf_counter()
    prompts = [task.prompt(c, "valid", i, e) for _, c, i, e in queries]
    known = [task._known(c, e) for _, c, i, e in queries]
    mentions = [task.mentions((c, "valid", i)) for _, c, i, _ in queries]
    with torch.no_grad():
        embeddings = torch.cat([policy.reference_embeddings(prompts[s:s + 32]) for s in range(0, len(prompts), 32)])
    print(f"{len(queries)} validation queries of {len(clients)} seekers encoded in {time.perf_counter() - start:.0f} s",
          flush=True)
    rows = []
    for w in args.priors:
        policy.log_prior = log_prior(counts, w)
        for m in args.mentions:
            policy.config = replace(config.model, prior_weight=w, mention_weight=m)
            cols = task.failed_columns(len(clients))
            with torch.no_grad():
                logp = policy.log_probs_of(embeddings, reference=True, exclude=known, mentions=mentions)
            for (row, _, _, e), top in zip(queries, logp.topk(MAX_SET, dim=-1).indices.tolist()):
                task.score_query(cols, row, top, e)
            metrics = task.summarize(cols, 1)
            rows.append({"dataset": "redial", "method": "catalog-base", "setting": "validation",
                         "protocol": config.task.protocol, "prior_weight": w, "mention_weight": m,
                         "queries": len(queries), "metrics": metrics})
            print(f"prior {w} mention {m}: Hits@10 {metrics['Hits@10']:.3f} MRR {metrics['MRR']:.3f}", flush=True)
    write_results(args.results, rows)


if __name__ == "__main__":
    main()
