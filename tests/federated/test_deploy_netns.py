"""Flower's deployment engine across machines, for real: the SuperLink, two SuperNodes and the ``flwr`` CLI each in a
Linux network namespace of their own, joined only by veth links, with TLS and SuperNode authentication on
(ffmrec.federated.engines.flower.deploy). One federated round of the linear-regression task must go through them.

The namespaces form a star around the SuperLink's::

    <p>-n0  10.77.0.2/24 eth0 ──veth── v-n0  10.77.0.1 ┐
    <p>-n1  10.77.0.3/24 eth0 ──veth── v-n1  10.77.0.1 ├ <p>-link (flower-superlink --host 10.77.0.1)
    <p>-cli 10.77.0.4/24 eth0 ──veth── v-cli 10.77.0.1 ┘

Every veth pair is created directly between two of these namespaces, so no interface, address or packet ever
touches another network (the host's included); the SuperLink's certificate is made for IP:10.77.0.1, the address
the others dial. Making namespaces needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and the ``ip`` tool from iproute2:
without them the test skips and says which step failed. The namespaces go in a ``finally`` block.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from ffmrec.federated.engines.flower.deploy import DeploymentCluster, read_result
from ffmrec.federated.engines.flower.deploy.processes import processes_mentioning
from ffmrec.tasks.linear import from_flat

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces are Linux-only")]

LINEAR = {"method-resolver": "ffmrec.tasks.linear:from_flat"}  # per-user linear regression (ffmrec.tasks.linear)
LINK_ADDRESS = "10.77.0.1"
PEERS = {"n0": "10.77.0.2", "n1": "10.77.0.3", "cli": "10.77.0.4"}  # namespace suffix -> address


def _ip_binary() -> str | None:
    return shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)),
                                      None)


class Star:
    """The namespaces above, named ``ffm<pid>-*`` so that concurrent test runs do not collide."""

    def __init__(self, ip: str):
        self.ip = ip
        self.prefix = f"ffm{os.getpid()}"
        self.link = f"{self.prefix}-link"
        self.peers = {name: f"{self.prefix}-{name}" for name in PEERS}
        self.created: list[str] = []

    def run(self, *args: str) -> str:
        """``ip ARGS``; raises ``RuntimeError`` naming the command and its error."""
        res = subprocess.run([self.ip, *args], capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"`ip {' '.join(args)}` failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def exec_prefix(self, namespace: str) -> list[str]:
        return [self.ip, "netns", "exec", namespace]

    def create(self) -> None:
        for ns in (self.link, *self.peers.values()):
            self.run("netns", "add", ns)
            self.created.append(ns)
            self.run("-n", ns, "link", "set", "lo", "up")
        for name, ns in self.peers.items():
            link_end = f"v-{name}"
            self.run("-n", self.link, "link", "add", link_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.run("-n", self.link, "addr", "add", f"{LINK_ADDRESS}/32", "dev", link_end)
            self.run("-n", self.link, "link", "set", link_end, "up")
            self.run("-n", self.link, "route", "add", f"{PEERS[name]}/32", "dev", link_end)
            self.run("-n", ns, "addr", "add", f"{PEERS[name]}/24", "dev", "eth0")
            self.run("-n", ns, "link", "set", "eth0", "up")

    def delete(self) -> list[str]:
        """Delete every namespace created (their veth ends go with them); returns the errors."""
        errors = []
        for ns in reversed(self.created):
            try:
                self.run("netns", "delete", ns)
            except RuntimeError as err:
                errors.append(str(err))
        self.created.clear()
        return errors


@pytest.fixture
def star():
    ip = _ip_binary()
    if ip is None:
        pytest.skip("network namespaces: no `ip` binary (iproute2) on PATH or in /usr/sbin, /sbin")
    net = Star(ip)
    try:
        try:
            net.create()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
            pytest.skip(f"cannot build the test network: {err} (network namespaces and veth links need root with "
                        f"CAP_SYS_ADMIN and CAP_NET_ADMIN, and a kernel with veth support)")
        yield net
    finally:
        errors = net.delete()
        assert not errors, f"could not delete the test namespaces: {errors}"


def test_one_round_across_network_namespaces(star, tmp_path):
    # each node reaches the SuperLink through its veth link, not through a loopback shortcut
    for name, ns in star.peers.items():
        route = star.run("-n", ns, "route", "get", LINK_ADDRESS)
        assert "dev eth0" in route, route
    assert LINK_ADDRESS not in subprocess.run([star.ip, "-o", "addr"], capture_output=True, text=True).stdout

    workdir, out, run_dir = tmp_path / "cluster", tmp_path / "out", tmp_path / "run"
    cluster = DeploymentCluster(
        num_supernodes=2, tls=True, node_auth=True, workdir=workdir, startup_timeout=90, host=LINK_ADDRESS,
        superlink_prefix=star.exec_prefix(star.link),
        supernode_prefixes=[star.exec_prefix(star.peers["n0"]), star.exec_prefix(star.peers["n1"])],
        cli_prefix=star.exec_prefix(star.peers["cli"]))
    try:
        cluster.start()
        assert cluster.address.startswith(f"{LINK_ADDRESS}:")
        link = " ".join(cluster.superlink.args)
        assert "--enable-supernode-auth" in link and "--ssl-certfile" in link and "--insecure" not in link
        assert f"--host {LINK_ADDRESS}" in link and link.startswith(" ".join(star.exec_prefix(star.link)))
        registered = {n.node_id for n in cluster.nodes}
        assert len(registered) == 2 and None not in registered
        assert {int(n["node-id"]) for n in cluster.list_nodes() if n["status"] == "online"} == registered

        config = {**LINEAR, "num-users": 2, "rounds": 1, "client-timeout": 90.0, "discovery-timeout": 90.0,
                  "num-supernodes": 2, "output-dir": str(out), "run-dir": str(run_dir)}
        run = cluster.run_app(config, timeout=240)
        assert run.ok and run.status == "finished:completed", run.output[-3000:]
        access = cluster.superlink.log()  # uvicorn's access log: `<client address>:<port> - "POST /v1/..." 200`
        for name, address in PEERS.items():
            assert f"{address}:" in access, f"no request from {name} ({address}) reached the SuperLink"
    finally:
        cluster.stop()
    result = read_result(out)
    assert result["rounds_run"] == 1 and result["failures"] == 0 and np.isfinite(result["test"]["neg_MSE"])
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [(h["ok"], h["failed"]) for h in history] == [(2, 0)]  # both users, one on each SuperNode
    task_config, build = from_flat(config)
    start = build(task_config, None).initial_shared()
    final = torch.load(run_dir / "server.pt", weights_only=False)["params"]
    assert not torch.equal(start["weight"], final["weight"])  # the global model changed
    assert not processes_mentioning(str(workdir))
