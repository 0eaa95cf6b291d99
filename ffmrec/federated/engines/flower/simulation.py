"""Run ffmrec's ServerApp + ClientApp in Flower's simulation engine (flwr 1.41, Ray backend).

Two launch modes:

``mode="inprocess"`` (default)
    ``flwr.simulation.run_simulation(server_app, client_app, num_supernodes, backend_config=...)``. Still present and
    working in flwr 1.41 (it logs a deprecation warning that recommends ``flwr run``). The ServerApp runs in a thread
    of this process and the ClientApps in a pool of Ray actors. ``run_simulation`` passes an *empty*
    ``context.run_config``, so the config reaches the apps through :func:`~ffmrec.federated.engines.flower.apps.make_server_app`
    / :func:`~ffmrec.federated.engines.flower.apps.make_client_app` (closures, pickled into the Ray actors), and the driver's
    result comes back directly. The simulation engine sets ``node_config = {"partition-id": i, "num-partitions": N}``
    on each virtual SuperNode. Ray's processes end with the simulation, also when this process is killed with SIGKILL
    (:mod:`~ffmrec.federated.engines.flower.ray_reaper`).

``mode="flwr-run"``
    The way Flower 1.41 recommends: a ``flower-superlink --simulation`` started by us on a free 127.0.0.1 port, a
    generated app project (see :mod:`~ffmrec.federated.engines.flower.deploy`) and
    ``flwr run <app> <connection> --federation-config "num-supernodes=N client-resources-num-cpus=1 ..." --stream``.
    We start our own SuperLink instead of using ``address = ":local:"`` because Flower's managed local SuperLink is a
    detached process on a fixed port (39091, ``FLWR_LOCAL_SUPERLINK_HTTP_API_PORT``) that outlives the command, and it
    would be shared with anyone else on the machine. The result is read from ``output-dir``.

Resources: ``backend_config = {"client_resources": {"num_cpus": c, "num_gpus": g}, "init_args": {"num_cpus": n}}``
(``flwr run``: ``client-resources-num-cpus``, ``client-resources-num-gpus``, ``init-args-num-cpus`` in
``--federation-config``). Ray starts ``init_args.num_cpus // client_resources.num_cpus`` actors; Flower's default
is 2 CPUs per client and all the machine's CPUs for Ray. Here the default is 1 CPU per client and 2 CPUs for Ray.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CONTROL_KEYS = ("task-factory", "driver", "client-timeout", "num-supernodes", "discovery-timeout", "output-dir")


def backend_config(num_cpus_per_client: float = 1, num_gpus_per_client: float = 0.0,
                   ray_num_cpus: int | None = 2, ray_num_gpus: int | None = None) -> dict:
    """Flower's ``backend_config`` for the Ray backend."""
    init_args: dict = {"include_dashboard": False}
    if ray_num_cpus is not None:
        init_args["num_cpus"] = int(ray_num_cpus)
    if ray_num_gpus is not None:
        init_args["num_gpus"] = int(ray_num_gpus)
    return {"client_resources": {"num_cpus": num_cpus_per_client, "num_gpus": float(num_gpus_per_client)},
            "init_args": init_args}


def run_flower_simulation(config: dict, num_supernodes: int, *, mode: str = "inprocess",
                          num_cpus_per_client: float = 1, num_gpus_per_client: float = 0.0,
                          ray_num_cpus: int | None = 2, ray_num_gpus: int | None = None,
                          timeout: float = 600.0, verbose: bool = False, server_extra: dict | None = None):
    """Run ``config`` (the flat run config: task, driver and ``client-timeout`` etc., see
    :mod:`~ffmrec.federated.engines.flower.apps`) with ``num_supernodes`` virtual SuperNodes; returns the driver's result.

    ``mode="flwr-run"`` returns the dict read back from ``output-dir`` (``result.json`` entries plus one dict of
    arrays per ``.npz``); ``server_extra`` goes to the in-process ServerApp only (the config object itself, so no YAML
    round-trip); ``timeout`` bounds that mode only (the in-process engine has no overall timeout; each
    client reply is bounded by ``client-timeout``).
    """
    if num_supernodes < 1:
        raise ValueError("num_supernodes must be >= 1")
    config = {**dict(config), "num-supernodes": int(num_supernodes)}
    if mode == "inprocess":
        return _run_inprocess(config, num_supernodes, backend_config(
            num_cpus_per_client, num_gpus_per_client, ray_num_cpus, ray_num_gpus), verbose, server_extra or {})
    if mode == "flwr-run":
        return _run_flwr_run(config, num_supernodes, num_cpus_per_client, num_gpus_per_client, ray_num_cpus,
                             timeout, verbose)
    raise ValueError(f"mode={mode!r}: use 'inprocess' or 'flwr-run'")


def _run_inprocess(config: dict, num_supernodes: int, backend: dict, verbose: bool, server_extra: dict):
    import ray
    from flwr.simulation import run_simulation

    from ffmrec.federated.engines.flower.apps import make_client_app, make_server_app
    from ffmrec.federated.engines.flower.ray_reaper import ray_reaped

    results: list = []
    server_app = make_server_app({**config, **server_extra}, on_result=results.append)
    client_app = make_client_app(config)
    # Ray actors get PYTHONPATH from this process (Flower forwards sys.path); make sure ffmrec is importable there.
    # Ray's processes end with the simulation, also when this process is killed with SIGKILL (see ray_reaper).
    with ray_reaped():
        try:
            run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_supernodes,
                           backend_name="ray", backend_config=backend, verbose_logging=verbose)
        finally:
            if ray.is_initialized():  # Flower shuts Ray down itself; this covers a failure before that
                ray.shutdown()
    if not results:
        raise RuntimeError("the Flower simulation ended without a result from the ServerApp (see the log above)")
    return results[0]


def _run_flwr_run(config: dict, num_supernodes: int, num_cpus_per_client: float, num_gpus_per_client: float,
                  ray_num_cpus: int | None, timeout: float, verbose: bool):
    from ffmrec.federated.engines.flower.deploy import DeploymentCluster, read_result

    with tempfile.TemporaryDirectory(prefix="ffmrec-flwr-sim-") as tmp:
        out_dir = Path(config.get("output-dir") or os.path.join(tmp, "out"))
        config = {**config, "output-dir": str(out_dir)}
        federation = {"num-supernodes": int(num_supernodes),
                      "client-resources-num-cpus": num_cpus_per_client,
                      "client-resources-num-gpus": float(num_gpus_per_client)}
        if ray_num_cpus is not None:
            federation["init-args-num-cpus"] = int(ray_num_cpus)
        if verbose:
            federation["verbose"] = True
        with DeploymentCluster(num_supernodes=0, simulation=True, tls=False, node_auth=False,
                               workdir=os.path.join(tmp, "cluster")) as cluster:
            cluster.run_app(config, timeout=timeout, federation_config=federation)
        return read_result(out_dir)
