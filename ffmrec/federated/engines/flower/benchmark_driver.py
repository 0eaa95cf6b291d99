"""A timing driver for Flower's engines (``benchmarks/federated_throughput.py``), and a task factory for virtual nodes.

:func:`timing_driver` is a ServerApp driver (``driver`` in the flat run config): instead of a federated run it times
:meth:`~ffmrec.federated.engines.flower.engine.FlowerEngine.train_round`, from the first push to the last decoded
reply, for the client counts in ``benchmark-sizes`` (comma-separated), ``benchmark-repeats`` rounds each, after one
warm-up round of ``benchmark-warmup`` clients. Round ``r`` trains the clients
``sample_clients(num_clients, n, r, benchmark-seed)`` from the initial shared parameters with ``want_records=False``,
exactly what the fast simulator is timed on. A size whose predicted round time (the round time of the largest size
measured so far, scaled by the client count) exceeds ``benchmark-max-round-seconds`` is skipped and reported as such.

With ``benchmark-fast-threads=T`` (> 0) every Flower round is followed by the fast simulator's round on the same
clients, in this process on T torch threads while Flower's clients are idle: the two engines are then timed minutes
apart at most, under the same load on a shared machine. The returned dict (written to ``output-dir`` by the ServerApp
when that is set) is::

    {"num_clients": int, "warmup_seconds": float,
     "rounds": {"<n>": {"seconds": [..], "ok": [..], "failed": [..], "errors": [..], "fast_seconds": [..]}},
     "skipped": {"<n>": "reason"},
     "flower_intervals": [[t0, t1], ..],   # wall-clock time (time.time()) of each timed Flower round
     "fast_started_at": float | None}      # when this process first ran the fast simulator

:func:`shared_task_factory` is the simulation engine's task factory, which ffmrec's own flower-sim runs use too: it
builds the whole task once per process and hands the same object to every virtual SuperNode the process serves (each
node still keeps its own personal state and trains only its own users).
"""

from __future__ import annotations

import time

from ffmrec.federated.engines.flower.engine import build_shared_task, server_engine
from ffmrec.federated.sampling import sample_clients


def shared_task_factory(flat: dict, partition: tuple[int, int] | None):
    """The simulation engine's task factory (:func:`~ffmrec.federated.engines.flower.engine.build_shared_task`)."""
    return build_shared_task(flat, partition)


def _ints(value) -> list[int]:
    return [int(v) for v in str(value).split(",") if v.strip()]


def planned_rounds(num_clients: int, sizes: list[int], repeats: int, seed: int) -> list[tuple[int, int, list[int]]]:
    """``(server_round, n, client ids)`` of every timed round (round 1 is the warm-up); the same for every engine."""
    plan = []
    for i, n in enumerate(sizes):
        for k in range(repeats):
            server_round = 2 + i * repeats + k
            plan.append((server_round, n, sample_clients(num_clients, n, server_round, seed)))
    return plan


def warmup_clients(num_clients: int, n: int, seed: int) -> list[int]:
    return sample_clients(num_clients, min(n, num_clients), 10**6, seed)


def _paired_fast_engine(task, config, threads: int, warmup: list[int], shared):
    """The fast simulator of the same task in this process (warmed up); returns ``(engine, wall-clock start)``."""
    import torch

    from ffmrec.federated.engines.fast import FastSimulator

    started = time.time()
    torch.set_num_threads(threads)
    fast = FastSimulator(task, chunk_size=config.federated.chunk_size)
    fast.train_round(1, warmup, shared, config.federated.client, False)
    return fast, started


def timing_driver(flat: dict, executor) -> dict:
    """Time ``FlowerEngine.train_round`` (see the module docstring); returns the timings."""
    config, task, engine = server_engine(flat, executor)
    shared = task.initial_shared()
    cfg = config.federated.client
    seed = int(flat.get("benchmark-seed", 0))
    repeats = int(flat.get("benchmark-repeats", 1))
    budget = float(flat.get("benchmark-max-round-seconds", float("inf")))
    out: dict = {"num_clients": task.num_clients, "rounds": {}, "skipped": {}}

    warmup = warmup_clients(task.num_clients, int(flat.get("benchmark-warmup", 16)), seed)
    t0 = time.perf_counter()
    result = engine.train_round(1, warmup, shared, cfg, want_records=False)
    out["warmup_seconds"] = time.perf_counter() - t0
    out["warmup_failed"] = len(result.failures)
    print(f"[timing-driver] warm-up: {len(warmup)} clients in {out['warmup_seconds']:.2f}s", flush=True)
    pair_threads = int(flat.get("benchmark-fast-threads", 0))
    fast = None
    out.update(flower_intervals=[], fast_started_at=None)
    largest: tuple[int, float] | None = None  # (n, seconds) of the largest size timed so far
    for server_round, n, ids in planned_rounds(task.num_clients, _ints(flat["benchmark-sizes"]), repeats, seed):
        if str(n) in out["skipped"]:
            continue
        predicted = largest[1] * n / largest[0] if largest else 0.0
        if str(n) not in out["rounds"] and predicted > budget:
            out["skipped"][str(n)] = (f"predicted {predicted:.0f} s per round ({largest[1]:.1f} s at {largest[0]} "
                                      f"clients) > benchmark-max-round-seconds={budget:g}")
            print(f"[timing-driver] {n} clients: skipped ({out['skipped'][str(n)]})", flush=True)
            continue
        row = out["rounds"].setdefault(str(n), {"seconds": [], "ok": [], "failed": [], "errors": [], "fast_seconds": []})
        wall0, t0 = time.time(), time.perf_counter()
        result = engine.train_round(server_round, ids, shared, cfg, want_records=False)
        seconds = time.perf_counter() - t0
        out["flower_intervals"].append([wall0, time.time()])
        ok = len(result.records) + sum(p.count for p in result.partials)
        row["seconds"].append(seconds)
        row["ok"].append(ok)
        row["failed"].append(len(result.failures))
        row["errors"] += sorted({e.splitlines()[0] for _, e in result.failures})[:2]
        if largest is None or n >= largest[0]:
            largest = (n, seconds)
        print(f"[timing-driver] round {server_round}: {n} clients in {seconds:.2f}s ({ok} ok, "
              f"{len(result.failures)} failed)", flush=True)
        if pair_threads > 0:
            if fast is None:
                fast = _paired_fast_engine(task, config, pair_threads, warmup, shared)
                out["fast_started_at"] = fast[1]
            t0 = time.perf_counter()
            fast[0].train_round(server_round, ids, shared, cfg, False)
            row["fast_seconds"].append(time.perf_counter() - t0)
            print(f"[timing-driver] round {server_round}: {n} clients in {row['fast_seconds'][-1]:.3f}s on the fast "
                  "simulator", flush=True)
    return out


