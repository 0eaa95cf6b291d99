"""Secure aggregation on the Flower engines: Flower's SecAgg+ (Bell et al., CCS 2020) around ffmrec's train messages.

With ``federated.secure_aggregation`` on, a round's training runs as Flower's own
:class:`~flwr.server.workflow.SecAggPlusWorkflow` (server) and :func:`~flwr.client.mod.secaggplus_mod` (device):

1. *setup* and *share keys*: every sampled device makes two key pairs and sends Shamir shares of its secrets,
   encrypted for its SecAgg+ neighbours, through the server;
2. *collect masked vectors*: the device receives ffmrec's ordinary train content (global shared parameters, round
   config, its user id), trains, and Flower's mod scales its update by ``weight / max_weight``, clips it to
   ``[-clipping_range, clipping_range]``, quantizes it to ``[0, quantization_range]`` and adds a private mask and one
   pairwise mask per neighbour (mod 2^32): what reaches the server is uniformly random on its own;
3. *unmask*: the survivors send the shares that remove the masks; the server learns only the weighted mean of the
   survivors' updates (and of a dropped device's nothing: its pairwise masks are rebuilt from its neighbours' shares).

ffmrec's part is small. :class:`SecAggPlusEngine` (the driver's engine) runs the workflow for one round through the
executor's ``Grid``, with ffmrec's train content in the stage-2 messages instead of a legacy ``FitIns`` (the only
override: :class:`_Workflow`), and turns the workflow's aggregate into one :class:`~ffmrec.federated.records.PartialSum`
of the survivors; :func:`client_mod` (the ClientApp's train mod) puts Flower's mod around ffmrec's train handler:
the device checks its own record (declared tensors, finite, weight within the bound: the check the server can no
longer do), hands Flower's mod the update as a legacy ``FitRes`` with two extra coordinates, and refuses any plain
train message (which would reveal its update).

A device's SecAgg+ state (its key pairs, the shares it holds, its stage) lives in ``context.state`` between the four
stages. On the deployment engine every message is a new ``flwr-clientapp`` process, and Flower 1.41's process pushes its
reply to the SuperNode *before* its context (``run_clientapp``: the reply in ``finally``, the context in the exit
handler): under load the next stage's process can start from the context of the stage before, and Flower's mod then
aborts ("ValueError: Abort secure aggregation: expect setup stage, but receive share_keys stage"): the device drops out,
and with all of them the round. :func:`client_mod` therefore keeps the state on the device's own disk too
(``secaggplus-run-<run>.state`` beside its personal state, mode 0600, written before the reply leaves the device, read
back before each stage, deleted after the last stage of a round), so each stage sees the one before whatever the order
of Flower's pushes (tests/federated/test_secagg_plus.py gives each stage the context of two stages ago to check it). The
same code runs on the simulation engine.

What the server sees of one device in a round: two public keys, ciphertexts of shares for its neighbours, the masked
vector, the shares it needs, and ``num_examples = 0`` (the device's weight travels masked inside the vector: Flower's
mod would otherwise send it in the clear). What it learns: the survivors' ids, their weighted mean update, their
weighted mean loss and their total weight (the two extra coordinates: ``clipping_range * loss / LOSS_SCALE`` and
``clipping_range / weight``, whose weighted means give the mean loss and ``count / total weight``). Evaluation is not
secured: each device still reports its own ranks, as in every engine. With ``federated.record_rounds`` the recorder
saves what the server received in those rounds (each survivor's masked vector, public keys and stated weight:
:meth:`SecAggPlusEngine._received`) in the recorder's usual format, so that ``ffmrec attack`` attacks exactly that.

Central DP composes with it when the devices clip (``federated.client_clip_norm=C``, ``central_clip_norm=null``;
:class:`~ffmrec.federated.strategies.central_dp.CentralDP` in device mode, the design of Flower's
``DifferentialPrivacyClientSideFixedClipping``): each device clips its update to L2 norm ``C`` and states weight 1
(then ``max_weight`` is 1 and Flower's weight factor 1), SecAgg+ gives the server the sum of the clipped updates and
the count, and the server adds ``N(0, (z C)^2 I)`` to that sum before dividing by the count: the released models are
``(epsilon, delta)``-DP (:func:`ffmrec.privacy.accounting.run_epsilon`) and no single update is ever seen.

Requirements (checked by :func:`check_config`): a Flower engine (``flower-sim`` or ``flower-deploy``) in per-user mode
with one user per SuperNode (a SuperNode is one device: the SecAgg+ party), a linear strategy (FedAvg, FedProx, FedAdam:
the server has only the mean), no egress audit (it reads records the server no longer has), no ``hide_metadata`` (the
weight and loss already travel masked), no server-side clipping (``max_update_norm``, or central DP with
``central_clip_norm``: clip on the device instead with ``federated.client_clip_norm``), and ``clients_per_round *
quantization_range < 2^32`` (the masked sums would overflow Flower's 32-bit modulus). Stochastic rounding is drawn from
``(seed, round, user)``, so a run is reproducible; a run with and one without secure aggregation agree within the
quantization error (``(2 * clipping_range / quantization_range) * max_weight / weight`` per coordinate of one device's
update).
"""

