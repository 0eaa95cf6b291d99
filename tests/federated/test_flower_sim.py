"""The Flower engines' executor, ClientApp and simulation runner (ffmrec.federated.engines.flower).

The first tests drive ``FlowerGridExecutor`` and the real ``client_app`` through an in-process fake ``Grid`` (no Ray,
well under a second each); the last one runs the whole ServerApp + ClientApp in Flower's simulation engine.
"""

from __future__ import annotations

import json
from itertools import count

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.base import RoundResult
from ffmrec.federated.engines.fast import FastSimulator
from ffmrec.federated.engines.flower import records as R
from ffmrec.federated.engines.flower.apps import make_client_app, write_result
from ffmrec.federated.engines.flower.deploy import read_result
from ffmrec.federated.engines.flower.engine import (
    RESOLVER_KEY,
    RUN_DIR_KEY,
    FlowerEngine,
    decode_train_reply,
    run_driver,
)
from ffmrec.federated.engines.flower.executor import FlowerGridExecutor, NodeDiscoveryError
from ffmrec.federated.server import check_round, run_server
from ffmrec.federated.strategies import build_strategy
from ffmrec.tasks.linear import LinearConfig, LinearTask, from_flat

LINEAR = {RESOLVER_KEY: "ffmrec.tasks.linear:from_flat"}


class FakeGrid:
    """An in-process Grid: node ``n`` runs ``client_app`` with its own Context; silent nodes never answer."""

    def __init__(self, num_nodes, config, silent=(), node_configs=None):
        self.app = make_client_app(config)
        self.silent = set(silent)
        self.contexts = {}
        for i in range(num_nodes):
            node_config = node_configs[i] if node_configs else {R.PARTITION_ID: i, R.NUM_PARTITIONS: num_nodes}
            self.contexts[1000 + i] = Context(run_id=1, node_id=1000 + i, node_config=node_config,
                                              state=RecordDict(), run_config={})
        self.pending = {}
        self.sent = []  # (node, message type, user ids)
        self.max_in_flight = {}
        self._ids = count()

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = f"m{next(self._ids)}"
            self.pending[msg.metadata.message_id] = msg
            node = msg.metadata.dst_node_id
            users = msg.content[R.META].get(R.USER_IDS) if R.META in msg.content else None
            self.sent.append((node, msg.metadata.message_type, list(users or [])))
            outstanding = sum(1 for m in self.pending.values() if m.metadata.dst_node_id == node)
            self.max_in_flight[node] = max(self.max_in_flight.get(node, 0), outstanding)
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids):
        replies = []
        for msg_id in list(message_ids):
            msg = self.pending.get(msg_id)
            if msg is None or msg.metadata.dst_node_id in self.silent:
                continue
            del self.pending[msg_id]
            reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
            reply.metadata.__dict__["_message_id"] = f"r{msg_id}"
            replies.append(reply)
        return replies


