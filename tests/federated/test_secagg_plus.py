"""Secure aggregation (Flower's SecAgg+) on the Flower engines: the server sees only the sum.

The first tests run Flower's ``SecAggPlusWorkflow`` and ``secaggplus_mod`` around ffmrec's real ClientApp through an
in-process Grid (no Ray, a second each) on the per-user linear task with unequal weights: every masked upload the
server receives is unrelated to the device's update, and the unmasked aggregate is the plain weighted mean within
the quantization error. The slow test runs a recipe in Flower's simulation engine with and without secure
aggregation: the same global model within the quantization error.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from itertools import count

import numpy as np
import pytest
import torch
from engine_data import write_interactions
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.supercore.task_identity import TaskIdentity

from ffmrec.errors import ConfigError
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.config import FederatedConfig, SecAggConfig
from ffmrec.federated.engines.flower import records as R
from ffmrec.federated.engines.flower.apps import make_client_app
from ffmrec.federated.engines.flower.engine import RESOLVER_KEY, RUN_DIR_KEY, FlowerEngine, run_driver
from ffmrec.federated.engines.flower.executor import FlowerGridExecutor
from ffmrec.federated.engines.flower.secagg import MODULUS, RUN_CONFIG_KEY, SecAggPlusEngine, check_one_user_per_node
from ffmrec.federated.server import check_round
from ffmrec.tasks.linear import LinearTask, from_flat

CLIP, LEVELS = 8.0, 2**22


class UnequalLinearTask(LinearTask):
    """The linear task with weights 3..8 (so the weighted mean is not the plain mean)."""

    def weight(self, client: int) -> int:
        return 3 + (5 * client) % 6


def resolve(flat: dict):
    """Method resolver of these tests: the linear task, per-user on a Flower engine, SecAgg+ as the flat config says."""
    config, _ = from_flat(flat)
    fed = dataclasses.replace(config.federated, engine="flower-sim", message_mode="per-user",
                              num_supernodes=config.linear.num_users,
                              secure_aggregation=bool(flat.get(RUN_CONFIG_KEY, False)))
    config.federated = fed
    return config, lambda c, partition: UnequalLinearTask(c.linear)


def flat_config(run_dir, secure, **kw):
    return {RESOLVER_KEY: f"{__name__}:resolve", RUN_DIR_KEY: str(run_dir), RUN_CONFIG_KEY: secure, "dim": 64,
            "out": 4, "num-users": 6, **kw}


class LoopbackGrid:
    """An in-process Grid: node ``1000 + i`` holds partition ``i`` and runs the real ``client_app`` with its own
    Context."""

    def __init__(self, num_nodes, flat):
        self.app = make_client_app(flat)
        self.contexts = {1000 + i: Context(run_id=1, node_id=1000 + i, state=RecordDict(), run_config={},
                                           node_config={R.PARTITION_ID: i, R.NUM_PARTITIONS: num_nodes})
                         for i in range(num_nodes)}
        self.pending, self._ids = {}, count()

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = f"m{next(self._ids)}"
            self.pending[msg.metadata.message_id] = copy.deepcopy(msg)  # a real Grid serializes each message
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids):
        out = []
        for msg_id in list(message_ids):
            msg = self.pending.pop(msg_id, None)
            if msg is not None:
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
                reply.metadata.__dict__["_message_id"] = f"r{msg_id}"
                out.append(reply)
        return out

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(list(messages)))


@pytest.fixture(autouse=True)
def task_identity():
    """Message() needs the identity of the running task (set by Flower in a real ServerApp process)."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


class LateContextGrid(LoopbackGrid):
    """A loaded SuperNode of Flower's deployment engine: a ClientApp process pushes its context after its reply, so
    the next message's process starts from the node's context as it was before the previous message."""

    def __init__(self, num_nodes, flat):
        super().__init__(num_nodes, flat)
        self.history = {node: [copy.deepcopy(c)] for node, c in self.contexts.items()}
        self.stale = 0

    def pull_messages(self, message_ids):
        out = []
        for msg_id in list(message_ids):
            msg = self.pending.pop(msg_id, None)
            if msg is not None:
                history = self.history[msg.metadata.dst_node_id]
                context = copy.deepcopy(history[-2] if len(history) > 1 else history[-1])
                self.stale += len(history) > 1
                reply = self.app(msg, context)
                history.append(context)
                reply.metadata.__dict__["_message_id"] = f"r{msg_id}"
                out.append(reply)
        return out