from __future__ import annotations

import logging
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, bytes_to_ndarray, ndarrays_to_parameters
from flwr.common.constant import ErrorCode
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE, Key, Stage
from flwr.common.serde import config_record_from_proto, config_record_to_proto
from flwr.compat.common import recorddict_compat as compat
from flwr.proto.recorddict_pb2 import ConfigRecord as ProtoConfigRecord
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey

from ffmrec.errors import ConfigError, FFMRecError
from ffmrec.federated.engines.base import RoundResult
from ffmrec.federated.engines.flower import records as R
from ffmrec.federated.records import ClientRecord, PartialSum, RecordError, check_record

log = logging.getLogger("ffmrec.flower")

RUN_CONFIG_KEY = "secure-aggregation"  # flat Flower run config: the devices refuse plain train messages
MODULUS = 2**32  # Flower's SecAgg+ modulus (its default and maximum)
LOSS_SCALE = 64.0  # a loss up to LOSS_SCALE * max_weight / weight passes the clipping unchanged
NUM_EXAMPLES = "fitres.num_examples"


def check_config(fed) -> None:
    """Refuse, with one line naming the setting and the fix, what secure aggregation cannot run with."""
    from ffmrec.federated.strategies import build_strategy

    what = "federated.secure_aggregation=true"
    if fed.engine == "fast":
        raise ConfigError(f"{what} needs a Flower engine (the fast simulator sums the clients' updates in the clear): "
                          "set federated.engine=flower-sim or flower-deploy.")
    if fed.message_mode != "per-user":
        raise ConfigError(f"{what} needs federated.message_mode=per-user (one device per SuperNode; a cohort message "
                          f"sums a SuperNode's users in the clear), not {fed.message_mode!r}.")
    if fed.max_update_norm:
        raise ConfigError(f"{what} hides each update from the server, which cannot bound it "
                          f"(federated.max_update_norm={fed.max_update_norm}): bound it on the device with "
                          "federated.client_clip_norm and set max_update_norm=null.")
    if fed.central_noise_multiplier is not None and (fed.central_clip_norm is not None or fed.client_clip_norm is None):
        raise ConfigError(f"{what} hides each update from the server, which cannot clip it for central DP "
                          f"(federated.central_noise_multiplier={fed.central_noise_multiplier}, central_clip_norm="
                          f"{fed.central_clip_norm}, client_clip_norm={fed.client_clip_norm}): clip on the device "
                          "instead: set federated.client_clip_norm (e.g. 1.0) and federated.central_clip_norm=null.")
    if not build_strategy(fed).linear:
        raise ConfigError(f"{what}: federated.strategy={fed.strategy} needs every client's update, the server sees only "
                          "their sum: use fedavg, fedprox or fedadam.")
    if fed.hide_metadata:
        raise ConfigError(f"{what} already hides each device's weight and loss (they travel masked, and the server "
                          "learns only their totals), and federated.hide_metadata's unreported (NaN) loss cannot be "
                          "summed: set federated.hide_metadata=false.")
    if fed.audit:
        raise ConfigError(f"{what}: federated.audit reads each client's record, which the server never sees: set "
                          "federated.audit=false (or secure_aggregation=false).")
    if fed.clients_per_round is not None:
        check_round_size(fed.clients_per_round, fed.secagg.quantization_range)


