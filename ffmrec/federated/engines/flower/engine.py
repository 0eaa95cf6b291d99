"""ffmrec's driver loop on Flower: the engine adapter, the node task factory and the driver the Flower apps use.

The flat Flower run config carries the resolved run config as YAML under ``ffmrec-config`` (the processes Flower
starts rebuild it from there; an in-process ServerApp receives the config object itself under
``ffmrec-config-object``, no YAML round-trip) and the run folder under ``run-dir``. On every SuperNode,
:func:`build_node_task` builds the task for the node's partition through the method resolver named in
``method-resolver`` (in the simulation engine, :func:`build_shared_task` builds it once per Ray actor); on the server, :func:`run_driver` runs :func:`~ffmrec.federated.server.run_server` with a
:class:`FlowerEngine`, so sampling, checking records, observers, aggregation, checkpoints and history are the same code
as in every other engine.

Personal state lives on the SuperNodes (one table per node, in its device directory; see
:mod:`~ffmrec.federated.engines.flower.node`), never on the server, so :meth:`FlowerEngine.state_dict` holds only the
driver session; a resumed run continues from the state the nodes had at its checkpoint.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import torch
from flwr.app import ConfigRecord, RecordDict

from ffmrec.config import dump_yaml, to_dict
from ffmrec.errors import FFMRecError
from ffmrec.federated.aggregation import WeightedSum
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.base import RoundResult
from ffmrec.federated.engines.flower import records as R
from ffmrec.federated.records import ClientRecord, PartialSum, RecordError, check_record
from ffmrec.federated.server import FederatedResult, run_server
from ffmrec.tasks.base import Params

CONFIG_KEY = "ffmrec-config"
CONFIG_OBJECT_KEY = "ffmrec-config-object"
RUN_DIR_KEY = "run-dir"
RESOLVER_KEY = "method-resolver"
DEFAULT_RESOLVER = "ffmrec.methods:config_from_flat"


def flower_run_config(config, out_dir: Path) -> dict:
    """The flat Flower run config of a resolved run config."""
    return {
        CONFIG_KEY: dump_yaml(to_dict(config)),
        RUN_DIR_KEY: str(Path(out_dir).resolve()),
        RESOLVER_KEY: DEFAULT_RESOLVER,
        "task-factory": "ffmrec.federated.engines.flower.engine:build_node_task",
        "driver": "ffmrec.federated.engines.flower.engine:run_driver",
        "client-timeout": float(config.federated.client_timeout),
        "secure-aggregation": bool(getattr(config.federated, "secure_aggregation", False)),  # devices refuse plain train
        # Ray actors or SuperNode processes on a loaded machine can take minutes to answer the first query
        "discovery-timeout": max(300.0, float(config.federated.client_timeout)),
    }


def _resolve(flat: dict):
    """``(config, build_task)`` from the flat config, through the method resolver it names (the edge)."""
    from ffmrec.federated.engines.flower.apps import load_object

    resolver = load_object(str(flat.get(RESOLVER_KEY, DEFAULT_RESOLVER)))
    return resolver(flat)


def build_node_task(flat: dict, partition: tuple[int, int] | None):
    """Task factory of a deployed ClientApp: ``(task, chunk_size, transform)`` for the node's partition only (a
    deployed ClientApp process serves one SuperNode, and holds only that node's users' data)."""
    from ffmrec.federated.transforms import build_transform

    torch.set_num_threads(1)  # one ClientApp process per core
    config, build_task = _resolve(flat)
    return build_task(config, partition), config.federated.chunk_size, build_transform(config.federated)


_SHARED_TASKS: dict[tuple, tuple] = {}
_SHARED_LOCK = threading.Lock()


def build_shared_task(flat: dict, partition: tuple[int, int] | None):
    """Task factory of the simulation engine: ``(task, chunk_size, transform)`` with the task of every client, built
    once per process and config. One Ray actor serves many virtual SuperNodes; each still keeps its own personal state
    (:class:`~ffmrec.federated.engines.flower.node.NodeRuntime`) and trains only its own users, but the dataset and
    model are loaded once per actor instead of once per node."""
    from ffmrec.federated.transforms import build_transform

    torch.set_num_threads(1)  # one Ray actor per core
    key = (str(flat.get(RESOLVER_KEY)), str(flat.get(CONFIG_KEY)),
           tuple(sorted((k, str(v)) for k, v in flat.items() if k not in (CONFIG_KEY, CONFIG_OBJECT_KEY))))
    with _SHARED_LOCK:
        if key not in _SHARED_TASKS:
            config, build_task = _resolve(flat)
            _SHARED_TASKS[key] = (config, build_task(config, None))
        config, task = _SHARED_TASKS[key]
    return task, config.federated.chunk_size, build_transform(config.federated)


class FlowerEngine:
    """The driver's :class:`~ffmrec.federated.engines.base.Engine` on a Flower Grid (through the executor)."""

    def __init__(self, executor, task, per_user: bool = False):
        self.executor = executor
        self.task = task
        self.per_user = per_user
        self.session = uuid.uuid4().hex  # a resumed driver is a new session (see engines/flower/node.py)

    def train_round(self, server_round: int, client_ids: list[int], shared: Params, cfg: ClientConfig,
                    want_records: bool) -> RoundResult:
        groups, missing = self.executor.groups(client_ids, self.per_user)
        shared_record = R.to_array_record(shared)
        round_record = R.to_config_record({**cfg.to_record(), R.SERVER_ROUND: server_round})

        def content(group):
            meta = {R.SERVER_ROUND: server_round, R.USER_IDS: list(group), R.SESSION: self.session,
                    R.WANT_RECORDS: bool(want_records)}
            return RecordDict({R.SHARED: shared_record, R.ROUND_CONFIG: round_record, R.META: ConfigRecord(meta)})

        result = RoundResult(failures=list(missing))
        # Records that no observer or strategy needs one by one are checked and folded into one running sum as they
        # arrive (per-user mode: one reply per user, thousands per round), so a round holds one sum, not every reply.
        fold = WeightedSum() if not want_records else None
        folded: list[int] = []
        specs, max_weight = (self.task.shared_specs(), self.task.max_weight) if fold is not None else (None, 0)
        for _, outcome in self.executor.stream(R.TRAIN, f"train-{server_round}", groups, content):
            if outcome.error is not None:
                result.failures.extend((c, outcome.error.splitlines()[0]) for c in outcome.client_ids)
                continue
            got = RoundResult()
            try:
                decode_train_reply(outcome.client_ids, outcome.content, got)
            except Exception as exc:  # noqa: BLE001 - a malformed reply fails its group only
                result.failures.extend((c, f"bad reply: {exc!r}") for c in outcome.client_ids)
                continue
            result.failures.extend(got.failures)
            result.partials.extend(got.partials)
            if fold is None:
                result.records.extend(got.records)
                continue
            for record in got.records:
                try:
                    check_record(record, specs, max_weight)
                except RecordError as e:
                    result.failures.append((record.client_id, f"rejected record: {e}"))
                    continue
                fold.add(record.tensors, record.weight, record.metrics.get("loss", 0.0))
                folded.append(record.client_id)
        if folded:
            result.partials.append(PartialSum(fold.sums, fold.weight, fold.loss, fold.count, sorted(folded)))
        return result

    def evaluate(self, stage: str, shared: Params, clients: np.ndarray, best: bool = False,
                 server_round: int = 0) -> dict[str, np.ndarray]:
        """Each node evaluates its users on their devices; users whose node fails count as misses."""
        groups, _ = self.executor.groups(clients, per_user=False)
        shared_record = R.to_array_record(shared)

        def content(group):
            meta = {R.STAGE: stage, R.USER_IDS: list(group), R.SERVER_ROUND: int(server_round), R.BEST: bool(best)}
            return RecordDict({R.SHARED: shared_record, R.META: ConfigRecord(meta)})

        by_user: dict[int, dict[str, np.ndarray]] = {}
        for outcome in self.executor.send(R.EVALUATE, f"evaluate-{stage}", groups, content):
            if outcome.error is not None or outcome.content is None:
                continue
            cols = R.from_array_record(outcome.content[R.COLUMNS])
            for i, u in enumerate(outcome.content[R.META][R.USER_IDS]):
                by_user[int(u)] = {k: v[i] for k, v in cols.items()}
        failed = self.task.failed_columns(1)
        rows = [by_user.get(int(u), {k: v[0] for k, v in failed.items()}) for u in clients]
        return {k: np.array([r[k] for r in rows]) for k in failed}

    def mark_best(self, server_round: int) -> None:
        meta = ConfigRecord({R.ACTION: "mark-best", R.SERVER_ROUND: int(server_round)})
        for outcome in self.executor.broadcast(R.QUERY, f"mark-best-{server_round}", RecordDict({R.META: meta})):
            if outcome.error is not None:
                raise FFMRecError(f"a SuperNode could not keep its state of round {server_round} as the best round's "
                                  f"({outcome.error.splitlines()[0]}): the test would pair the wrong personal state; "
                                  "check the SuperNodes' logs and resume the run.")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def decode_train_reply(group: tuple[int, ...], content: RecordDict, result: RoundResult) -> None:
    """Turn a node's train reply into records (or a partial sum) and failures, added to ``result``."""
    meta = content[R.META]
    answered = [int(u) for u in meta.get(R.USER_IDS, [])]
    stray = set(answered) - set(group)
    if stray:
        raise ValueError(f"the reply answers users {sorted(stray)[:5]} that were not in the message")
    for cid, reason in zip(meta.get(R.FAILED_IDS, []), meta.get(R.FAILED_REASONS, [])):
        result.failures.append((int(cid), str(reason)))
    if R.SUM in content:
        metrics = content[R.SUM_METRICS]
        sums = {k: torch.from_numpy(v) for k, v in R.from_array_record(content[R.SUM]).items()}
        result.partials.append(PartialSum(sums, float(metrics["weight"]), float(metrics["loss-sum"]),
                                          int(metrics["count"]), answered))
        return
    arrays = R.from_array_record(content[R.UPDATES]) if R.UPDATES in content else {}
    metrics = content[R.CLIENT_METRICS] if R.CLIENT_METRICS in content else {}
    per_user: dict[int, dict[str, torch.Tensor]] = {u: {} for u in answered}
    for key, value in arrays.items():
        uid, _, name = key.partition("/")
        if int(uid) not in per_user:
            raise ValueError(f"the reply has tensor {key!r} of a user it does not answer for")
        per_user[int(uid)][name] = torch.from_numpy(value)
    for uid in answered:
        weight = metrics.get(f"{uid}/weight", -1)  # checked by the driver (a positive integer within the bound)
        result.records.append(ClientRecord(uid, per_user[uid], weight,
                                           {"loss": float(metrics.get(f"{uid}/loss", float("nan")))}))