@pytest.fixture(autouse=True)
def task_identity():
    """Message() needs the identity of the running task (set by Flower in a real ServerApp process)."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def test_records_roundtrip():
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    back = R.from_array_record(R.to_array_record(arrays))
    assert list(back) == ["a", "b"]
    for k in arrays:
        assert back[k].dtype == arrays[k].dtype and np.array_equal(back[k], arrays[k])
    n, metrics = R.from_metric_record(R.to_metric_record(7, {"loss": 0.5, "num-examples": 99}))
    assert n == 7 and metrics == {"loss": 0.5}
    assert dict(R.to_config_record({"x": 1, "y": None, "z": "s", "w": np.float32(0.5)})) == {"x": 1, "z": "s", "w": 0.5}


def linear_config(tmp_path, **kw):
    return {**LINEAR, RUN_DIR_KEY: str(tmp_path), **{k: v for k, v in kw.items()}}


def fast_reference(flat, tmp_path):
    config, build = from_flat(flat)
    task = build(config, None)
    return run_server(task, FastSimulator(task, chunk_size=2), build_strategy(config.federated), config.federated,
                      tmp_path, config.seed, progress=False)


@pytest.mark.parametrize("mode", ["cohort", "per-user"])
def test_flower_driver_on_fake_grid_matches_the_fast_simulator(tmp_path, mode):
    flat = linear_config(tmp_path / "flower", **{"num-users": 7, "rounds": 3, "message-mode": mode,
                                                 "clients-per-round": 5})
    grid = FakeGrid(3, flat)
    ex = FlowerGridExecutor(grid, timeout=5, discovery_timeout=5)
    result = run_driver(flat, ex)
    reference = fast_reference(flat, tmp_path / "fast")
    assert result.test == pytest.approx(reference.test, rel=1e-6)
    a = torch.load(tmp_path / "flower" / "server.pt", weights_only=False)["params"]
    b = torch.load(tmp_path / "fast" / "server.pt", weights_only=False)["params"]
    torch.testing.assert_close(a["weight"], b["weight"], atol=1e-6, rtol=1e-5)
    trains = [(node, ids) for node, kind, ids in grid.sent if kind == "train"]
    if mode == "cohort":  # one message per node per round, with that node's users only
        assert len(trains) <= 3 * 3 and any(len(ids) > 1 for _, ids in trains)
    else:
        assert all(len(ids) == 1 for _, ids in trains) and len(trains) == 3 * 5
    assert all(u % 3 == node - 1000 for node, ids in trains for u in ids)
    # personal state lives in each node's device directory, never on the server
    assert sorted(p.name for p in (tmp_path / "flower" / "devices").iterdir()) == [
        "partition-0", "partition-1", "partition-2"]


def test_failing_clients_fail_alone_in_a_cohort(tmp_path):
    flat = linear_config(tmp_path, **{"num-users": 6, "rounds": 2, "fail-users": "4"})
    result = run_driver(flat, FlowerGridExecutor(FakeGrid(3, flat), timeout=5, discovery_timeout=5))
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [line["ok"] for line in lines] == [5, 5] and all("fails on purpose" in line["errors"][0] for line in lines)
    assert result.failures == 2


def crafted_reply(users, tensors, weights, losses=None):
    content = RecordDict({R.UPDATES: R.to_array_record({f"{u}/{k}": v for u, t in zip(users, tensors)
                                                        for k, v in t.items()})})
    metrics = {}
    for u, w in zip(users, weights):
        metrics[f"{u}/weight"] = w
        metrics[f"{u}/loss"] = 0.5
    content[R.CLIENT_METRICS] = MetricRecord(metrics)
    content[R.META] = ConfigRecord({R.USER_IDS: list(users), R.FAILED_IDS: [], R.FAILED_REASONS: []})
    return content


class CraftingGrid(FakeGrid):
    """A FakeGrid whose nodes answer train messages with ``craft(user ids) -> RecordDict`` instead of training."""

    def __init__(self, num_nodes, config, craft):
        super().__init__(num_nodes, config)
        self.craft = craft

    def pull_messages(self, message_ids):
        replies = []
        for msg_id in list(message_ids):
            msg = self.pending.pop(msg_id, None)
            if msg is None:
                continue
            if msg.metadata.message_type == R.TRAIN:
                reply = Message(self.craft([int(u) for u in msg.content[R.META][R.USER_IDS]]), reply_to=msg)
            else:
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
            reply.metadata.__dict__["_message_id"] = f"r{msg_id}"
            replies.append(reply)
        return replies


@pytest.mark.parametrize("bad,reason", [
    ({"weight": np.zeros((1, 9), np.float32)}, "shape"),
    ({"weight": np.zeros((1, 10), np.float32), "extra": np.zeros(3, np.float32)}, "extra"),
    ({}, "missing"),
    ({"weight": np.full((1, 10), np.nan, np.float32)}, "non-finite"),
    ({"weight": np.full((1, 10), np.inf, np.float32)}, "non-finite"),
    ({"weight": np.zeros((1, 10), np.float64)}, "dtype"),
    ("negative-weight", "weight"),
    ("huge-weight", "weight"),
])
@pytest.mark.parametrize("per_user", [False, True])
def test_crafted_bad_reply_fails_its_client_alone(tmp_path, bad, reason, per_user):
    """Replies crafted on a SuperNode go through the Flower engine (wire format, decoding) and the driver's check:
    the bad user's record is rejected with the reason, the others (of the same cohort message, or of their own
    per-user messages) are kept; in per-user mode without a need for records, each reply is checked and folded into
    one running sum as it arrives (sum of 3 clients x weight 8 x ones)."""
    good = {"weight": np.ones((1, 10), np.float32)}

    def craft(users):
        tensors = [bad if (u == 3 and isinstance(bad, dict)) else good for u in users]
        claimed = {"negative-weight": -3, "huge-weight": 10**12}.get(bad, 8) if isinstance(bad, str) else 8
        weights = [claimed if u == 3 else 8 for u in users]
        return crafted_reply(users, tensors, weights)

    flat = linear_config(tmp_path)
    engine = FlowerEngine(FlowerGridExecutor(CraftingGrid(2, flat, craft), timeout=5, discovery_timeout=5),
                          LinearTask(LinearConfig()), per_user=per_user)
    task = engine.task
    result = engine.train_round(1, [0, 1, 2, 3], task.initial_shared(), ClientConfig(), want_records=not per_user)
    checked = check_round(result, task.shared_specs(), task.max_weight)
    assert [c for c, _ in checked.failures] == [3] and reason in checked.failures[0][1]
    if per_user:
        assert checked.records == [] and len(checked.partials) == 1
        partial = checked.partials[0]
        assert partial.client_ids == [0, 1, 2] and partial.weight == 24 and partial.count == 3
        torch.testing.assert_close(partial.sums["weight"], torch.full((1, 10), 24.0, dtype=partial.sums["weight"].dtype))
    else:
        assert sorted(r.client_id for r in checked.records) == [0, 1, 2]


def test_reply_for_a_user_not_in_the_message_is_refused():
    result = RoundResult()
    with pytest.raises(ValueError, match="not in the message"):
        decode_train_reply((0,), crafted_reply([0, 3], [{"weight": np.ones((1, 10), np.float32)}] * 2, [8, 8]),
                           result)


def test_client_app_refuses_users_of_other_partitions(tmp_path):
    flat = linear_config(tmp_path)
    grid = FakeGrid(2, flat)
    content = RecordDict({R.META: ConfigRecord({R.USER_IDS: [1], R.SERVER_ROUND: 1, R.SESSION: "s",
                                                R.WANT_RECORDS: True})})
    reply = grid.app(Message(content, 1000, R.TRAIN), grid.contexts[1000])
    assert reply.has_error() and "not held by this node" in reply.error.reason
    no_partition = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config={})
    reply = grid.app(Message(content, 5, R.TRAIN), no_partition)
    assert reply.has_error() and "partition-id" in reply.error.reason


def test_discovery_fails_fast_when_a_partition_is_missing():
    grid = FakeGrid(2, {**LINEAR}, node_configs=[{R.PARTITION_ID: 0, R.NUM_PARTITIONS: 3},
                                               {R.PARTITION_ID: 1, R.NUM_PARTITIONS: 3}])
    ex = FlowerGridExecutor(grid, timeout=1, discovery_timeout=0.5)
    with pytest.raises(NodeDiscoveryError, match="partitions"):
        ex.discover()


def test_result_files_roundtrip(tmp_path):
    result = {"shared": {"w": np.arange(3.0)}, "history": [{"round": 1}]}
    write_result(result, tmp_path)
    back = read_result(tmp_path)
    assert np.allclose(back["shared"]["w"], np.arange(3.0)) and back["history"] == [{"round": 1}]


@pytest.mark.timeout(240)
def test_flower_simulation_engine_runs_two_rounds(tmp_path):
    """ServerApp + ClientApp in Flower's simulation engine (Ray): 6 users on 3 virtual SuperNodes, 2 rounds, one
    failing client; the same model as the fast simulator."""
    from ffmrec.federated.engines.flower.simulation import run_flower_simulation

    flat = linear_config(tmp_path / "sim", **{"num-users": 6, "rounds": 2, "client-timeout": 60.0,
                                              "discovery-timeout": 180.0, "fail-users": "4"})
    result = run_flower_simulation(flat, num_supernodes=3, num_cpus_per_client=1, ray_num_cpus=2)
    reference = fast_reference(flat, tmp_path / "fast")
    assert result.failures == 2 and result.test == pytest.approx(reference.test, rel=1e-6)