def check_round_size(clients: int, quantization_range: int) -> None:
    if clients < 2:
        raise ConfigError(f"federated.secure_aggregation=true needs at least 2 clients per round (the sum of one is its "
                          f"update), not federated.clients_per_round={clients}.")
    if clients * quantization_range >= MODULUS:
        raise ConfigError(f"federated.secure_aggregation=true: clients_per_round={clients} times "
                          f"federated.secagg.quantization_range={quantization_range} reaches 2^32, Flower's SecAgg+ "
                          f"modulus (the masked sums would overflow): set quantization_range below "
                          f"{-(-MODULUS // clients)} or sample fewer clients.")


def check_one_user_per_node(fed, num_users: int) -> None:
    """A SuperNode is one device in secure aggregation: the engines need ``num_supernodes >= num_users``."""
    if fed.secure_aggregation and fed.num_supernodes < num_users:
        raise ConfigError(f"federated.secure_aggregation=true needs one user per SuperNode (a SuperNode is one device, "
                          f"the SecAgg+ party): set federated.num_supernodes >= {num_users} (the number of users), not "
                          f"{fed.num_supernodes}.")


# --- server ----------------------------------------------------------------------------------------------------------
class _Workflow(SecAggPlusWorkflow):
    """Flower's workflow, whose stage-2 messages carry ffmrec's train content (``contents[node]``) instead of the
    legacy ``FitIns`` its ``configure_fit`` would build."""

    def __init__(self, contents: dict[int, RecordDict], **kwargs):
        super().__init__(**kwargs)
        self.contents = contents

    def setup_stage(self, grid, context, state) -> bool:
        ok = super().setup_stage(grid, context, state)
        state.nid_to_fitins = {nid: self.contents[nid] for nid in state.nid_to_fitins}
        return ok


class _Collect(LegacyStrategy):
    """The legacy strategy the workflow asks: it samples the round's nodes and keeps the unmasked aggregate."""

    def __init__(self, proxies: list[GridClientProxy]):
        self.proxies = proxies
        self.aggregate: list[np.ndarray] | None = None
        self.survivors: list[int] = []

    def configure_fit(self, server_round, parameters, client_manager):
        from flwr.common import FitIns, Parameters

        return [(p, FitIns(Parameters(tensors=[], tensor_type=""), {})) for p in self.proxies]

    def aggregate_fit(self, server_round, results, failures):
        self.survivors = [proxy.node_id for proxy, _ in results]
        if results:
            from flwr.common import parameters_to_ndarrays

            self.aggregate = parameters_to_ndarrays(results[0][1].parameters)  # every result carries the aggregate
        return None, {}

    def initialize_parameters(self, client_manager):
        return None

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class _Tap:
    """The executor's Grid, keeping each node's error reply (the reason of its dropout) and what the server received."""

    def __init__(self, grid, keep: list | None = None):
        self.grid = grid
        self.errors: dict[int, str] = {}
        self.keep = keep

    def __getattr__(self, name):
        return getattr(self.grid, name)

    def send_and_receive(self, messages, *, timeout=None):
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_error():
                self.errors[int(reply.metadata.src_node_id)] = reply.error.reason.splitlines()[0]
        if self.keep is not None:
            self.keep.extend(replies)
        return replies