def one_round(tmp_path, users, grid_type=LoopbackGrid, **kw):
    """Round 1 of ``users`` twice from the same global model: under SecAgg+ (the engine, and every reply the server
    received) and in the clear (each user's record)."""
    flat = flat_config(tmp_path / "secure", True, **kw)
    config, build = resolve(flat)
    task = build(config, None)
    shared = {"weight": 0.1 * torch.randn(4, 64, generator=torch.Generator().manual_seed(1))}
    received = []
    grid = grid_type(6, flat)
    engine = SecAggPlusEngine(FlowerEngine(FlowerGridExecutor(grid, timeout=5, discovery_timeout=5), task, True),
                              config.federated, received)
    secure = check_round(engine.train_round(1, users, shared, ClientConfig(lr=0.1), False), task.shared_specs(), 8)
    plain_flat = flat_config(tmp_path / "plain", False, **kw)
    plain = FlowerEngine(FlowerGridExecutor(LoopbackGrid(6, plain_flat), timeout=5, discovery_timeout=5), task, True)
    clear = check_round(plain.train_round(1, users, shared, ClientConfig(lr=0.1), True), task.shared_specs(), 8)
    return engine, secure, {r.client_id: r for r in clear.records}, received


def masked_uploads(received, engine):
    """``{user: masked vector}`` from the stage-2 replies the server received."""
    user_of = {engine.executor.node_for(u): u for u in range(6)}
    out = {}
    for reply in received:
        if not reply.has_error() and Key.MASKED_PARAMETERS in reply.content.config_records[RECORD_KEY_CONFIGS]:
            arrays = [bytes_to_ndarray(b) for b in reply.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]]
            out[user_of[reply.metadata.src_node_id]] = (reply, arrays)
    return out


def test_the_server_sees_only_the_weighted_sum(tmp_path):
    engine, secure, records, received = one_round(tmp_path, [0, 1, 2, 3, 4, 5])
    assert secure.failures == [] and len(secure.partials) == 1
    part = secure.partials[0]
    weights = {u: 3 + (5 * u) % 6 for u in range(6)}
    assert {u: r.weight for u, r in records.items()} == weights  # 3, 8, 7, 6, 5, 4
    # the unmasked aggregate: sum_u n_u * delta_u / sum_u n_u, total weight 33, mean loss, within the quantization
    # error (one level of 2 * CLIP / LEVELS per device in units of n_u / max_weight, weights quantized to 1 / LEVELS)
    total = sum(weights.values())
    plain = sum(weights[u] * records[u].tensors["weight"].double() for u in range(6)) / total
    secure_mean = part.sums["weight"] / part.weight
    tolerance = 6 * (2 * CLIP / LEVELS) / (total / 8)
    assert part.client_ids == list(range(6)) and part.count == 6 and part.weight == total
    assert float((secure_mean - plain).abs().max()) < tolerance
    assert float(plain.abs().max()) > 1000 * tolerance  # a real update, not a vanishing one
    loss = sum(weights[u] * records[u].metrics["loss"] for u in range(6)) / total
    assert part.loss_sum / part.weight == pytest.approx(loss, abs=64 * tolerance)
    # what the server received of each device: a masked vector, unrelated to the device's update, and nothing else
    uploads = masked_uploads(received, engine)
    assert sorted(uploads) == list(range(6))
    for u, (reply, (factor, masked, stats)) in uploads.items():
        truth = records[u].tensors["weight"].double().numpy().ravel()
        values = masked.astype(np.float64).ravel()
        assert masked.shape == (4, 64) and values.min() >= 0 and values.max() < MODULUS
        assert abs(np.corrcoef(values, truth)[0, 1]) < 0.35  # 256 coordinates: 1 / 16 is one standard deviation
        naive = (values * 2 * CLIP / LEVELS - CLIP) * 8 / weights[u]  # read as if unmasked
        assert np.median(np.abs(naive - truth)) > 1e3 * float(np.abs(truth).max())
        assert values.max() > MODULUS / 2 > values.min()  # masks fill the 32-bit range (the updates use ~2^21)
        assert reply.content.metric_records["fitres.num_examples"]["num_examples"] == 0  # the weight travels masked
        assert all(len(a) == 0 for a in reply.content.array_records.values())  # no update in the clear
        assert dict(reply.content.config_records["fitres.metrics"]) == {}  # nor the loss
    # the masked vectors alone do not add up to the sum: the private masks come off only with the shares. Read as a
    # sum, they are uniform over the whole range (width 2^32 * 2 CLIP / LEVELS = 16,384): the typical coordinate is
    # thousands away from the true sum (a minimum over 256 coordinates came within 1.0 by chance in ~3% of runs)
    masked_sum = sum(a[1].astype(np.int64) for _, a in uploads.values()) % MODULUS
    width = MODULUS * 2 * CLIP / LEVELS
    assert np.median(np.abs(masked_sum * 2 * CLIP / LEVELS - 6 * CLIP - plain.numpy() * total / 8)) > width / 8


