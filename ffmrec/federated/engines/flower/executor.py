"""``FlowerGridExecutor``: ffmrec's engine-independent driver talks to Flower ClientApps through a Flower ``Grid``.

The driver (``ffmrec.federated.server.run_server``) decides which users train each round and aggregates; this object
only delivers the work. Users are clients; a SuperNode holds the users ``u`` with
``u % num-partitions == partition-id`` (its ``node_config``). At start the executor sends a ``query`` message to every
connected node to learn its partition, and keeps the map ``partition -> node id``.

Work is sent in *groups* of clients held by one node: in cohort mode one message per node per round carries all of
that node's sampled users (the node trains them vectorised), in per-user mode one message per user (one device per
SuperNode, the real cross-device case). A node has at most ``max_in_flight_per_node`` messages outstanding, and the next message to a node is pushed as soon as one of its replies
arrives (nodes work in parallel with each other):

* simulation engine (``InMemoryGrid``): 1. The engine keeps one ``Context`` per node and the ClientApp writes the
  user's personal state into it; it runs a node's messages concurrently (retrieve the context, run the ClientApp,
  store the context back), so with two messages in flight on one node the later store wins and the other user's
  personal update is lost.
* deployment engine: 2. A SuperNode pulls and processes one message at a time by itself; having the next one already
  waiting at the SuperLink saves the SuperNode's idle poll (3 s in flwr 1.41) between messages.

Replies are matched to their group by message id. A reply that is a Flower error becomes
``GroupOutcome(error=...)``; so does every message to a node that made no progress (no reply) for ``timeout`` seconds,
after which that node gets no more work in the call (its remaining groups fail at once instead of each waiting
``timeout`` again). Outcomes come back in group order; decoding the content is the engine's business.

The executor uses ``grid.push_messages`` / ``grid.pull_messages`` rather than ``grid.send_and_receive``: it needs to
send a node its next message as soon as it answers, to time out per node, and to poll faster than
``send_and_receive`` does on the deployment engine (every 3 s).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord, Message, RecordDict

from ffmrec.federated.engines.flower import records as R

if TYPE_CHECKING:
    from flwr.serverapp import Grid

log = logging.getLogger("ffmrec.flower")


@dataclass
class GroupOutcome:
    """The reply to one message: a group of clients on one node (a cohort, or one user)."""

    client_ids: tuple[int, ...]
    content: RecordDict | None
    error: str | None = None  # set when the node failed, timed out or the message could not be delivered


class NodeDiscoveryError(RuntimeError):
    """Not every partition has a SuperNode within the discovery timeout."""


@dataclass
class _Job:
    client_id: int  # the index of the group in the call
    node_id: int
    sent_at: float = 0.0


class FlowerGridExecutor:
    """Implements ffmrec's ``ClientExecutor`` protocol (``train`` / ``evaluate``) on a Flower ``Grid``.

    :param grid: the ``Grid`` a ServerApp's ``main`` receives (simulation or deployment engine).
    :param timeout: seconds a node may go without answering while it has work (from the push of a message to an idle
        node, or from its previous reply); then its outstanding and queued users fail.
    :param expected_nodes: wait at start until at least this many nodes answered the query (default: until every
        partition ``0..num-partitions-1`` has a node).
    :param discovery_timeout: seconds to wait for the nodes at start.
    :param poll_interval: seconds between pulls of replies.
    :param max_in_flight_per_node: messages outstanding per node; default 1 on the simulation engine (see the module
        docstring) and 2 on the deployment engine, where a SuperNode processes its messages one at a time anyway.
    """

    def __init__(self, grid: Grid, *, timeout: float = 300.0, expected_nodes: int | None = None,
                 discovery_timeout: float = 120.0, poll_interval: float = 0.05,
                 max_in_flight_per_node: int | None = None):
        if timeout <= 0 or discovery_timeout <= 0 or poll_interval <= 0:
            raise ValueError("timeout, discovery_timeout and poll_interval must be > 0")
        if max_in_flight_per_node is not None and max_in_flight_per_node < 1:
            raise ValueError("max_in_flight_per_node must be >= 1")
        self.grid = grid
        self.timeout = float(timeout)
        self.expected_nodes = expected_nodes
        self.discovery_timeout = float(discovery_timeout)
        self.poll_interval = float(poll_interval)
        self.max_in_flight_per_node = max_in_flight_per_node
        self.partition_to_node: dict[int, int] = {}
        self.node_to_partition: dict[int, int] = {}
        self.num_partitions: int | None = None
        self._seen_nodes: frozenset[int] = frozenset()
        self._queried: set[int] = set()

    # --- node discovery ----------------------------------------------------------------------------------------------
    def _complete(self) -> bool:
        if self.num_partitions is None:
            return False
        if set(self.partition_to_node) != set(range(self.num_partitions)):
            return False
        return self.expected_nodes is None or len(self.node_to_partition) >= self.expected_nodes

    def discover(self, timeout: float | None = None) -> dict[int, int]:
        """Query the connected nodes until every partition has one; returns ``{partition-id: node id}``.

        Raises :class:`NodeDiscoveryError` after ``timeout`` (default ``discovery_timeout``) seconds otherwise.
        """
        deadline = time.monotonic() + (self.discovery_timeout if timeout is None else timeout)
        while True:
            nodes = frozenset(int(n) for n in self.grid.get_node_ids())
            self._seen_nodes = nodes
            for gone in set(self.node_to_partition) - nodes:  # a node left: forget it
                part = self.node_to_partition.pop(gone)
                if self.partition_to_node.get(part) == gone:
                    del self.partition_to_node[part]
                self._queried.discard(gone)
            new = sorted(nodes - self._queried)
            if new:
                self._query(new, max(0.5, min(self.timeout, deadline - time.monotonic())))
            if self._complete():
                return dict(self.partition_to_node)
            if time.monotonic() >= deadline:
                raise NodeDiscoveryError(
                    f"SuperNodes found for partitions {sorted(self.partition_to_node)} of "
                    f"num-partitions={self.num_partitions} ({len(nodes)} node(s) connected, "
                    f"expected_nodes={self.expected_nodes}); check each SuperNode's "
                    "--node-config 'partition-id=i num-partitions=N'.")
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    def _query(self, node_ids: list[int], timeout: float) -> None:
        msgs = {}
        for node_id in node_ids:
            content = RecordDict({R.META: ConfigRecord({R.STAGE: "query"})})
            msg = Message(content, node_id, R.QUERY, ttl=max(timeout, self.discovery_timeout, 30.0), group_id="query")
            msgs[node_id] = msg
        replies, _ = self._push_and_pull(list(msgs.values()), timeout)
        by_id = {m.metadata.message_id: n for n, m in msgs.items()}
        for reply in replies:
            node_id = by_id.get(reply.metadata.reply_to_message_id)
            if node_id is None:
                continue
            if reply.has_error():  # e.g. the query expired before the node got to it: ask again next time
                log.warning("node %s did not answer the query: %s", node_id, reply.error.reason)
                continue
            self._queried.add(node_id)
            info = reply.content[R.NODE]
            part, num = info.get(R.PARTITION_ID), info.get(R.NUM_PARTITIONS)
            if part is None or num is None:
                log.warning("node %s has no partition-id/num-partitions in its node config; ignored", node_id)
                continue
            part, num = int(part), int(num)
            if self.num_partitions is None:
                self.num_partitions = num
            elif num != self.num_partitions:
                log.warning("node %s says num-partitions=%s, others %s; ignored", node_id, num, self.num_partitions)
                continue
            if part in self.partition_to_node and self.partition_to_node[part] != node_id:
                log.warning("partition %s is held by nodes %s and %s; using the first", part,
                            self.partition_to_node[part], node_id)
                continue
            self.partition_to_node[part] = node_id
            self.node_to_partition[node_id] = part

    def _ensure_nodes(self) -> None:
        """Discover the nodes on first use (failing loudly); later, refresh the map briefly when the set of connected
        nodes changed, and carry on with what is mapped (users of a partition without a node fail individually)."""
        if self.num_partitions is None:
            self.discover()
            return
        nodes = frozenset(int(n) for n in self.grid.get_node_ids())
        if nodes != self._seen_nodes:  # nodes joined or left
            try:
                self.discover(timeout=min(self.timeout, 10.0))
            except NodeDiscoveryError as err:
                log.warning("%s", err)

    def node_for(self, client_id: int) -> int | None:
        """The node id holding ``client_id``, or None if its partition has no node now."""
        if self.num_partitions is None:
            raise RuntimeError("call discover() first")
        return self.partition_to_node.get(int(client_id) % self.num_partitions)

    # --- delivery --------------------------------------------------------------------------------------------------
    def groups(self, client_ids, per_user: bool) -> tuple[list[tuple[int, ...]], list[tuple[int, str]]]:
        """Split ``client_ids`` into message groups: one per node holding any of them (cohort mode) or one per user;
        clients whose partition has no node are returned as failures."""
        self._ensure_nodes()
        by_node: dict[int, list[int]] = {}
        missing = []
        for cid in sorted({int(c) for c in client_ids}):
            node = self.node_for(cid)
            if node is None:
                missing.append((cid, f"no SuperNode holds partition {cid % self.num_partitions} (user {cid})"))
            else:
                by_node.setdefault(node, []).append(cid)
        if per_user:
            return [(c,) for ids in by_node.values() for c in ids], missing
        return [tuple(ids) for ids in by_node.values()], missing

    def send(self, message_type: str, group_id: str, groups: list[tuple[int, ...]],
             content_for: Callable[[tuple[int, ...]], RecordDict]) -> list[GroupOutcome]:
        """Deliver one message per group (to the node holding its clients) and collect the replies, in group order."""
        outcomes = dict(self.stream(message_type, group_id, groups, content_for))
        return [outcomes[g] for g in range(len(groups))]

    def stream(self, message_type: str, group_id: str, groups: list[tuple[int, ...]],
               content_for: Callable[[tuple[int, ...]], RecordDict]) -> Iterator[tuple[int, GroupOutcome]]:
        """Like :meth:`send`, but yields ``(group index, outcome)`` as each reply (or failure) arrives, so that a caller
        can fold a reply into a running sum and let it go (per-user mode: thousands of replies per round)."""
        if not groups:
            return
        self._ensure_nodes()
        outcomes: dict[int, GroupOutcome] = {}
        queues: dict[int, deque[int]] = {}
        for g, ids in enumerate(groups):
            node = self.node_for(ids[0])
            if node is None:
                outcomes[g] = GroupOutcome(ids, None, f"no SuperNode holds partition {ids[0] % self.num_partitions}")
            else:
                queues.setdefault(node, deque()).append(g)

        def make(g: int, node: int) -> Message:
            ttl = max(self.timeout * 1.5, self.timeout + 30.0)
            return Message(content_for(groups[g]), node, message_type, ttl=ttl, group_id=group_id)

        in_flight: dict[str, _Job] = {}
        busy: dict[int, int] = {}  # node -> messages outstanding
        clock: dict[int, float] = {}  # node -> last progress (push to an idle node, or a reply)
        dead_nodes: set[int] = set()
        window = self._window()

        def fail(g: int, error: str) -> None:
            outcomes[g] = GroupOutcome(groups[g], None, error)

        def refill() -> None:
            batch, jobs = [], []
            for node, queue in queues.items():
                while queue and busy.get(node, 0) < window and node not in dead_nodes:
                    g = queue.popleft()
                    batch.append(make(g, node))
                    jobs.append(_Job(g, node))
                    busy[node] = busy.get(node, 0) + 1
            if not batch:
                return
            try:
                pushed = set(self.grid.push_messages(batch))
                problem = ""
            except Exception as exc:  # noqa: BLE001 - e.g. the SuperLink briefly unreachable: these groups fail
                pushed, problem = set(), f": {exc!r}"
            now = time.monotonic()
            for msg, job in zip(batch, jobs):
                msg_id = msg.metadata.message_id
                if not msg_id or msg_id not in pushed:
                    busy[job.node_id] -= 1
                    fail(job.client_id, f"could not push the {message_type} message to node {job.node_id}{problem}")
                    continue
                job.sent_at = now
                if busy[job.node_id] == 1 or job.node_id not in clock:
                    clock[job.node_id] = now
                in_flight[msg_id] = job

        refill()
        while in_flight:
            try:
                replies = list(self.grid.pull_messages(list(in_flight)))
            except Exception as exc:  # noqa: BLE001 - transient; the per-node timeout still bounds the wait
                log.warning("pulling replies failed: %r", exc)
                replies = []
            now = time.monotonic()
            for reply in replies:
                job = in_flight.pop(reply.metadata.reply_to_message_id, None)
                if job is None:
                    continue
                busy[job.node_id] -= 1
                clock[job.node_id] = now
                if reply.has_error():
                    fail(job.client_id, f"node {job.node_id} [flwr error {reply.error.code}]: {reply.error.reason}")
                else:
                    outcomes[job.client_id] = GroupOutcome(groups[job.client_id], reply.content)
            for node in {j.node_id for j in in_flight.values()}:
                if now - clock[node] > self.timeout:  # no progress on this node for `timeout` seconds
                    dead_nodes.add(node)
                    for msg_id, job in list(in_flight.items()):
                        if job.node_id == node:
                            del in_flight[msg_id]
                            busy[node] -= 1
                            fail(job.client_id, f"timeout: no {message_type} reply from node {node} "
                                                f"within {self.timeout:g} s")
            for node in dead_nodes:
                while queues.get(node):
                    fail(queues[node].popleft(), f"not sent: node {node} timed out earlier in this "
                                                 f"{message_type} call")
            refill()
            while outcomes:  # hand over what arrived, and keep nothing
                yield outcomes.popitem()
            if in_flight:  # always pause between pulls: a busy-polling server thread takes CPU from the clients
                time.sleep(self.poll_interval)
        while outcomes:
            yield outcomes.popitem()

    def broadcast(self, message_type: str, group_id: str, content: RecordDict) -> list[GroupOutcome]:
        """The same message to every mapped node (e.g. "keep your current state as the best round's")."""
        self._ensure_nodes()
        nodes = sorted(self.partition_to_node.items())
        groups = [(part,) for part, _ in nodes]  # a partition id is a client id of that partition
        return self.send(message_type, group_id, groups, lambda ids: content)

    def _window(self) -> int:
        if self.max_in_flight_per_node is not None:
            return self.max_in_flight_per_node
        # The simulation engine (InMemoryGrid) runs a node's messages concurrently and races on its Context: 1.
        # A deployed SuperNode handles one message at a time by itself; a second one queued at the SuperLink saves
        # the SuperNode's idle poll (3 s) between messages: 2.
        return 1 if type(self.grid).__name__ == "InMemoryGrid" else 2

    def _push_and_pull(self, messages: list[Message], timeout: float) -> tuple[list[Message], set[str]]:
        """Push ``messages`` and pull their replies for up to ``timeout`` s; returns (replies, ids still missing)."""
        pushed = {m for m in self.grid.push_messages(messages) if m}
        waiting = set(pushed)
        replies: list[Message] = []
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            got = list(self.grid.pull_messages(list(waiting)))
            replies.extend(got)
            waiting -= {r.metadata.reply_to_message_id for r in got}
            if waiting and not got:
                time.sleep(self.poll_interval)
        return replies, waiting