class SecAggPlusEngine:
    """A :class:`~ffmrec.federated.engines.flower.engine.FlowerEngine` (per-user) whose training rounds run under
    SecAgg+; evaluation, best-round marks and state are the wrapped engine's. ``received`` (a list) keeps every reply
    the server got in the protocol (tests); ``seconds`` the wall time of each secure round."""

    def __init__(self, engine, fed, received: list | None = None):
        self.engine, self.fed, self.received = engine, fed, received
        self.executor = engine.executor
        self.specs = engine.task.shared_specs()
        self.names = sorted(self.specs)
        # central DP with device-side clipping: every device states weight 1 (the transform's UnitWeight), so the
        # bound is 1 and Flower's weight factor is 1 (the quantization error is that of the update itself)
        device_dp = fed.central_noise_multiplier is not None and fed.central_clip_norm is None
        self.max_weight = 1 if device_dp else int(fed.max_client_weight or engine.task.max_weight)
        self.seconds: list[float] = []

    def evaluate(self, *args, **kwargs):
        return self.engine.evaluate(*args, **kwargs)

    def mark_best(self, server_round: int) -> None:
        self.engine.mark_best(server_round)

    def state_dict(self) -> dict:
        return self.engine.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.engine.load_state_dict(state)

    def train_round(self, server_round: int, client_ids, shared, cfg, want_records: bool) -> RoundResult:
        """One secure round; with ``want_records`` (the recorder) the result's ``received`` holds what the server
        received from each survivor (:meth:`_received`), never a record: the server has none."""
        t0 = time.perf_counter()
        groups, missing = self.executor.groups(client_ids, per_user=True)
        result = RoundResult(failures=list(missing))
        by_node: dict[int, int] = {}
        for (uid,) in groups:
            node = self.executor.node_for(uid)
            if node in by_node:
                raise FFMRecError(f"users {by_node[node]} and {uid} are on the same SuperNode {node}: secure aggregation "
                                  "needs one user per SuperNode (federated.num_supernodes >= the number of users).")
            by_node[node] = uid
        if len(by_node) < 2:
            result.failures.extend((u, "secure aggregation needs at least 2 reachable clients") for u in by_node.values())
            return result
        check_round_size(len(by_node), self.fed.secagg.quantization_range)
        shared_record = R.to_array_record(shared)
        round_record = R.to_config_record({**cfg.to_record(), R.SERVER_ROUND: server_round})
        contents = {node: RecordDict({R.SHARED: shared_record, R.ROUND_CONFIG: round_record, R.META: ConfigRecord(
            {R.SERVER_ROUND: server_round, R.USER_IDS: [uid], R.SESSION: self.engine.session, R.WANT_RECORDS: False})})
            for node, uid in by_node.items()}
        s = self.fed.secagg
        workflow = _Workflow(contents, num_shares=1.0 if s.num_shares is None else int(s.num_shares),
                             reconstruction_threshold=float(s.reconstruction_threshold), max_weight=float(self.max_weight),
                             clipping_range=float(s.clipping_range), quantization_range=int(s.quantization_range),
                             modulus_range=MODULUS, timeout=float(self.fed.client_timeout))
        replies = self.received if self.received is not None else ([] if want_records else None)
        first = len(replies) if replies is not None else 0
        grid = _Tap(self.executor.grid, replies)
        collect = _Collect([GridClientProxy(node, grid, 0) for node in by_node])
        context = LegacyContext(Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                                strategy=collect)
        context.state[MAIN_PARAMS_RECORD] = ArrayRecord()
        context.state[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: int(server_round)})
        try:
            workflow(grid, context)
        except Exception as exc:  # noqa: BLE001 - e.g. the SuperLink unreachable: the round's clients fail
            grid.errors.setdefault(-1, f"secure aggregation failed: {exc!r}")
        survivors = set(collect.survivors) if collect.aggregate is not None else set()
        halted = "secure aggregation halted (fewer live neighbours than the reconstruction threshold)"
        for node, uid in by_node.items():
            if node not in survivors:
                result.failures.append((uid, grid.errors.get(node) or grid.errors.get(-1) or halted))
        if survivors:
            result.partials.append(self._partial(collect.aggregate, sorted(by_node[n] for n in survivors)))
            if want_records:
                result.received = self._received(replies[first:], {n: by_node[n] for n in survivors})
        self.seconds.append(time.perf_counter() - t0)
        return result

    def _received(self, replies: list[Message], users: dict[int, int]) -> list[ClientRecord]:
        """What the server received from each survivor (``users``: node -> user) in the round, as one record each
        for the recorder (:attr:`~ffmrec.federated.engines.base.RoundResult.received`): its masked vector, one int64
        tensor per declared tensor (same shape) plus ``secagg/factor`` and ``secagg/stats`` (the masked weight factor
        and the two extra coordinates), its two public keys (``secagg/public-keys``: their bytes), and the weight it
        stated in the clear (``num_examples``: 0). The ciphertexts it sent are shares encrypted for its neighbours and
        the shares it sent to unmask are of its neighbours' secrets: neither is about its own data."""
        keys: dict[int, bytes] = {}
        masked: dict[int, tuple[list[np.ndarray], int]] = {}
        for reply in replies:
            node = int(reply.metadata.src_node_id)
            if reply.has_error() or node not in users or RECORD_KEY_CONFIGS not in reply.content.config_records:
                continue
            record = reply.content.config_records[RECORD_KEY_CONFIGS]
            if Key.PUBLIC_KEY_1 in record:
                keys[node] = bytes(record[Key.PUBLIC_KEY_1]) + bytes(record[Key.PUBLIC_KEY_2])
            if Key.MASKED_PARAMETERS in record:
                arrays = [bytes_to_ndarray(b) for b in record[Key.MASKED_PARAMETERS]]
                masked[node] = (arrays, int(compat.recorddict_to_fitres(reply.content, False).num_examples))
        width = max((len(k) for k in keys.values()), default=0)
        out = []
        for node, uid in sorted(users.items(), key=lambda kv: kv[1]):
            if node not in masked:
                continue
            (factor, *arrays, stats), stated = masked[node]
            tensors = {name: torch.from_numpy(np.asarray(a, dtype=np.int64).reshape(self.specs[name][0]))
                       for name, a in zip(self.names, arrays)}
            tensors["secagg/factor"] = torch.from_numpy(np.asarray(factor, dtype=np.int64).ravel())
            tensors["secagg/stats"] = torch.from_numpy(np.asarray(stats, dtype=np.int64).ravel())
            key = np.frombuffer(keys.get(node, b"").ljust(width, b"\0"), dtype=np.uint8)
            tensors["secagg/public-keys"] = torch.from_numpy(key.astype(np.int64))
            out.append(ClientRecord(uid, tensors, stated))
        return out

    def _partial(self, arrays: list[np.ndarray], users: list[int]) -> PartialSum:
        """The survivors' sum from the workflow's weighted mean (the last array: the two extra coordinates)."""
        *means, stats = arrays
        if len(means) != len(self.names):
            raise FFMRecError(f"the secure aggregate has {len(means)} tensors, the task declares {len(self.names)}")
        clip = float(self.fed.secagg.clipping_range)
        count = len(users)
        inverse = float(stats[0]) / clip  # weighted mean of 1/weight = count / total weight
        total = count * self.max_weight if inverse <= 0 else int(round(count / inverse))
        total = min(max(total, count), count * self.max_weight)
        loss = float(stats[1]) * LOSS_SCALE / clip
        sums = {}
        for name, mean in zip(self.names, means):
            shape = self.specs[name][0]
            sums[name] = torch.from_numpy(np.asarray(mean, dtype=np.float64).reshape(shape) * total)
        return PartialSum(sums, float(total), loss * total, count, users)