def test_the_recorder_saves_what_the_server_received_and_the_attacks_read_it(tmp_path):
    """With the recorder on, a secure round still aggregates the sum, and the recorder's file holds exactly the masked
    vectors, public keys and stated weights (0) the server received: no update, and nothing the attacks can read as
    one (no row is left untouched)."""
    from ffmrec.federated.observers import Recorder
    from ffmrec.federated.observers.recorder import load_round
    from ffmrec.privacy.attacks import egress_features

    flat = flat_config(tmp_path / "secure", True)
    config, build = resolve(flat)
    task = build(config, None)
    shared = {"weight": 0.1 * torch.randn(4, 64, generator=torch.Generator().manual_seed(1))}
    received = []
    engine = SecAggPlusEngine(FlowerEngine(FlowerGridExecutor(LoopbackGrid(6, flat), timeout=5, discovery_timeout=5),
                                           task, True), config.federated, received)
    result = check_round(engine.train_round(1, [0, 1, 2, 3, 4, 5], shared, ClientConfig(lr=0.1), True),
                         task.shared_specs(), 8)
    assert result.records == [] and len(result.partials) == 1 and result.partials[0].count == 6
    line = {}
    Recorder(tmp_path / "run", [1]).on_round(1, list(range(6)), shared, result, line)
    saved = load_round(tmp_path / "run", 1)
    assert line["recorded"] == 6 and saved["client_ids"].tolist() == list(range(6))
    assert saved["weights"].tolist() == [0] * 6  # the weight travels masked
    assert set(saved["tensors"]) == {"weight", "secagg/factor", "secagg/stats", "secagg/public-keys"}
    uploads = masked_uploads(received, engine)
    for u in range(6):
        factor, masked, stats = uploads[u][1]
        assert torch.equal(saved["tensors"]["weight"][u], torch.from_numpy(masked.astype(np.int64)))
        assert saved["tensors"]["secagg/factor"][u].tolist() == factor.astype(np.int64).ravel().tolist()
        assert saved["tensors"]["secagg/stats"][u].tolist() == stats.astype(np.int64).ravel().tolist()
    assert int(saved["tensors"]["secagg/public-keys"].count_nonzero()) > 6 * 32  # each device's two public keys
    features = egress_features(tmp_path / "run")
    assert set(features) >= {"values:dense", "metadata", "all"}
    assert np.ptp(features["metadata"].features) == 0  # every device stated the same weight: nothing to learn


def test_a_device_dropping_out_after_sharing_its_keys_is_left_out_of_the_sum(tmp_path):
    engine, secure, records, _ = one_round(tmp_path, [0, 1, 2, 3, 4, 5], **{"fail-users": "2"})
    assert [u for u, _ in secure.failures] == [2] and "fails on purpose" in secure.failures[0][1]
    part = secure.partials[0]
    survivors = [0, 1, 3, 4, 5]
    weights = {u: records[u].weight for u in survivors}
    plain = sum(weights[u] * records[u].tensors["weight"].double() for u in survivors) / sum(weights.values())
    assert part.client_ids == survivors and part.weight == sum(weights.values())
    assert float((part.sums["weight"] / part.weight - plain).abs().max()) < 5 * (2 * CLIP / LEVELS) / (26 / 8)


