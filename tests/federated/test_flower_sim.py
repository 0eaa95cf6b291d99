"""The Flower engines' executor, ClientApp and simulation runner (ffmrec.federated.engines.flower).

The first tests drive ``FlowerGridExecutor`` and the real ``client_app`` through an in-process fake ``Grid`` (no Ray,
well under a second each); the last one runs the whole ServerApp + ClientApp in Flower's simulation engine.
"""

from __future__ import annotations

import time
from itertools import count

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from ffmrec.federated.engines.flower import records as R
from ffmrec.federated.engines.flower.apps import make_client_app, write_result
from ffmrec.federated.engines.flower.deploy import read_result
from ffmrec.federated.engines.flower.executor import FlowerGridExecutor, NodeDiscoveryError
from ffmrec.federated.engines.flower.toy import ToyLinearTask, fedavg_driver

TOY = {"task-factory": "ffmrec.federated.engines.flower.toy:build_toy_task",
       "driver": "ffmrec.federated.engines.flower.toy:fedavg_driver"}


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
        self.sent = []  # (node, message type, user id)
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
            uid = msg.content[R.META].get(R.USER_ID) if R.META in msg.content else None
            self.sent.append((node, msg.metadata.message_type, uid))
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


def test_executor_routes_users_to_their_nodes_and_keeps_personal_state():
    config = {**TOY, "num-users": 7}
    grid = FakeGrid(3, config)
    ex = FlowerGridExecutor(grid, timeout=5, discovery_timeout=5, max_in_flight_per_node=1)
    assert ex.discover() == {0: 1000, 1: 1001, 2: 1002}
    task = ToyLinearTask(config)
    shared = task.initial_shared()
    out1 = ex.train(1, [6, 0, 3, 1], shared, {"server-round": 1})
    assert [o.client_id for o in out1] == [0, 1, 3, 6]  # ordered by client id
    assert all(o.error is None and o.num_examples == 8 for o in out1)
    assert all(o.metrics["had-personal"] == 0.0 for o in out1)
    # every user went to node partition u % 3, one message at a time per node (simulation engine: Context race)
    assert {(node, uid) for node, kind, uid in grid.sent if kind == "train"} == {(1000, 0), (1000, 3), (1000, 6),
                                                                                  (1001, 1)}
    assert max(grid.max_in_flight.values()) == 1
    # the delta is exactly the task's update; the personal state stays on the node
    expected = task.client_update(3, shared, None, {})
    assert np.allclose(out1[2].delta["w"], expected.delta["w"])
    assert "personal-3" in grid.contexts[1000].state and "personal-2" not in grid.contexts[1002].state
    out2 = ex.train(2, [0, 2, 3], shared, {"server-round": 2})
    assert [o.metrics["had-personal"] for o in out2] == [1.0, 0.0, 1.0]
    ev = ex.evaluate(list(range(7)), shared, "valid")
    assert [o.client_id for o in ev] == list(range(7))
    assert all(o.delta is None and o.num_examples == 1 and "mse" in o.metrics for o in ev)


def test_executor_turns_client_errors_and_silent_nodes_into_outcomes():
    config = {**TOY, "num-users": 6, "fail-users": "4"}
    grid = FakeGrid(3, config)
    ex = FlowerGridExecutor(grid, timeout=0.5, discovery_timeout=5, max_in_flight_per_node=2)
    ex.discover()
    grid.silent.add(1002)  # node of partition 2 stops answering
    shared = ToyLinearTask(config).initial_shared()
    t0 = time.monotonic()
    out = ex.train(1, list(range(6)), shared, {})
    elapsed = time.monotonic() - t0
    errors = {o.client_id: o.error for o in out if o.error}
    assert set(errors) == {2, 4, 5}
    assert "fails on purpose" in errors[4]
    assert "timeout" in errors[2] and "1002" in errors[2]
    assert "timeout" in errors[5] or "timed out" in errors[5]
    assert elapsed < 3.0  # one timeout for the node, not one per user
    assert all(o.delta is not None for o in out if o.client_id in (0, 1, 3))
    assert max(grid.max_in_flight.values()) == 2


def test_executor_survives_a_node_leaving_and_maps_its_replacement():
    config = {**TOY, "num-users": 4}
    grid = FakeGrid(2, config)
    ex = FlowerGridExecutor(grid, timeout=0.5, discovery_timeout=5)
    ex.discover()
    shared = ToyLinearTask(config).initial_shared()
    gone = grid.contexts.pop(1001)  # partition 1 disconnects
    out = ex.train(1, [0, 1, 2, 3], shared, {})
    assert [o.error is None for o in out] == [True, False, True, False]
    assert "no SuperNode holds partition 1" in out[1].error
    grid.contexts[2001] = gone  # it comes back under a new node id
    out = ex.train(2, [0, 1, 2, 3], shared, {})
    assert all(o.error is None for o in out) and ex.partition_to_node == {0: 1000, 1: 2001}


