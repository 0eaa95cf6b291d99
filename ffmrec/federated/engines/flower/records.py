"""The wire format between ffmrec's server driver and the Flower ClientApp (Flower Message API, flwr >= 1.21).

An instruction message (``train`` / ``evaluate`` / ``query``) carries

* ``"shared"``: an :class:`~flwr.app.ArrayRecord` with the global shared parameters (not for ``query``);
* ``"meta"``: a :class:`~flwr.app.ConfigRecord` with ``user-id``, ``server-round`` and ``stage``;
* ``"round-config"``: a :class:`~flwr.app.ConfigRecord` with the round's client config (``train`` only).

A reply carries ``"delta"`` (ArrayRecord, ``train`` only), ``"metrics"`` (MetricRecord: ``num-examples`` plus the
client's metrics) and ``"meta"`` (``user-id``), or a Flower ``Error`` when the client failed. A ``query`` reply carries
``"node"`` (ConfigRecord: ``partition-id``, ``num-partitions``). Personal state never appears in a message.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord

SHARED = "shared"
DELTA = "delta"
META = "meta"
ROUND_CONFIG = "round-config"
METRICS = "metrics"
NODE = "node"

USER_ID = "user-id"
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
