"""Flower ``ServerApp`` and ``ClientApp`` of ffmrec (Flower Message API, flwr 1.41).

``server_app`` builds the run config from ``context.run_config``, wraps the ``Grid`` in a
:class:`~ffmrec.federated.engines.flower.executor.FlowerGridExecutor` and hands it to ffmrec's engine-independent driver
(``ffmrec.federated.engines.flower.engine:run_driver(config, executor)``, which runs ffmrec's own loop
:func:`ffmrec.federated.server.run_server`): sampling, aggregation and checkpointing are engine-independent.

``client_app`` answers three message types, each for a group of users (see
:mod:`~ffmrec.federated.engines.flower.records` for the wire format):

* ``query``: replies with the node's ``partition-id`` / ``num-partitions`` (from ``context.node_config``), or keeps the
  node's personal state of a round as the best round's (``action=mark-best``);
* ``train``: runs the node's :class:`~ffmrec.federated.engines.flower.node.NodeRuntime` (the same vectorised cohort
  as the fast simulator) for the users in the message and replies with their records or their partial sum;
* ``evaluate``: the task's evaluation columns of the users, with their personal state.

A node only serves the users ``u`` with ``u % num-partitions == partition-id``; a message for any other user gets an
error reply. Client exceptions become error replies too (the driver counts the group's users as failed). The node
runtime is built once per process, config and partition (:func:`node_runtime`).

Run-config keys read here (all others are passed through to the task and the driver):

``task-factory``   ``"module:function"``: ``factory(config, partition) -> (task, chunk_size, transform)`` for a node
                   (``partition`` is ``(partition-id, num-partitions)``, or None on the server)
``driver``         ``"module:function"`` running the server loop (default ``ffmrec.federated.engines.flower.engine:run_driver``)
``client-timeout`` seconds to wait for one client's reply (default 300)
``num-supernodes`` nodes to wait for at start (default: until every partition has a node)
``discovery-timeout`` seconds to wait for them (default 120)
``output-dir``     if set, the driver's result is written there (``result.json`` + one ``.npz`` per parameter dict)

Both apps are also available as factories (:func:`make_server_app`, :func:`make_client_app`) that overlay a fixed
config on ``context.run_config``; the in-process simulation uses them because ``flwr.simulation.run_simulation``
passes an empty run config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp

from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.flower import records as R
from ffmrec.federated.engines.flower.executor import FlowerGridExecutor
from ffmrec.federated.engines.flower.secagg import client_mod as secure_aggregation_mod

log = logging.getLogger("ffmrec.flower")

DEFAULT_TASK_FACTORY = "ffmrec.federated.engines.flower.engine:build_node_task"
DEFAULT_DRIVER = "ffmrec.federated.engines.flower.engine:run_driver"
_TASKS: dict[str, object] = {}
_TASKS_LOCK = threading.Lock()


def load_object(ref: str):
    """``"package.module:attr"`` -> the object."""
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ValueError(f"{ref!r} is not of the form 'package.module:attribute'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def config_hash(config: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()


def run_config_of(context: Context, overrides: Mapping[str, object] | None = None) -> dict:
    config = dict(context.run_config)
    if overrides:
        config.update(overrides)
    return config


# --- ClientApp -----------------------------------------------------------------------------------------------------
def _error_reply(msg: Message, exc: BaseException | str) -> Message:
    if isinstance(exc, BaseException):
        reason = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc))[-4000:]
    else:
        reason = exc
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg)


def _node_partition(context: Context) -> tuple[int, int] | None:
    cfg = context.node_config
    if R.PARTITION_ID not in cfg or R.NUM_PARTITIONS not in cfg:
        return None
    return int(cfg[R.PARTITION_ID]), int(cfg[R.NUM_PARTITIONS])


def _users_of(msg: Message, context: Context) -> list[int]:
    ids = [int(u) for u in msg.content[R.META][R.USER_IDS]]
    part = _node_partition(context)
    if part is None:
        raise PermissionError("this SuperNode has no 'partition-id'/'num-partitions' in its node config")
    pid, num = part
    stray = [u for u in ids if u < 0 or u % num != pid]
    if stray:
        raise PermissionError(f"users {stray[:5]} are not held by this node (partition-id={pid}, num-partitions={num})")
    return ids


def device_dir_of(config: Mapping[str, object], context: Context) -> Path:
    """The device's own storage: ``device-dir`` of the node config, else ``<run-dir>/devices/partition-<id>``."""
    if context.node_config.get("device-dir"):
        return Path(str(context.node_config["device-dir"]))
    part = _node_partition(context)
    if part is None:
        raise PermissionError("this SuperNode has no 'partition-id'/'num-partitions' in its node config")
    return Path(str(config["run-dir"])) / "devices" / f"partition-{part[0]}"