def server_engine(flat: dict, executor):
    """``(config, task, FlowerEngine)`` of the ServerApp: the config object itself when the ServerApp runs in-process
    (the resolver reads ``ffmrec-config-object``), else the config rebuilt from the flat run config."""
    config, build_task = _resolve(flat)
    task = build_task(config, None)
    engine = FlowerEngine(executor, task, per_user=config.federated.message_mode == "per-user")
    if getattr(config.federated, "secure_aggregation", False):
        from ffmrec.federated.engines.flower.secagg import SecAggPlusEngine

        engine = SecAggPlusEngine(engine, config.federated)
    return config, task, engine


def run_driver(flat: dict, executor) -> FederatedResult:
    """Driver of the ServerApp (``driver`` in the run config): ffmrec's own loop over the Flower engine."""
    from ffmrec.federated.run import build_observers
    from ffmrec.federated.strategies import build_strategy

    config, task, engine = server_engine(flat, executor)
    fed = config.federated
    out_dir = Path(flat[RUN_DIR_KEY])
    strategy = build_strategy(fed, embedding_params=task.embedding_params)
    observers = build_observers(fed, task, out_dir)
    return run_server(task, engine, strategy, fed, out_dir, config.seed, observers, progress=False)


def _check_secure_aggregation(config, num_users: int) -> None:
    if getattr(config.federated, "secure_aggregation", False):
        from ffmrec.federated.engines.flower.secagg import check_one_user_per_node

        check_one_user_per_node(config.federated, num_users)


