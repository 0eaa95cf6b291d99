"""Client updates per second: ffmrec's fast simulator against Flower's simulation engine, same client update.

Both engines run FedSASRec's client update (one local SGD step of SASRec on one user's history, full-catalogue
cross-entropy) for the same sampled clients from the same global model, at 100, 1,000 and 6,000 clients per round, on
two workloads: ``beauty`` (the fedsasrec recipe as shipped: d=64, 2 blocks, 12,101 items, 0.8M shared parameters) and
``tiny`` (the anchor's trivial client: about 10k shared parameters, a synthetic 7,000-user, 500-item dataset). Flower: ffmrec's ServerApp/ClientApp in ``flwr.simulation`` (Ray backend, 2 CPUs, one ClientApp actor per CPU,
``--supernodes`` SuperNodes (500), each holding the users u with u mod N = its partition); the time is that of the round's
train messages, from the first push to the last reply (Ray start-up and task loading excluded). Fast simulator: one
``train_round`` call (chunked, fused FedAvg path), after one warm-up round. Writes benchmarks/results/federated_throughput.json.

    python benchmarks/federated_throughput.py [--sizes 100 1000 6000] [--workloads tiny beauty] [--supernodes 500]
        [--name federated_throughput]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import peak_rss_mb, write_results

from ffmrec.federated.sampling import sample_clients
from ffmrec.recipes import load_recipe

SEED = 0


def rounds_for(sizes, num_users):
    """One round per size; round r draws its clients from (SEED, r), identically in both engines."""
    return [(r, sample_clients(num_users, n, r, SEED)) for r, n in enumerate(sizes, start=1)]


def throughput_driver(flat: dict, executor) -> dict:
    """Flower ServerApp driver: time each round's train messages (called inside Flower's simulation engine)."""
    from ffmrec.federated.engines.flower.engine import FlowerEngine, _run_config, _task

    config = _run_config(flat)
    task = _task(config)
    engine = FlowerEngine(executor, task.model.num_items)
    shared = task.initial_shared()
    sizes = [int(s) for s in str(flat["sizes"]).split(",")]
    engine.train_round(0, list(range(min(16, task.num_clients))), shared, config.federated.client, False)  # warm-up
    seconds = {}
    for r, ids in rounds_for(sizes, task.num_clients):
        t0 = time.perf_counter()
        result = engine.train_round(r, ids, shared, config.federated.client, need_updates=False)
        seconds[str(len(ids))] = time.perf_counter() - t0
        print(f"flower-sim: {len(ids)} clients in {seconds[str(len(ids))]:.1f}s ({result.num_ok} ok)", flush=True)
    return seconds


def fast_seconds(config, sizes) -> tuple[dict[int, float], int]:
    from ffmrec.data import load_dataset
    from ffmrec.eval.protocol import LeaveOneOut
    from ffmrec.federated.engines.fast import FastSimulator
    from ffmrec.federated.run import build_task

    dataset = load_dataset(config.dataset, options=config.data)
    task = build_task(config, dataset, LeaveOneOut(dataset.sequences()))
    engine = FastSimulator(task, chunk_size=config.federated.chunk_size)
    shared = task.initial_shared()
    engine.train_round(0, list(range(min(256, task.num_clients))), shared, config.federated.client, False)  # warm-up
    out = {}
    for r, ids in rounds_for(sizes, task.num_clients):
        t0 = time.perf_counter()
        engine.train_round(r, ids, shared, config.federated.client, need_updates=False)
        out[len(ids)] = time.perf_counter() - t0
        print(f"fast: {len(ids)} clients in {out[len(ids)]:.2f}s", flush=True)
    return out, sum(v.numel() for v in shared.values())


TINY_MODEL = ["model.max_len=20", "model.hidden_size=16", "model.num_layers=1", "model.inner_size=32",
              "model.num_heads=1"]


def tiny_dataset(folder: Path, num_users: int = 7000, num_items: int = 500, seed: int = 0) -> Path:
    """A synthetic interactions file (benchmark fixture, written at run time)."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,timestamp"]
    for u in range(num_users):
        for t, i in enumerate(rng.integers(1, num_items + 1, size=rng.integers(5, 16))):
            rows.append(f"{u},{i},{t}")
    path = folder / "tiny_interactions.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def run_workload(workload: str, sizes: list[int], supernodes: int, skip_flower: bool) -> list[dict]:
    if workload == "tiny":
        dataset, overrides = str(tiny_dataset(Path(tempfile.mkdtemp(prefix="ffmrec-tiny-")))), TINY_MODEL
    else:
        dataset, overrides = workload, []
    chunk = 2048 if workload == "tiny" else 256  # a tiny model is overhead-bound: bigger chunks
    config = load_recipe("fedsasrec", dataset, [*overrides, f"federated.chunk_size={chunk}"])

    fast, shared_params = fast_seconds(config, sizes)
    flower: dict[str, float] = {}
    if not skip_flower:
        from ffmrec.federated.engines.flower.engine import flower_run_config
        from ffmrec.federated.engines.flower.simulation import run_flower_simulation

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        flat = flower_run_config(config, Path(tempfile.mkdtemp(prefix="ffmrec-tput-")))
        flat.update({"driver": "federated_throughput:throughput_driver", "sizes": ",".join(map(str, sizes)),
                     "client-timeout": 600.0})
        flower = run_flower_simulation(flat, supernodes)
    rows = []
    for n in sizes:
        metrics = {"clients_per_round": n, "fast_seconds": round(fast[n], 3),
                   "fast_clients_per_second": round(n / fast[n], 1)}
        if str(n) in flower:
            f = flower[str(n)]
            metrics.update({"flower_sim_seconds": round(f, 2), "flower_sim_clients_per_second": round(n / f, 2),
                            "speedup_vs_flower_sim": round(f / fast[n], 1)})
        metrics["peak_rss_mb"] = round(peak_rss_mb(), 1)
        rows.append({"dataset": "beauty" if workload == "beauty" else "synthetic", "method": f"fedsasrec-{workload}",
                     "setting": "federated", "metrics": {**metrics, "shared_parameters": shared_params},
                     "flower": {"supernodes": supernodes, "ray_cpus": 2, "cpus_per_client": 1}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 1000, 6000])
    parser.add_argument("--workloads", nargs="+", default=["tiny", "beauty"], choices=["tiny", "beauty"])
    parser.add_argument("--supernodes", type=int, default=500,
                        help="Flower SuperNodes; a node handles one message at a time, so 500 keeps far more messages "
                             "in flight than the 2 Ray actors can run")
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--name", default="federated_throughput", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    rows = []
    for workload in args.workloads:
        rows += run_workload(workload, args.sizes, args.supernodes, args.skip_flower)
        write_results(args.name, rows)


if __name__ == "__main__":
    main()