def test_devices_starting_from_the_context_before_the_last_still_sum_securely(tmp_path):
    """Each stage's ClientApp gets the node's context of two stages ago (Flower pushes a process's context after its
    reply): the devices read their SecAgg+ state back from their own disk, all 6 take part, the sum is right, and
    no state file (the round's secrets) is left after unmasking."""
    engine, secure, records, _ = one_round(tmp_path, [0, 1, 2, 3, 4, 5], grid_type=LateContextGrid)
    assert secure.failures == [] and secure.partials[0].client_ids == list(range(6))
    assert engine.executor.grid.stale >= 6 * 3  # share keys, collect, unmask of every device: stale contexts
    part = secure.partials[0]
    weights = {u: records[u].weight for u in range(6)}
    plain = sum(weights[u] * records[u].tensors["weight"].double() for u in range(6)) / sum(weights.values())
    assert float((part.sums["weight"] / part.weight - plain).abs().max()) < 6 * (2 * CLIP / LEVELS) / (33 / 8)
    assert not list((tmp_path / "secure" / "devices").glob("*/secaggplus-*"))


def test_a_secure_device_refuses_a_plain_train_message(tmp_path):
    flat = flat_config(tmp_path, True)
    grid = LoopbackGrid(6, flat)
    content = RecordDict({R.META: ConfigRecord({R.USER_IDS: [1], R.SERVER_ROUND: 1, R.SESSION: "s",
                                                R.WANT_RECORDS: True})})
    reply = grid.app(Message(content, 1001, R.TRAIN), grid.contexts[1001])
    assert reply.has_error() and "plain train message" in reply.error.reason


def test_driver_runs_secure_rounds_like_plain_ones(tmp_path):
    """ffmrec's driver over the secure engine (the ServerApp's path): 3 rounds of 4 of 6 users, the same model as
    the plain per-user run within the quantization error, and the same history but for the rounding."""
    results = {}
    for secure in (False, True):
        flat = flat_config(tmp_path / str(secure), secure, rounds=3, **{"clients-per-round": 4})
        results[secure] = run_driver(flat, FlowerGridExecutor(LoopbackGrid(6, flat), timeout=5, discovery_timeout=5))
    a = torch.load(tmp_path / "False" / "server.pt", weights_only=False)["params"]["weight"]
    b = torch.load(tmp_path / "True" / "server.pt", weights_only=False)["params"]["weight"]
    assert float((a - b).abs().max()) < 3 * 4 * (2 * CLIP / LEVELS) / (12 / 8) and float(a.abs().max()) > 0.1
    lines = {s: [json.loads(x) for x in (tmp_path / str(s) / "history.jsonl").read_text().splitlines()]
             for s in (False, True)}
    assert [line["ok"] for line in lines[True]] == [line["ok"] for line in lines[False]] == [4, 4, 4]
    assert [line["loss"] for line in lines[True]] == pytest.approx([line["loss"] for line in lines[False]], abs=1e-3)
    assert results[True].test == pytest.approx(results[False].test, rel=1e-3)


def resolve_dp(flat: dict):
    """:func:`resolve` with central DP clipped on the device: ``dp-clip`` (client_clip_norm), ``dp-noise`` (central
    noise multiplier), ``noise-seed``."""
    config, build = resolve(flat)
    config.federated = dataclasses.replace(config.federated, client_clip_norm=float(flat["dp-clip"]),
                                           central_clip_norm=None, central_noise_multiplier=float(flat["dp-noise"]),
                                           noise_seed=int(flat["noise-seed"]))
    return config, build