def run_flower_simulation(config, out_dir: Path, num_users: int) -> FederatedResult:
    """A whole federated run in Flower's simulation engine (in-process, Ray backend)."""
    from ffmrec.federated.engines.flower.simulation import run_flower_simulation as simulate

    _check_secure_aggregation(config, num_users)
    nodes = max(1, min(config.federated.num_supernodes, num_users))
    flat = {**flower_run_config(config, out_dir), "task-factory": f"{__name__}:build_shared_task"}
    return simulate(flat, nodes, server_extra={CONFIG_OBJECT_KEY: config})


def run_flower_deployment(config, out_dir: Path, num_users: int) -> FederatedResult:
    """A whole federated run on Flower's deployment engine, on this machine: a SuperLink and SuperNodes as separate
    processes on 127.0.0.1, TLS certificates made for the run, SuperNode authentication on (each node's key
    registered). To spread SuperNodes over machines instead, follow the steps in
    :mod:`ffmrec.federated.engines.flower.deploy`."""
    import dataclasses

    from ffmrec.errors import FFMRecError
    from ffmrec.federated.engines.flower.deploy import DeploymentCluster, DeploymentError, read_result

    _check_secure_aggregation(config, num_users)
    result_dir = Path(out_dir).resolve() / "flower-result"
    flat = {**flower_run_config(config, out_dir), "output-dir": str(result_dir)}
    nodes = max(1, min(config.federated.num_supernodes, num_users))
    try:
        with DeploymentCluster(num_supernodes=nodes, workdir=Path(out_dir).resolve() / "flower-cluster") as cluster:
            cluster.run_app(flat, timeout=config.federated.deploy_timeout)
    except DeploymentError as e:
        raise FFMRecError(
            f"the Flower deployment run in {out_dir} failed ({str(e).splitlines()[0]}); see "
            f"{Path(out_dir) / 'flower-cluster'} for the SuperLink and SuperNode logs, or run with federated.engine=fast."
        ) from None
    saved = read_result(result_dir)
    return FederatedResult(**{f.name: saved[f.name] for f in dataclasses.fields(FederatedResult)})