def linear_from_flat(flat: dict):
    """:func:`ffmrec.tasks.linear.from_flat` with the nodes' ``chunk-size`` from the flat config (default 128)."""
    from ffmrec.tasks.linear import from_flat

    config, build = from_flat(flat)
    config.federated.chunk_size = int(flat.get("chunk-size", config.federated.chunk_size))
    return config, build


# --- the anchor's client, written the plain Flower way -----------------------------------------------------------------
def plain_linear_apps(*, num_nodes: int, sizes: list[int], repeats: int, warmup: int, dim: int, out: int,
                      examples: int, lr: float, max_round_seconds: float, on_result):
    """A plain Flower ClientApp (one SGD step of ``nn.Linear(dim, out, bias=False)`` on the node's ``examples`` points,
    ArrayRecord in and out, as in Flower's PyTorch quickstart) and a ServerApp timing Flower's own
    ``FedAvg.start(num_rounds=1)`` at each size (``n`` of ``num_nodes`` virtual SuperNodes sampled by FedAvg)."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        import torch

        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(int(context.node_config["partition-id"]))
        x, y = torch.randn(examples, dim, generator=g), torch.randn(examples, out, generator=g)
        model = torch.nn.Linear(dim, out, bias=False)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        optimizer = torch.optim.SGD(model.parameters(), lr=float(msg.content["config"]["lr"]))
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        metrics = MetricRecord({"train_loss": float(loss.item()), "num-examples": examples})
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        import torch
        from flwr.serverapp.strategy import FedAvg

        initial = ArrayRecord(torch.nn.Linear(dim, out, bias=False).state_dict())
        train_config = ConfigRecord({"lr": float(lr)})

        def one_round(n: int) -> float:
            strategy = FedAvg(fraction_train=(n + 0.5) / num_nodes, fraction_evaluate=0.0, min_train_nodes=n,
                              min_available_nodes=num_nodes)
            t0 = time.perf_counter()
            strategy.start(grid, initial, num_rounds=1, train_config=train_config)
            return time.perf_counter() - t0

        result: dict = {"num_clients": num_nodes, "rounds": {}, "skipped": {}}
        result["warmup_seconds"] = one_round(min(warmup, num_nodes))
        per_client = 0.0
        for n in sizes:
            if n * per_client > max_round_seconds:
                result["skipped"][str(n)] = (f"predicted {n * per_client:.0f} s per round > "
                                             f"max_round_seconds={max_round_seconds:g}")
                continue
            for _ in range(repeats):
                seconds = one_round(n)
                result["rounds"].setdefault(str(n), []).append(seconds)
                per_client = max(per_client, seconds / n)
                print(f"[plain-flower] {n} clients in {seconds:.2f}s", flush=True)
        on_result(result)

    return server_app, client_app


def run_plain_linear_simulation(*, num_nodes: int, ray_num_cpus: int = 2, **kw) -> dict:
    """:func:`plain_linear_apps` in Flower's simulation engine (Ray, ``ray_num_cpus`` CPUs, 1 per ClientApp actor)."""
    import ray
    from flwr.simulation import run_simulation

    from ffmrec.federated.engines.flower.simulation import backend_config

    results: list = []
    server_app, client_app = plain_linear_apps(num_nodes=num_nodes, on_result=results.append, **kw)
    try:
        run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_nodes, backend_name="ray",
                       backend_config=backend_config(1, 0.0, ray_num_cpus))
    finally:
        if ray.is_initialized():
            ray.shutdown()
    if not results:
        raise RuntimeError("the plain Flower simulation ended without a result (see the log above)")
    return results[0]
