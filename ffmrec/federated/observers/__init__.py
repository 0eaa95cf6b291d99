"""Observers of what leaves the devices: they receive the driver-checked records of every round, in every engine.

An observer says per round whether it needs per-client records (:meth:`Observer.needs_records`); when one does, the
engines send a record per client (the fast simulator's fused path steps aside). Written once, each works in every
engine: :class:`ByteCounter` (bytes up and down per round into ``history.jsonl``), :class:`EgressAudit` (a client
sent exactly the declared shared tensors and nothing it must keep: raw interactions, personal rows, ``prepare``
outputs), :class:`Recorder` (the records of chosen rounds saved to the run folder for offline attacks).
"""

from __future__ import annotations

from ffmrec.federated.observers.audit import EgressAudit, EgressViolation
from ffmrec.federated.observers.base import Observer
from ffmrec.federated.observers.bytes import ByteCounter
from ffmrec.federated.observers.recorder import Recorder, load_round

__all__ = ["Observer", "ByteCounter", "EgressAudit", "EgressViolation", "Recorder", "load_round"]