def test_central_dp_under_secure_aggregation_is_the_fast_simulators_central_dp(tmp_path):
    """Central DP with device-side clipping, 2 rounds of 4 of 6 users of unequal weights: under SecAgg+ (ffmrec's
    driver over Flower's workflow and ClientApp) the server gets only the sum of the clipped updates and the count,
    adds the noise, and ends with the fast simulator's model (same clipping, same weight 1, same noise seed) within
    the quantization error; the noise is really there (a model far from the noiseless one)."""
    from ffmrec.federated.engines.fast import FastSimulator
    from ffmrec.federated.server import run_server
    from ffmrec.federated.strategies import build_strategy
    from ffmrec.federated.transforms import build_transform

    def secure_run(noise):
        flat = {**flat_config(tmp_path / f"secure-{noise}", True, rounds=2, **{"clients-per-round": 4}),
                RESOLVER_KEY: f"{__name__}:resolve_dp", "dp-clip": 0.05, "dp-noise": noise, "noise-seed": 3}
        run_driver(flat, FlowerGridExecutor(LoopbackGrid(6, flat), timeout=5, discovery_timeout=5))
        return flat, torch.load(tmp_path / f"secure-{noise}" / "server.pt", weights_only=False)["params"]["weight"]

    flat, secure = secure_run(0.5)
    config, build = resolve_dp(flat)
    task = build(config, None)
    fed = dataclasses.replace(config.federated, engine="fast", secure_aggregation=False)
    run_server(task, FastSimulator(task, transform=build_transform(fed)), build_strategy(fed), fed, tmp_path / "fast",
               config.seed, progress=False)
    fast = torch.load(tmp_path / "fast" / "server.pt", weights_only=False)["params"]["weight"]
    lines = [json.loads(x) for x in (tmp_path / "secure-0.5" / "history.jsonl").read_text().splitlines()]
    assert [line["ok"] for line in lines] == [4, 4]
    # weight factor 1: one quantization level (2 CLIP / LEVELS) per device and coordinate, the mean's error within one
    # level per round; twice that over 2 rounds
    tolerance = 2 * 2 * (2 * CLIP / LEVELS)
    assert float((secure - fast).abs().max()) < tolerance
    _, noiseless = secure_run(0.0)
    noise = 0.5 * 0.05 / 4 * 2**0.5  # N(0, (z C)^2) on the sum of 4 clipped updates, over 4, in each of 2 rounds
    assert 0.7 * noise < float((secure - noiseless).std()) < 1.3 * noise


BASE = dict(engine="flower-sim", message_mode="per-user", strategy="fedavg", secure_aggregation=True,
            clients_per_round=8, num_supernodes=16)


@pytest.mark.parametrize("change,setting", [
    ({"engine": "fast"}, "federated.engine"),
    ({"message_mode": "cohort"}, "message_mode=per-user"),
    ({"strategy": "median"}, "strategy=median"),
    ({"strategy": "krum"}, "strategy=krum"),
    ({"strategy": "trimmed_mean"}, "strategy=trimmed_mean"),
    ({"strategy": "rowwise_fedavg"}, "strategy=rowwise_fedavg"),
    ({"strategy": "lora_product"}, "strategy=lora_product"),
    ({"max_update_norm": 1.0}, "max_update_norm"),
    ({"central_noise_multiplier": 1.0}, "central_noise_multiplier"),
    ({"central_noise_multiplier": 1.0}, "set federated.client_clip_norm"),  # no bound on the device: the fix
    ({"central_noise_multiplier": 1.0, "client_clip_norm": 1.0}, "central_clip_norm=null"),  # the server would clip
    ({"audit": True}, "federated.audit"),
    ({"hide_metadata": True}, "hide_metadata=false"),
    ({"clients_per_round": 1, "min_clients": 1}, "at least 2 clients"),
    ({"clients_per_round": 1024}, "quantization_range"),
], ids=lambda v: str(v) if isinstance(v, str) else next(iter(v)))
def test_impossible_combinations_are_refused_with_the_setting_and_the_fix(change, setting):
    with pytest.raises(ConfigError, match=setting) as err:
        FederatedConfig(**{**BASE, **change})
    assert "\n" not in str(err.value) and "secure" in str(err.value)


@pytest.mark.parametrize("secagg,setting", [({"num_shares": 2}, "num_shares"),
                                            ({"reconstruction_threshold": 0.0}, "reconstruction_threshold"),
                                            ({"clipping_range": 0.0}, "clipping_range")])
