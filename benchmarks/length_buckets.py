"""Encoding by length against the padded batch: one fused federated step (the fast simulator's path: a chunk of 256
clients' summed objective and its backward) of each method's recipe on a dataset, timed both ways side by side.

A chunk's rows are left-padded to its longest (beauty: 50 items, while a history is about 9 long); with explicit
dropout noise the model encodes them bucket by bucket of similar length (``ffmrec.data.batching.by_length``), which
is exact up to float rounding. After one untimed round of both, the two ways alternate ``--repeats`` times on the same batch and parameters, in one
process on one thread; rows report the median seconds of each, their ratio, and the largest relative differences of
the summed objective and of its gradient.

    python benchmarks/length_buckets.py [--dataset beauty] [--methods lumos fedcl4srec fedsasrec] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from common import peak_rss_mb, write_results

from ffmrec.methods import build_federated_task
from ffmrec.models.sasrec import SASRec
from ffmrec.recipes import load_recipe


def fused_step(task, batch: dict, shared: dict, own: dict, n: torch.Tensor) -> tuple[float, torch.Tensor, list]:
    start = time.perf_counter()
    loss = task.fused_sum({**shared, **own}, batch, n)
    grads = torch.autograd.grad(loss, list(shared.values()))
    return time.perf_counter() - start, loss.detach(), grads


def measure(method: str, dataset: str, clients: int, repeats: int, seed: int) -> dict:
    config = load_recipe(method, dataset, ["threads=1"])
    task = build_federated_task(config)
    chunk = np.random.default_rng(seed).choice(task.num_clients, min(clients, task.num_clients), replace=False)
    batch = task.collate([task.prepare(int(c), 1) for c in chunk])
    batch["users"] = torch.arange(len(chunk))
    shared = {k: v.detach().requires_grad_(True) for k, v in task.initial_shared().items()}
    own = {k: torch.zeros(len(chunk), *v.shape[1:]).requires_grad_(True)
           for k, v in task.model.named_parameters() if k in task.model.personal_parameters}
    n = torch.as_tensor([task.weight(int(c)) for c in chunk], dtype=torch.float32)
    task.model.train()
    bucketable = SASRec.bucketable
    seconds = {"padded": [], "by_length": []}
    out = {}
    try:
        for rep in range(repeats + 1):  # the first round of both ways warms up, untimed
            for way in ("padded", "by_length"):
                SASRec.bucketable = bucketable if way == "by_length" else (lambda self, compact, noise: False)
                dt, loss, grads = fused_step(task, batch, shared, own, n)
                if rep > 0:
                    seconds[way].append(dt)
                out[way] = (loss, grads)
    finally:
        SASRec.bucketable = bucketable
    (lp, gp), (lb, gb) = out["padded"], out["by_length"]
    ids = batch["input_ids"]
    lengths = (ids > 0).sum(1).float()
    padded, by_length = statistics.median(seconds["padded"]), statistics.median(seconds["by_length"])
    return {"dataset": dataset, "method": method, "setting": "federated", "metrics": {
        "clients": len(chunk), "width": int(ids.shape[1]), "mean_length": round(float(lengths.mean()), 2),
        "view_rows": int(np.prod(batch["views"]["input_ids"].shape[:-1])) if "views" in batch else 0,
        "padded_seconds": round(padded, 3), "by_length_seconds": round(by_length, 3),
        "speedup": round(padded / by_length, 2),
        "objective_rel_diff": float(abs(lp - lb) / abs(lp)),
        "grad_max_rel_diff": max(float((a - b).abs().max() / a.abs().max().clamp(min=1e-12)) for a, b in zip(gp, gb)),
        "repeats": repeats, "peak_rss_mb": peak_rss_mb()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--methods", nargs="+", default=["lumos", "fedcl4srec", "fedsasrec"])
    parser.add_argument("--clients", type=int, default=256, help="clients in the chunk (the recipes' per round)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="length_buckets")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for method in args.methods:
        row = measure(method, args.dataset, args.clients, args.repeats, args.seed)
        print(row, flush=True)
        rows.append(row)
    write_results(args.results, rows)


if __name__ == "__main__":
    main()