def node_runtime(config: Mapping[str, object], context: Context):
    """The node's :class:`~ffmrec.federated.engines.flower.node.NodeRuntime`, built once per process and partition."""
    from ffmrec.federated.engines.flower.node import NodeRuntime

    part = _node_partition(context)
    if part is None:
        raise PermissionError("this SuperNode has no 'partition-id'/'num-partitions' in its node config")
    key = f"{config_hash(config)}/{part}"
    with _TASKS_LOCK:
        runtime = _TASKS.get(key)
        if runtime is None:
            factory = load_object(str(config.get("task-factory", DEFAULT_TASK_FACTORY)))
            task, chunk_size, transform = factory(dict(config), part)
            runtime = NodeRuntime(task, part, device_dir_of(config, context), chunk_size, transform)
            _TASKS[key] = runtime
        return runtime


def _shared_of(msg: Message) -> dict[str, torch.Tensor]:
    """The global shared parameters a train or evaluate message carries, as tensors."""
    return {k: torch.from_numpy(v) for k, v in R.from_array_record(msg.content[R.SHARED]).items()}


def _train_reply(msg: Message, records, partials, failures) -> Message:
    content = RecordDict()
    if records:
        content[R.UPDATES] = R.to_array_record({f"{r.client_id}/{k}": v for r in records for k, v in r.tensors.items()})
        metrics = {}
        for r in records:
            metrics[f"{r.client_id}/weight"] = int(r.weight)
            metrics[f"{r.client_id}/loss"] = float(r.metrics.get("loss", float("nan")))
        content[R.CLIENT_METRICS] = MetricRecord(metrics)
    answered = [r.client_id for r in records]
    if partials:
        from ffmrec.federated.aggregation import WeightedSum

        acc = WeightedSum()
        for part in partials:
            acc.add_sum(part.sums, part.weight, part.loss_sum, part.count)
            answered.extend(part.client_ids)
        content[R.SUM] = R.to_array_record(acc.sums)
        content[R.SUM_METRICS] = MetricRecord({"weight": float(acc.weight), "loss-sum": float(acc.loss),
                                               "count": int(acc.count)})
    content[R.META] = ConfigRecord({R.USER_IDS: answered, R.FAILED_IDS: [int(c) for c, _ in failures],
                                    R.FAILED_REASONS: [str(e) for _, e in failures]})
    return Message(content, reply_to=msg)