# --- device ----------------------------------------------------------------------------------------------------------
def _error_reply(msg: Message, exc: BaseException) -> Message:
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(exc).__name__}: {exc}"),
                   reply_to=msg)


def client_mod(overrides=None):
    """The ClientApp's train mod: Flower's ``secaggplus_mod`` around ffmrec's train handler when the run config has
    ``secure-aggregation`` on (then a plain train message is refused); a pass-through otherwise."""
    overrides = dict(overrides or {})

    def mod(msg: Message, context: Context, call_next) -> Message:
        if not bool({**dict(context.run_config), **overrides}.get(RUN_CONFIG_KEY, False)):
            return call_next(msg, context)
        try:
            if RECORD_KEY_CONFIGS not in msg.content.config_records:
                raise PermissionError("this run uses secure aggregation: a plain train message, which would reveal "
                                      "this device's update, is refused")
            from ffmrec.federated.engines.flower.apps import run_config_of

            state_file = _state_file(run_config_of(context, overrides), context)
            _restore_state(state_file, context)
            reply = secaggplus_mod(msg, context, lambda m, c: _fitres_reply(m, c, call_next, overrides))
            _save_state(state_file, context, reply)
        except Exception as exc:  # noqa: BLE001 - the server counts this device as dropped
            return _error_reply(msg, exc)
        if not reply.has_error() and NUM_EXAMPLES in reply.content.metric_records:
            reply.content.metric_records[NUM_EXAMPLES]["num_examples"] = 0  # the weight travels masked
        return reply

    return mod


