"""The wire format between ffmrec's server driver and the Flower ClientApp (Flower Message API, flwr >= 1.21).

A message is for a *group* of users held by one SuperNode (all its sampled users in cohort mode, one in per-user mode).

``train``: ``"shared"`` (ArrayRecord, the global shared parameters), ``"round-config"`` (ConfigRecord, the round's
client config) and ``"meta"`` (ConfigRecord: ``user-ids``, ``server-round``, ``session``, ``want-records``). The reply's
``"meta"`` has ``user-ids`` (the users that answered), ``failed-ids`` and ``failed-reasons``; then either one record per
user, ``"updates"`` (ArrayRecord, keys ``"<user>/<tensor>"``) and ``"client-metrics"`` (MetricRecord, keys
``"<user>/weight"``, ``"<user>/loss"``), or the group's partial sum, ``"sum"`` (ArrayRecord, float64) and
``"sum-metrics"`` (``weight``, ``loss-sum``, ``count``).

``evaluate``: ``"shared"`` and ``"meta"`` (``user-ids``, ``stage``, ``server-round``, ``best``); the reply carries
``"columns"`` (ArrayRecord: the task's per-user evaluation columns, in the order of ``user-ids``).

``query``: ``"meta"`` with ``action`` (``info``: the reply's ``"node"`` has ``partition-id``, ``num-partitions``;
``mark-best``: the node keeps its personal state of ``server-round`` as the best round's).

A failed node answers with a Flower ``Error``. Personal state never appears in a message.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord

SHARED = "shared"
META = "meta"
ROUND_CONFIG = "round-config"
METRICS = "metrics"
NODE = "node"

USER_IDS = "user-ids"
FAILED_IDS = "failed-ids"
FAILED_REASONS = "failed-reasons"
SESSION = "session"
WANT_RECORDS = "want-records"
BEST = "best"
ACTION = "action"
UPDATES = "updates"
CLIENT_METRICS = "client-metrics"
SUM = "sum"
SUM_METRICS = "sum-metrics"
COLUMNS = "columns"
SERVER_ROUND = "server-round"
STAGE = "stage"
NUM_EXAMPLES = "num-examples"
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"

TRAIN = "train"
EVALUATE = "evaluate"
QUERY = "query"


def to_array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Numpy dict -> ArrayRecord (order and dtypes kept; torch tensors are accepted too)."""
    out = {}
    for name, value in arrays.items():
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        out[str(name)] = Array(np.ascontiguousarray(np.asarray(value)))
    return ArrayRecord(out) if out else ArrayRecord()


def from_array_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """ArrayRecord -> numpy dict."""
    return {name: array.numpy() for name, array in record.items()}


def _config_value(key: str, value):
    if isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str, bytes)) for v in value):
        return list(value)
    raise TypeError(f"config value {key}={value!r} ({type(value).__name__}) cannot be sent in a Flower ConfigRecord")


def to_config_record(config: Mapping[str, object]) -> ConfigRecord:
    """Flat config dict -> ConfigRecord; ``None`` values are left out (Flower has no null)."""
    return ConfigRecord({str(k): _config_value(str(k), v) for k, v in config.items() if v is not None})


def to_metric_record(num_examples: int, metrics: Mapping[str, float]) -> MetricRecord:
    record = {NUM_EXAMPLES: int(num_examples)}
    for name, value in metrics.items():
        if name == NUM_EXAMPLES:
            continue
        record[str(name)] = int(value) if isinstance(value, (bool, np.bool_)) else (
            int(value) if isinstance(value, (int, np.integer)) else float(value))
    return MetricRecord(record)


def from_metric_record(record: MetricRecord) -> tuple[int, dict[str, float]]:
    metrics = {k: float(v) for k, v in record.items() if k != NUM_EXAMPLES and not isinstance(v, list)}
    return int(record.get(NUM_EXAMPLES, 0)), metrics