def test_client_app_refuses_users_of_other_partitions():
    config = {**TOY, "num-users": 6}
    grid = FakeGrid(2, config)
    ctx = grid.contexts[1000]  # partition 0 of 2
    content = RecordDict({R.SHARED: R.to_array_record({"w": np.zeros(10)}),
                          R.META: R.to_config_record({R.USER_ID: 3, R.STAGE: "train"})})
    reply = grid.app(Message(content, 1000, R.TRAIN), ctx)
    assert reply.has_error() and "not held by this node" in reply.error.reason
    no_partition = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config={})
    reply = grid.app(Message(content, 5, R.TRAIN), no_partition)
    assert reply.has_error() and "partition-id" in reply.error.reason


def test_discovery_fails_fast_when_a_partition_is_missing():
    grid = FakeGrid(2, {**TOY}, node_configs=[{R.PARTITION_ID: 0, R.NUM_PARTITIONS: 3},
                                               {R.PARTITION_ID: 1, R.NUM_PARTITIONS: 3}])
    ex = FlowerGridExecutor(grid, timeout=1, discovery_timeout=0.5)
    with pytest.raises(NodeDiscoveryError, match="partitions"):
        ex.discover()


def test_toy_driver_and_result_files(tmp_path):
    config = {**TOY, "num-users": 4, "rounds": 2}
    ex = FlowerGridExecutor(FakeGrid(2, config), timeout=5, discovery_timeout=5)
    result = fedavg_driver(config, ex)
    write_result(result, tmp_path)
    back = read_result(tmp_path)
    assert np.allclose(back["shared"]["w"], result["shared"]["w"])
    assert not np.allclose(back["shared"]["w"], back["initial"]["w"])
    assert [h.get("round") for h in back["history"]] == [1, 2, None]


@pytest.mark.timeout(240)
def test_flower_simulation_engine_runs_two_rounds():
    """ServerApp + ClientApp in Flower's simulation engine (Ray): 6 users on 3 virtual SuperNodes, 2 rounds."""
    from ffmrec.federated.engines.flower.simulation import run_flower_simulation

    config = {**TOY, "num-users": 6, "rounds": 2, "client-timeout": 60.0, "discovery-timeout": 60.0,
              "fail-users": "4"}
    result = run_flower_simulation(config, num_supernodes=3, num_cpus_per_client=1, ray_num_cpus=2)
    assert not np.allclose(result["shared"]["w"], result["initial"]["w"])
    rounds, final = result["history"][:2], result["history"][2]
    for r in rounds:
        assert r["succeeded"] == [0, 1, 2, 3, 5]
        assert set(r["errors"]) == {4} and "fails on purpose" in r["errors"][4]
        assert np.isfinite(r["train"]["loss"])
    assert rounds[1]["train"]["loss"] < rounds[0]["train"]["loss"]
    assert rounds[0]["train"]["had-personal"] == 0.0 and rounds[1]["train"]["had-personal"] == 1.0
    assert final["clients"] == 6 and np.isfinite(final["metrics"]["mse"])
    # users 0-3 and 5 trained, so their personal state was found on their (virtual) SuperNode at evaluation time
    assert final["metrics"]["had-personal"] == pytest.approx(5 / 6)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_flower_simulation_via_flwr_run_matches_in_process():
    """The same run launched the way flwr 1.41 recommends: `flwr run` against a `flower-superlink --simulation` on a
    free 127.0.0.1 port (started and stopped by the runner). Same seeds, same users: same final model."""
    from ffmrec.federated.engines.flower.simulation import run_flower_simulation

    config = {**TOY, "num-users": 6, "rounds": 2, "client-timeout": 60.0, "discovery-timeout": 60.0}
    via_cli = run_flower_simulation(config, num_supernodes=3, mode="flwr-run", timeout=180)
    ex = FlowerGridExecutor(FakeGrid(3, config), timeout=5, discovery_timeout=5)
    reference = fedavg_driver(config, ex)
    assert np.allclose(via_cli["shared"]["w"], reference["shared"]["w"])
    assert via_cli["history"][1]["succeeded"] == list(range(6))
    assert via_cli["history"][2]["metrics"]["had-personal"] == 1.0