def test_bad_secagg_parameters_are_refused(secagg, setting):
    with pytest.raises(ConfigError, match=setting):
        SecAggConfig(**secagg)


def test_linear_strategies_and_client_side_privacy_are_accepted():
    from ffmrec.federated.strategies import build_strategy

    for strategy in ("fedavg", "fedprox", "fedadam"):
        FederatedConfig(**{**BASE, "strategy": strategy, "client_clip_norm": 1.0, "client_noise_multiplier": 0.5})
        # central DP whose clipping moved to the device: the server adds the noise to the sum SecAgg+ gives it
        fed = FederatedConfig(**{**BASE, "strategy": strategy, "client_clip_norm": 1.0, "central_clip_norm": None,
                                 "central_noise_multiplier": 1.0})
        dp = build_strategy(fed)
        assert dp.clipping == "device" and dp.linear and type(dp.inner).__name__.lower() == strategy
    FederatedConfig(**{**BASE, "clients_per_round": 1023})  # 1023 * 2^22 < 2^32
    check_one_user_per_node(FederatedConfig(**BASE), 16)
    with pytest.raises(ConfigError, match="num_supernodes >= 17"):
        check_one_user_per_node(FederatedConfig(**BASE), 17)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_flower_simulation_with_secure_aggregation_gives_the_plain_model(tmp_path, monkeypatch):
    """FedSASRec in Flower's simulation engine (Ray), per-user messages on one SuperNode per user, 2 rounds of 5 of
    10 users: with SecAgg+ the same global model and metrics as without, within the quantization error."""
    from ffmrec.pipeline import pipeline
    from ffmrec.recipes import load_recipe

    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_interactions(tmp_path / "interactions.csv", num_users=10)
    common = ["model.max_len=8", "model.hidden_size=16", "model.inner_size=32", "model.dropout=0.0",
              "federated.rounds=2", "federated.clients_per_round=5", "federated.eval_every=2",
              "federated.strategy=fedavg", "federated.server_lr=1.0", "federated.client.lr=0.5",
              "federated.client.personal_lr=0.2", "federated.num_supernodes=10", "federated.engine=flower-sim",
              "federated.message_mode=per-user", "federated.client_timeout=120"]
    runs = {}
    for secure in (False, True):
        config = load_recipe("fedsasrec", str(data), [*common, f"federated.secure_aggregation={str(secure).lower()}"])
        runs[secure] = pipeline(config, tmp_path / f"secure-{secure}", progress=False)
    a = torch.load(runs[False].out_dir / "server.pt", weights_only=False)
    b = torch.load(runs[True].out_dir / "server.pt", weights_only=False)
    moved = 0.0
    for name, value in a["params"].items():
        torch.testing.assert_close(b["params"][name], value, atol=1e-4, rtol=0)
        moved = max(moved, float((value - a["best_params"][name]).abs().max()))
    lines = {s: [json.loads(x) for x in (runs[s].out_dir / "history.jsonl").read_text().splitlines()]
             for s in (False, True)}
    assert [line["ok"] for line in lines[True]] == [line["ok"] for line in lines[False]] == [5, 5]
    assert [line["loss"] for line in lines[True]] == pytest.approx([line["loss"] for line in lines[False]], abs=1e-3)
    assert runs[True].metrics == pytest.approx(runs[False].metrics, abs=0.02)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_flower_simulation_with_secure_aggregation_and_central_dp_gives_the_fast_simulators_model(tmp_path,
                                                                                                   monkeypatch):
    """FedSASRec, 1 round of 4 of 6 users, central DP clipped on the device (C = 0.5, z = 1, a fixed noise seed): in
    Flower's simulation engine (Ray) under SecAgg+ the same global model as the fast simulator's, within the
    quantization error, and not the noiseless one."""
    from ffmrec.pipeline import pipeline
    from ffmrec.recipes import load_recipe

    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_interactions(tmp_path / "interactions.csv", num_users=6)
    common = ["model.max_len=8", "model.hidden_size=8", "model.inner_size=16", "model.num_layers=1",
              "model.num_heads=1", "model.dropout=0.0", "federated.rounds=1", "federated.clients_per_round=4",
              "federated.eval_every=1", "federated.strategy=fedavg", "federated.server_lr=1.0",
              "federated.client.lr=0.5", "federated.client.personal_lr=0.2", "federated.num_supernodes=6",
              "federated.message_mode=per-user", "federated.client_timeout=120", "federated.client_clip_norm=0.5",
              "federated.central_clip_norm=null", "federated.noise_seed=5"]
    params = {}
    for name, extra in (("sim", ["federated.engine=flower-sim", "federated.secure_aggregation=true",
                                 "federated.central_noise_multiplier=1.0"]),
                        ("fast", ["federated.engine=fast", "federated.central_noise_multiplier=1.0"]),
                        ("noiseless", ["federated.engine=fast", "federated.central_noise_multiplier=0.0"])):
        run = pipeline(load_recipe("fedsasrec", str(data), [*common, *extra]), tmp_path / name, progress=False)
        params[name] = torch.load(run.out_dir / "server.pt", weights_only=False)["params"]
    for name, value in params["fast"].items():
        torch.testing.assert_close(params["sim"][name], value, atol=2 * (2 * CLIP / LEVELS), rtol=0)
    assert max(float((params["fast"][k] - params["noiseless"][k]).abs().max()) for k in params["fast"]) > 0.05


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_deployment_with_secure_aggregation_gives_the_plain_model(tmp_path, monkeypatch):
    """FedSASRec on a SuperLink and 4 SuperNodes as processes (TLS, SuperNode authentication; a new ClientApp process
    per message), one user per SuperNode, 2 rounds of 3 of 4 users under SecAgg+: every device takes part in every
    round, the global model, losses and metrics are the fast simulator's without secure aggregation within the
    quantization error, no device keeps a round's secrets on its disk, and every process the run started is gone."""
    from ffmrec.federated.engines.flower.deploy.processes import descendants, processes_mentioning
    from ffmrec.methods import build_federated_task
    from ffmrec.pipeline import pipeline
    from ffmrec.recipes import load_recipe

    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_interactions(tmp_path / "interactions.csv", num_users=4)
    common = ["model.max_len=8", "model.hidden_size=8", "model.inner_size=16", "model.num_layers=1",
              "model.num_heads=1", "model.dropout=0.0", "federated.rounds=2", "federated.clients_per_round=3",
              "federated.eval_every=1", "federated.strategy=fedavg", "federated.server_lr=1.0",
              "federated.client.lr=0.5", "federated.client.personal_lr=0.2", "federated.num_supernodes=4",
              "federated.message_mode=per-user", "federated.client_timeout=120", "federated.deploy_timeout=900"]
    runs, configs = {}, {}
    for engine, secure in (("fast", False), ("flower-deploy", True)):
        configs[engine] = load_recipe("fedsasrec", str(data), [*common, f"federated.engine={engine}",
                                                               f"federated.secure_aggregation={str(secure).lower()}"])
        runs[engine] = pipeline(configs[engine], tmp_path / engine, progress=False)
    assert not descendants(os.getpid()) and not processes_mentioning(str(tmp_path))
    out = runs["flower-deploy"].out_dir
    assert not list((out / "devices").glob("*/secaggplus-*"))  # removed after each round's last stage
    a = torch.load(runs["fast"].out_dir / "server.pt", weights_only=False)["params"]
    b = torch.load(out / "server.pt", weights_only=False)["params"]
    start = build_federated_task(configs["fast"]).initial_shared()
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, atol=1e-4, rtol=0)
    assert max(float((a[k] - start[k]).abs().max()) for k in start) > 1e-2  # the model moved
    lines = {e: [json.loads(x) for x in (runs[e].out_dir / "history.jsonl").read_text().splitlines()] for e in runs}
    assert [(h["ok"], h["failed"]) for h in lines["flower-deploy"]] == [(3, 0), (3, 0)]
    assert [h["loss"] for h in lines["flower-deploy"]] == pytest.approx([h["loss"] for h in lines["fast"]], abs=1e-3)
    assert runs["flower-deploy"].metrics == pytest.approx(runs["fast"].metrics, abs=0.02)