def make_client_app(overrides: Mapping[str, object] | None = None) -> ClientApp:
    """A ClientApp whose config is ``context.run_config`` overlaid with ``overrides``."""
    overrides = dict(overrides or {})
    app = ClientApp()

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        try:
            meta = msg.content[R.META]
            if str(meta.get(R.ACTION, "info")) == "mark-best":
                runtime = node_runtime(run_config_of(context, overrides), context)
                runtime.mark_best(int(meta[R.SERVER_ROUND]))
            part = _node_partition(context)
            info = {} if part is None else {R.PARTITION_ID: part[0], R.NUM_PARTITIONS: part[1]}
            info["pid"] = os.getpid()
            return Message(RecordDict({R.NODE: ConfigRecord(info)}), reply_to=msg)
        except Exception as exc:  # noqa: BLE001
            return _error_reply(msg, exc)

    @app.train(mods=[secure_aggregation_mod(overrides)])  # SecAgg+ when the run config says so
    def train(msg: Message, context: Context) -> Message:
        try:
            ids = _users_of(msg, context)
            runtime = node_runtime(run_config_of(context, overrides), context)
            meta = msg.content[R.META]
            shared = _shared_of(msg)
            round_config = dict(msg.content[R.ROUND_CONFIG])
            cfg = ClientConfig(**{k: round_config[k] for k in ClientConfig.__dataclass_fields__ if k in round_config})
            records, partials, failures = runtime.train(
                int(meta[R.SERVER_ROUND]), ids, shared, cfg, str(meta[R.SESSION]), bool(meta[R.WANT_RECORDS]))
            return _train_reply(msg, records, partials, failures)
        except Exception as exc:  # noqa: BLE001 - reported to the server as these clients' error
            return _error_reply(msg, exc)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        try:
            ids = _users_of(msg, context)
            runtime = node_runtime(run_config_of(context, overrides), context)
            meta = msg.content[R.META]
            shared = _shared_of(msg)
            columns = runtime.evaluate(str(meta[R.STAGE]), int(meta[R.SERVER_ROUND]), bool(meta[R.BEST]), ids, shared)
            content = RecordDict({R.COLUMNS: R.to_array_record(columns),
                                  R.META: ConfigRecord({R.USER_IDS: ids})})
            return Message(content, reply_to=msg)
        except Exception as exc:  # noqa: BLE001
            return _error_reply(msg, exc)

    return app


# --- ServerApp -----------------------------------------------------------------------------------------------------
def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def _is_param_dict(value) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(v, np.ndarray) or hasattr(v, "detach") for v in value.values())


def write_result(result, out_dir: str | os.PathLike) -> Path:
    """Write the driver's result: every ``{name: array}`` entry as ``<key>.npz``, the rest as ``result.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    if not isinstance(result, Mapping):
        result = {"result": result}
    rest = {}
    for key, value in result.items():
        if _is_param_dict(value):
            arrays = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in value.items()}
            np.savez(out / f"{key}.npz", **arrays)
        else:
            rest[key] = value
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(rest, indent=1, default=_jsonable))
    tmp.replace(out / "result.json")
    return out


def make_executor(grid: Grid, config: Mapping[str, object]) -> FlowerGridExecutor:
    expected = config.get("num-supernodes")
    return FlowerGridExecutor(
        grid,
        timeout=float(config.get("client-timeout", 300.0)),
        expected_nodes=int(expected) if expected not in (None, "", 0) else None,
        discovery_timeout=float(config.get("discovery-timeout", 120.0)),
    )


def make_server_app(overrides: Mapping[str, object] | None = None,
                    on_result: Callable[[object], None] | None = None) -> ServerApp:
    """A ServerApp whose config is ``context.run_config`` overlaid with ``overrides``; ``on_result`` receives the
    driver's return value (in-process simulation only)."""
    overrides = dict(overrides or {})
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = run_config_of(context, overrides)
        executor = make_executor(grid, config)
        partitions = executor.discover()
        log.info("ffmrec: %d SuperNode(s) hold partitions %s", len(partitions), sorted(partitions))
        driver = load_object(str(config.get("driver", DEFAULT_DRIVER)))
        result = driver(config, executor)
        if config.get("output-dir"):
            write_result(result, str(config["output-dir"]))
        if on_result is not None:
            on_result(result)

    return app


# Module-level apps for `flwr run` / SuperLink+SuperNodes ([tool.flwr.app.components] points here). Plain
# assignments: `flwr run` checks these names statically.
server_app = make_server_app()
client_app = make_client_app()
