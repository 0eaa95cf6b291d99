"""Client updates per second, side by side: ffmrec's fast engine, Flower's simulation engine and Flower's deployment engine.

Every engine trains the same sampled clients from the same global model (round ``r`` draws
``sample_clients(num_clients, n, r, seed)``; round 1 is a warm-up round), with one local SGD step each and no per-client
records wanted (partial sums: the path FedAvg/FedAdam take in a real run). Workloads:

``linear``  the anchor's trivial client (../shared/ANCHORS.md): one SGD step of a 100x100 linear layer (LinearTask,
            dim=100, out=100, 8 examples per client, 10,000 shared parameters), 7,000 clients;
``tiny``    FedSASRec's client update on a synthetic 7,000-user, 500-item dataset (d=16, 1 block, max_len 20: about
            10k shared parameters);
``beauty``  FedSASRec as the fedsasrec recipe ships it (d=64, 2 blocks, 12,101 items, 0.8M shared parameters), 22,363
            clients.

Engines (``--engines``):

``fast``              ``FastSimulator.train_round`` (vectorised, fused path), torch on ``--threads`` (1); timed alone in
                      a process of its own, and right after every Flower round on the same clients in that Flower
                      job's ServerApp process (Flower's clients idle meanwhile), which is the figure the speedups use;
``flower-sim``        ffmrec's ServerApp/ClientApp in ``flwr.simulation`` (Ray backend with the machine's 2 CPUs, client
                      resources num_cpus=1, so 2 ClientApp actors, as Flower's documentation configures it), per-user
                      messages (one message per client, the standard Flower way; ``--sim-nodes`` (50) virtual SuperNodes)
                      and cohort messages (``--cohort-nodes`` SuperNodes, one message per node per round);
``flower-plain``      the anchor itself, for the linear workload only: a plain Flower ClientApp (one SGD step of
                      ``nn.Linear(100, 100)``, ArrayRecord in and out) under Flower's own ``FedAvg.start``, one virtual
                      SuperNode per client, same Ray resources;
``flower-deploy``     a SuperLink and ``--cohort-nodes`` SuperNodes as separate processes (TLS, SuperNode auth), ffmrec's
                      apps via ``flwr run``; cohort messages at every size, per-user messages at ``--deploy-per-user-sizes``
                      (every message starts a ``flwr-clientapp`` process).

Flower's round time is that of ``FlowerEngine.train_round`` inside the ServerApp (the timing driver
``ffmrec.federated.engines.flower.benchmark_driver:timing_driver``), from the first push to the last decoded reply; Ray,
SuperLink and SuperNode start-up are excluded. Each (workload, engine, mode) runs in its own child process, whose
process tree (Ray's raylet and actors, the SuperLink, SuperNodes and ClientApp processes) is sampled for its peak
resident memory. The nodes' device-state files go to ``--run-root`` (tmpfs by default). Writes
benchmarks/results/federated_throughput.json.

    python benchmarks/federated_throughput.py [--workloads linear tiny beauty] [--sizes 100 1000 6000]
        [--engines fast flower-sim flower-plain flower-deploy] [--budget-minutes 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import write_results

SEED = 0
HERE = Path(__file__).resolve().parent
TINY_MODEL = ["model.max_len=20", "model.hidden_size=16", "model.num_layers=1", "model.inner_size=32",
              "model.num_heads=1"]
WORKLOADS = {
    "linear": ("synthetic", "linear-100x100", ("the anchor's trivial client: one SGD step of a 100x100 linear layer "
                                               "(ffmrec.tasks.linear, 8 examples per client), 7,000 clients, 10,000 "
                                               "shared parameters")),
    "tiny": ("synthetic", "fedsasrec-tiny", ("FedSASRec client update on a synthetic 7,000-user, 500-item dataset "
                                             "(d=16, 1 block, max_len 20)")),
    "beauty": ("beauty", "fedsasrec", ("FedSASRec as the fedsasrec recipe ships it (d=64, 2 blocks, max_len 50, "
                                       "12,101 items), 22,363 clients")),
}
CHUNK = {"linear": 8192, "tiny": 2048, "beauty": 256}  # a tiny model is overhead-bound: bigger chunks
LINEAR = {"method-resolver": "ffmrec.federated.engines.flower.benchmark_driver:linear_from_flat", "num-users": 7000,
          "dim": 100, "out": 100, "examples": 8, "seed": SEED, "lr": 0.1}
DRIVER = "ffmrec.federated.engines.flower.benchmark_driver"


# --- workloads --------------------------------------------------------------------------------------------------------
def tiny_dataset(num_users: int = 7000, num_items: int = 500, seed: int = 0) -> Path:
    """A synthetic interactions file (benchmark fixture, written at run time at a fixed path: every process reads it)."""
    path = Path(tempfile.gettempdir()) / "ffmrec-throughput" / f"tiny_{num_users}x{num_items}_{seed}.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    rows = ["user,item,timestamp"]
    for u in range(num_users):
        for t, i in enumerate(rng.integers(1, num_items + 1, size=rng.integers(5, 16))):
            rows.append(f"{u},{i},{t}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(rows) + "\n")
    tmp.replace(path)
    return path


def sequential_config(workload: str, extra: list[str] = ()):
    from ffmrec.recipes import load_recipe

    dataset, overrides = (str(tiny_dataset()), TINY_MODEL) if workload == "tiny" else (workload, [])
    return load_recipe("fedsasrec", dataset, [*overrides, f"federated.chunk_size={CHUNK[workload]}", *extra])


def flower_flat(workload: str, run_dir: Path, mode: str, nodes: int) -> tuple[dict, object]:
    """The flat Flower run config of a workload (and the config object for an in-process ServerApp, or None)."""
    common = {"client-timeout": 900.0, "discovery-timeout": 600.0, "run-dir": str(run_dir)}
    if workload == "linear":
        return {**LINEAR, **common, "message-mode": mode, "chunk-size": CHUNK[workload]}, None
    from ffmrec.federated.engines.flower.engine import flower_run_config

    config = sequential_config(workload, [f"federated.message_mode={mode}", f"federated.num_supernodes={nodes}"])
    return {**flower_run_config(config, run_dir), **common}, config


# --- one measurement (runs in a child process) --------------------------------------------------------------------------
def job_fast(job: dict) -> dict:
    import torch

    from ffmrec.federated.engines.fast import FastSimulator
    from ffmrec.federated.engines.flower.benchmark_driver import planned_rounds, warmup_clients

    torch.set_num_threads(job["threads"])
    workload = job["workload"]
    if workload == "linear":
        from ffmrec.federated.engines.flower.benchmark_driver import linear_from_flat

        config, build = linear_from_flat({**LINEAR, "chunk-size": CHUNK[workload]})
        task = build(config, None)
    else:
        from ffmrec.methods import build_federated_task

        config = sequential_config(workload)
        task = build_federated_task(config)
    engine = FastSimulator(task, chunk_size=config.federated.chunk_size)
    shared = task.initial_shared()
    cfg = config.federated.client
    assert engine.cohort.can_fuse(cfg, False), "the fast engine should take its fused path here"
    engine.train_round(1, warmup_clients(task.num_clients, job["warmup"], SEED), shared, cfg, False)
    rounds: dict[str, list[float]] = {}
    for server_round, n, ids in planned_rounds(task.num_clients, job["sizes"], job["repeats"], SEED):
        t0 = time.perf_counter()
        result = engine.train_round(server_round, ids, shared, cfg, False)
        rounds.setdefault(str(n), []).append(time.perf_counter() - t0)
        assert not result.failures and sum(p.count for p in result.partials) == n
        print(f"fast {workload}: round {server_round}, {n} clients in {rounds[str(n)][-1]:.3f}s", flush=True)
    return {"rounds": rounds, "skipped": {}, "num_clients": task.num_clients,
            "shared_parameters": int(sum(v.numel() for v in shared.values()))}


def _timing_flat(job: dict, flat: dict) -> dict:
    return {**flat, "driver": f"{DRIVER}:timing_driver", "benchmark-sizes": ",".join(map(str, job["sizes"])),
            "benchmark-repeats": job["repeats"], "benchmark-warmup": job["warmup"], "benchmark-seed": SEED,
            "benchmark-max-round-seconds": float(job["max_round_seconds"]), "benchmark-fast-threads": job["threads"]}


def _flower_rounds(out: dict) -> dict:
    bad = {n: r for n, r in out["rounds"].items() if any(r["failed"])}
    if bad:
        raise RuntimeError(f"failed clients in a timed round: {bad}")
    return {"rounds": {n: r["seconds"] for n, r in out["rounds"].items()}, "skipped": out.get("skipped", {}),
            "fast_rounds": {n: r["fast_seconds"] for n, r in out["rounds"].items() if r.get("fast_seconds")},
            "num_clients": out["num_clients"], "warmup_seconds": out.get("warmup_seconds"),
            "flower_intervals": out.get("flower_intervals", []), "fast_started_at": out.get("fast_started_at")}


def job_flower_sim(job: dict) -> dict:
    from ffmrec.federated.engines.flower.engine import CONFIG_OBJECT_KEY
    from ffmrec.federated.engines.flower.simulation import run_flower_simulation

    run_dir = Path(tempfile.mkdtemp(prefix="ffmrec-tput-sim-", dir=job["run_root"]))
    flat, config = flower_flat(job["workload"], run_dir, job["mode"], job["nodes"])
    flat = _timing_flat(job, {**flat, "task-factory": f"{DRIVER}:shared_task_factory"})
    extra = {CONFIG_OBJECT_KEY: config} if config is not None else {}
    out = run_flower_simulation(flat, job["nodes"], num_cpus_per_client=1, ray_num_cpus=job["ray_cpus"],
                                server_extra=extra)
    return _flower_rounds(out)


def job_flower_plain(job: dict) -> dict:
    from ffmrec.federated.engines.flower.benchmark_driver import run_plain_linear_simulation

    return run_plain_linear_simulation(num_nodes=job["nodes"], sizes=job["sizes"], repeats=job["repeats"],
                                       warmup=job["warmup"], dim=LINEAR["dim"], out=LINEAR["out"],
                                       examples=LINEAR["examples"], lr=LINEAR["lr"], ray_num_cpus=job["ray_cpus"],
                                       max_round_seconds=job["max_round_seconds"])


def job_flower_deploy(job: dict) -> dict:
    from ffmrec.federated.engines.flower.deploy import DeploymentCluster, read_result

    run_dir = Path(tempfile.mkdtemp(prefix="ffmrec-tput-deploy-", dir=job["run_root"]))
    flat, _ = flower_flat(job["workload"], run_dir, job["mode"], job["nodes"])
    flat = _timing_flat(job, {**flat, "output-dir": str(run_dir / "result"), "num-supernodes": job["nodes"]})
    with DeploymentCluster(num_supernodes=job["nodes"], workdir=run_dir / "cluster") as cluster:
        t0 = time.perf_counter()
        cluster.run_app(flat, timeout=job["timeout"])
        print(f"flwr run took {time.perf_counter() - t0:.1f}s", flush=True)
    return _flower_rounds(read_result(run_dir / "result"))


JOBS = {"fast": job_fast, "flower-sim": job_flower_sim, "flower-plain": job_flower_plain,
        "flower-deploy": job_flower_deploy}


# --- the parent: run each job in a child process, sample its process tree's memory ------------------------------------
class TreeMemory:
    """The summed RSS and PSS of a process and all its descendants over time (sampled in a thread)."""

    def __init__(self, pid: int, interval: float = 0.5, pss_every: int = 4):
        import psutil

        self.root = psutil.Process(pid)
        self.interval, self.pss_every = interval, pss_every
        self.samples: list[tuple[float, int, int | None, int]] = []  # (time.time(), rss, pss or None, processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        tick = 0
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            rss = pss = 0
            for p in procs:
                try:
                    if tick % self.pss_every == 0:
                        info = p.memory_full_info()
                        pss += info.pss
                    else:
                        info = p.memory_info()
                    rss += info.rss
                except psutil.Error:
                    pass
            self.samples.append((time.time(), rss, pss if tick % self.pss_every == 0 else None, len(procs)))
            tick += 1
            self._stop.wait(self.interval)


def peaks(samples: list[tuple], result: dict) -> dict:
    """Peak memory of a job's process tree; in a Flower job with paired fast rounds, only the samples before the first
    fast round or during a Flower round count (the fast simulator then runs in the ServerApp's process)."""
    start = result.get("fast_started_at")
    intervals = result.get("flower_intervals", [])

    def flower_time(t):
        return start is None or t < start or any(a <= t <= b for a, b in intervals)

    kept = [x for x in samples if flower_time(x[0])] or samples
    pss = [x[2] for x in kept if x[2] is not None]
    return {"peak_rss_mb": max(x[1] for x in kept) / 2**20, "peak_pss_mb": max(pss, default=0) / 2**20,
            "processes": max(x[3] for x in kept), "peak_rss_mb_whole_job": max(x[1] for x in samples) / 2**20}


def kill_tree(pid: int) -> None:
    """End a child job we started and everything it started (by process id)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def run_job(job: dict, log_dir: Path, timeout: float) -> dict:
    name = f"{job['engine']}-{job.get('mode', 'vectorised')}-{job['workload']}"
    out_file = log_dir / f"{name}.json"
    log_file = log_dir / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--job", json.dumps(job), "--job-out", str(out_file)]
    print(f"\n== {name}: sizes {job['sizes']} (timeout {timeout:.0f}s, log {log_file})", flush=True)
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=HERE)
        with TreeMemory(proc.pid) as mem:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait()
    wall = time.perf_counter() - t0
    result = json.loads(out_file.read_text()) if out_file.exists() and proc.returncode == 0 else None
    if result is None:
        tail = log_file.read_text()[-3000:]
        print(f"   FAILED after {wall:.0f}s (exit {proc.returncode}); log tail:\n{tail}", flush=True)
        return {"error": f"exit {proc.returncode} after {wall:.0f}s (timeout {timeout:.0f}s)", "wall_seconds": wall}
    result.update(wall_seconds=wall, load_average=[round(load_before, 1), round(os.getloadavg()[0], 1)],
                  started=time.strftime("%H:%M:%S", time.localtime(time.time() - wall)), **peaks(mem.samples, result))
    summary = {n: round(statistics.median(s), 3) for n, s in result["rounds"].items()}
    fast = {n: round(statistics.median(s), 3) for n, s in result.get("fast_rounds", {}).items()}
    print(f"   done in {wall:.0f}s: median seconds {summary} (paired fast rounds {fast}), skipped "
          f"{list(result['skipped'])}, peak RSS {result['peak_rss_mb']:.0f} MB over {result['processes']} processes",
          flush=True)
    return result


# --- rows ---------------------------------------------------------------------------------------------------------------
def flower_description(engine: str, mode: str, nodes: int, ray_cpus: int) -> dict:
    if engine == "fast":
        return {}
    if engine == "flower-deploy":
        return {"engine": "deployment (SuperLink + SuperNodes as processes, TLS, SuperNode auth, flwr run)",
                "supernodes": nodes, "message_mode": mode, "clientapp": "a flwr-clientapp process per message"}
    sim = {"engine": "simulation (flwr.simulation.run_simulation, Ray backend)", "ray_num_cpus": ray_cpus,
           "client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "actors": ray_cpus, "supernodes": nodes,
           "message_mode": mode}
    if engine == "flower-plain":
        sim["app"] = "plain Flower ClientApp (nn.Linear, one SGD step) with flwr.serverapp.strategy.FedAvg"
    return sim


def build_rows(results: dict, args) -> list[dict]:
    rows = []

    def seconds(key, n, which="rounds"):
        r = results.get(key)
        return statistics.median(r[which][str(n)]) if r and str(n) in r.get(which, {}) else None

    def paired_fast(workload, n):
        """Fast rounds timed right after Flower rounds on the same clients, in the flower-sim per-user job (else the
        cohort job): ``(median seconds, all seconds, mode)``."""
        for mode in ("per-user", "cohort"):
            timings = results.get((workload, "flower-sim", mode), {}).get("fast_rounds", {}).get(str(n))
            if timings:
                return statistics.median(timings), timings, mode
        return None, None, None

    for (workload, engine, mode), r in results.items():
        dataset, method, description = WORKLOADS[workload]
        nodes = args.sim_nodes if (engine == "flower-sim" and mode == "per-user") else (
            LINEAR["num-users"] if engine == "flower-plain" else args.cohort_nodes)
        if "error" in r:
            rows.append({"dataset": dataset, "method": method, "setting": "federated", "engine": engine,
                         "mode": mode, "metrics": {}, "error": r["error"], "workload": description,
                         "flower": flower_description(engine, mode, nodes, args.ray_cpus)})
            continue
        for n in sorted({int(k) for k in r["rounds"]} | {int(k) for k in r["skipped"]}):
            row = {"dataset": dataset, "method": method, "setting": "federated", "engine": engine, "mode": mode,
                   "workload": description, "flower": flower_description(engine, mode, nodes, args.ray_cpus)}
            if str(n) in r["skipped"]:
                row.update(metrics={"clients_per_round": n}, skipped=r["skipped"][str(n)])
                rows.append(row)
                continue
            s = seconds((workload, engine, mode), n)
            timings = r["rounds"][str(n)]
            m = {"clients_per_round": n}
            if engine == "fast":
                m["round_seconds_alone"] = round(s, 4)  # this job, the fast engine alone in its process
                paired, paired_timings, where = paired_fast(workload, n)
                if paired:  # the figure taken under the same load as Flower's
                    s, timings = paired, paired_timings
                    row["timed_in"] = f"the ServerApp process of the flower-sim {where} job, after each Flower round"
            m.update(round_seconds=round(s, 4), updates_per_second=round(n / s, 2), repeats=len(timings),
                     round_seconds_all=[round(x, 4) for x in timings])
            per_user = seconds((workload, "flower-sim", "per-user"), n)
            per_user_fast = seconds((workload, "flower-sim", "per-user"), n, "fast_rounds")
            if engine == "fast" and per_user and per_user_fast:
                m["speedup_vs_flower_sim"] = round(per_user / per_user_fast, 1)
            plain = seconds((workload, "flower-plain", "per-user"), n)
            if engine == "fast" and plain:  # the plain Flower job has no paired rounds: against this row's figure
                m["speedup_vs_plain_flower"] = round(plain / s, 1)
            if engine == "flower-sim" and mode == "cohort" and per_user:
                m["cohort_speedup_vs_per_user"] = round(per_user / s, 1)
            if engine == "flower-deploy" and mode == "cohort":
                deploy_pu = results.get((workload, "flower-deploy", "per-user"), {}).get("rounds", {})
                if deploy_pu:  # measured at a small size: compare updates per second
                    ups = max(int(k) / statistics.median(v) for k, v in deploy_pu.items())
                    m["cohort_speedup_vs_per_user"] = round((n / s) / ups, 1)
            own_fast = seconds((workload, engine, mode), n, "fast_rounds")
            if own_fast:
                m["fast_round_seconds_paired"] = round(own_fast, 4)
                m["round_seconds_over_fast"] = round(s / own_fast, 1)
            elif engine not in ("fast",) and paired_fast(workload, n)[0]:
                m["round_seconds_over_fast"] = round(s / paired_fast(workload, n)[0], 1)
            m.update(peak_rss_mb=round(r["peak_rss_mb"], 1), peak_pss_mb=round(r["peak_pss_mb"], 1),
                     processes=r["processes"], job_started=r["started"], job_wall_seconds=round(r["wall_seconds"]),
                     load_average_1min=r["load_average"])
            if r.get("shared_parameters"):
                m["shared_parameters"] = r["shared_parameters"]
            row["metrics"] = m
            rows.append(row)
    order = {k: i for i, k in enumerate([("fast", "vectorised"), ("flower-sim", "per-user"), ("flower-sim", "cohort"),
                                          ("flower-plain", "per-user"), ("flower-deploy", "per-user"),
                                          ("flower-deploy", "cohort")])}
    workloads = [m for _, m, _ in WORKLOADS.values()]
    rows.sort(key=lambda r: (workloads.index(r["method"]), order[(r["engine"], r["mode"])],
                             r["metrics"].get("clients_per_round", 0)))
    return rows


def skip_rows(skipped_jobs: list[str]) -> list[dict]:
    return [{"dataset": "-", "method": "-", "setting": "federated", "metrics": {}, "skipped_jobs": skipped_jobs}
            ] if skipped_jobs else []


def plan(args) -> list[tuple[dict, float]]:
    """The jobs, each with its wall-clock timeout: workload by workload (the targets' workloads first), the fast engine
    right before Flower's per-user messages, so that the speedup compares rounds taken minutes apart."""
    base = {"repeats": args.repeats, "warmup": 64, "threads": args.threads, "ray_cpus": args.ray_cpus,
            "run_root": args.run_root, "max_round_seconds": args.max_round_seconds}
    jobs = []
    for w in args.workloads:
        sim = {**base, "engine": "flower-sim", "workload": w}
        if "fast" in args.engines:
            jobs.append(({**base, "engine": "fast", "mode": "vectorised", "workload": w, "sizes": args.sizes}, 900))
        if "flower-sim" in args.engines:
            sizes = args.sizes if w != "beauty" else [n for n in args.sizes if n <= 1000]
            jobs.append(({**sim, "mode": "per-user", "sizes": sizes, "nodes": args.sim_nodes, "repeats": 1}, 1500))
            jobs.append(({**sim, "mode": "cohort", "sizes": args.sizes, "nodes": args.cohort_nodes}, 900))
        if "flower-plain" in args.engines and w == "linear":
            jobs.append(({**base, "engine": "flower-plain", "mode": "per-user", "workload": w, "sizes": args.sizes,
                          "nodes": LINEAR["num-users"], "repeats": 1}, 1200))
        if "flower-deploy" in args.engines:
            jobs += deploy_jobs(base, w, args)
    return jobs


def deploy_jobs(base: dict, w: str, args) -> list[tuple[dict, float]]:
    common = {**base, "engine": "flower-deploy", "workload": w, "nodes": args.cohort_nodes, "warmup": args.cohort_nodes}
    return [({**common, "mode": "cohort", "sizes": args.sizes, "repeats": 1, "timeout": 1200}, 1300),
            ({**common, "mode": "per-user", "sizes": args.deploy_per_user_sizes, "repeats": 1, "timeout": 900}, 1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["linear", "tiny", "beauty"], choices=list(WORKLOADS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 1000, 6000])
    parser.add_argument("--engines", nargs="+", default=["fast", "flower-sim", "flower-plain", "flower-deploy"],
                        choices=list(JOBS))
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds per size (median) for the fast engine "
                        "and the simulation engine's cohort messages; per-user and deployment rounds are timed once")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the fast engine; on a machine whose cores other processes share, 2 "
                             "OpenMP threads ran 3-4x slower than 1 here (barrier waits), so 1 (half of Ray's 2 CPUs)")
    parser.add_argument("--ray-cpus", type=int, default=len(os.sched_getaffinity(0)),
                        help="Ray's num_cpus in Flower's simulation engine (one ClientApp actor per CPU)")
    parser.add_argument("--sim-nodes", type=int, default=50,
                        help="virtual SuperNodes for ffmrec's per-user messages in the simulation engine (users spread "
                             "u mod N; each node has one message in flight); 50 was Flower's fastest of 16, 50, 150 and "
                             "500 here: its message extractor scans the whole in-memory LinkState for every node "
                             "every pass, so more nodes cost more, and fewer keep too few messages in flight")
    parser.add_argument("--cohort-nodes", type=int, default=4, help="SuperNodes for cohort messages (and deployment)")
    parser.add_argument("--deploy-per-user-sizes", nargs="+", type=int, default=[20])
    parser.add_argument("--max-round-seconds", type=float, default=900.0,
                        help="Flower engines skip a size whose predicted round time exceeds this")
    parser.add_argument("--budget-minutes", type=float, default=60.0, help="skip jobs that would start after this")
    parser.add_argument("--run-root", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                        help="where the Flower runs' folders (the nodes' device-state files) go")
    parser.add_argument("--name", default="federated_throughput")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--job-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job = json.loads(args.job)
        result = JOBS[job["engine"]](job)
        Path(args.job_out).write_text(json.dumps(result))
        return

    start = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="ffmrec-throughput-logs-"))
    results: dict[tuple, dict] = {}
    skipped_jobs = []
    for job, timeout in plan(args):
        key = (job["workload"], job["engine"], job["mode"])
        left = args.budget_minutes * 60 - (time.monotonic() - start)
        if left < 180:
            skipped_jobs.append(f"{key}: not started, the {args.budget_minutes:g}-minute budget was spent")
            print(f"skip {key}: budget spent", flush=True)
            continue
        results[key] = run_job(job, log_dir, min(timeout, left))
        write_results(args.name, build_rows(results, args) + skip_rows(skipped_jobs))
    write_results(args.name, build_rows(results, args) + skip_rows(skipped_jobs))
    print(f"total wall time {(time.monotonic() - start) / 60:.1f} min; logs in {log_dir}", flush=True)


if __name__ == "__main__":
    main()