def _state_file(config, context: Context) -> Path:
    from ffmrec.federated.engines.flower.apps import device_dir_of

    return device_dir_of(config, context) / f"secaggplus-run-{int(context.run_id)}.state"


def _restore_state(path: Path, context: Context) -> None:
    """Put the device's own copy of its SecAgg+ state (the last stage it answered) into ``context.state``.

    Flower's SuperNode keeps the context between messages, but a ClientApp process pushes its reply before its
    context: the next stage's process can start from the context of the stage before the last (then Flower's mod
    aborts: "expect setup stage, but receive share_keys stage"). The file is written before the reply leaves the
    device, so it is never behind."""
    if path.exists():
        record = config_record_from_proto(ProtoConfigRecord.FromString(path.read_bytes()))
        context.state.config_records[RECORD_KEY_STATE] = record


def _save_state(path: Path, context: Context, reply: Message) -> None:
    """Keep the state the mod left in ``context.state`` on the device's disk (readable by its owner only), before
    the reply is sent; after the last stage the round's secrets are no longer needed: the file is removed."""
    record = context.state.config_records.get(RECORD_KEY_STATE)
    if reply.has_error() or record is None:
        return
    if str(record.get("current_stage")) == Stage.UNMASK:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(config_record_to_proto(record).SerializeToString())
    os.replace(tmp, path)


def _fitres_reply(msg: Message, context: Context, call_next, overrides) -> Message:
    """ffmrec's train reply for one user, checked on the device, as the legacy ``FitRes`` Flower's mod masks."""
    from ffmrec.federated.engines.flower.apps import node_runtime, run_config_of

    out = call_next(msg, context)
    if out.has_error():
        raise RuntimeError(out.error.reason.splitlines()[0])
    meta = out.content[R.META]
    if list(meta.get(R.FAILED_IDS, [])):
        raise RuntimeError(str(list(meta[R.FAILED_REASONS])[0]))
    (uid,) = [int(u) for u in meta[R.USER_IDS]]
    task = node_runtime(run_config_of(context, overrides), context).task
    specs = task.shared_specs()
    if R.SUM in out.content:  # the node's partial sum of this one user (the same computation as plain per-user mode)
        metrics = out.content[R.SUM_METRICS]
        total = float(metrics["weight"])
        weight, loss = int(round(total)), float(metrics["loss-sum"]) / total
        tensors = {k: torch.from_numpy(v / total).to(specs[k][1] if k in specs else torch.float32)
                   for k, v in R.from_array_record(out.content[R.SUM]).items()}
    else:  # a record
        metrics = out.content[R.CLIENT_METRICS]
        weight, loss = int(metrics[f"{uid}/weight"]), float(metrics[f"{uid}/loss"])
        tensors = {key.partition("/")[2]: torch.from_numpy(v)
                   for key, v in R.from_array_record(out.content[R.UPDATES]).items()}
    state = context.state.config_records[RECORD_KEY_STATE]
    clip, max_weight = float(state["clipping_range"]), int(state["max_weight"])
    try:  # what the driver checks in the clear, checked where the update is still visible
        check_record(ClientRecord(uid, tensors, weight), specs, max_weight)
    except RecordError as e:
        raise RuntimeError(f"this device's own record check failed: {e}") from None
    if not math.isfinite(loss):
        raise RuntimeError(f"client {uid}: its loss {loss} is not finite")
    names = sorted(specs)
    ndarrays = [tensors[n].numpy() for n in names]
    ndarrays.append(np.array([clip / weight, clip * loss / LOSS_SCALE], dtype=np.float64))
    # Flower's stochastic rounding draws from numpy's global generator: seed it from (seed, round, user)
    server_round = int(msg.content[R.META][R.SERVER_ROUND])
    np.random.seed(zlib.crc32(f"{getattr(task, 'seed', 0)}/{server_round}/{uid}".encode()))
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(ndarrays), weight, {})
    return Message(compat.fitres_to_recorddict(fitres, False), reply_to=msg)


__all__ = ["SecAggPlusEngine", "client_mod", "check_config", "check_one_user_per_node", "RUN_CONFIG_KEY"]
