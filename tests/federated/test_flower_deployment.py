"""Flower's deployment engine end to end: a real SuperLink and SuperNodes as separate processes on 127.0.0.1, TLS with
certificates made for the test, SuperNode authentication on (ffmrec.federated.engines.flower.deploy).

Every process is started by ``DeploymentCluster`` and stopped (with its children) when the module's tests end, also on
failure; each wait is bounded. What happens to the processes when the program using the cluster dies is
test_deploy_lifecycle.py's subject, and real separate machines (network namespaces) test_deploy_netns.py's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ffmrec.federated.engines.flower.deploy import EXIT_SUPERNODE_CONNECTION_ERROR, DeploymentCluster, read_result
from ffmrec.federated.engines.flower.deploy.processes import processes_mentioning

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOY = {"method-resolver": "ffmrec.tasks.linear:from_flat"}  # per-user linear regression (ffmrec.tasks.linear)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("flower-deployment")
    cluster = DeploymentCluster(num_supernodes=2, tls=True, node_auth=True, workdir=workdir, startup_timeout=60)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        leftovers = [p for p in cluster._processes if p.popen.poll() is None]
        assert not leftovers, f"processes still running: {[p.name for p in leftovers]}"
        assert not processes_mentioning(str(workdir)), "a process of the cluster outlived stop()"


def test_cluster_uses_tls_and_registered_supernodes(cluster):
    link = " ".join(cluster.superlink.args)
    assert "--enable-supernode-auth" in link and "--ssl-certfile" in link and "--insecure" not in link
    assert cluster.address.startswith("127.0.0.1:")
    registered = {n.node_id for n in cluster.nodes}
    assert len(registered) == 2 and None not in registered
    online = {int(n["node-id"]) for n in cluster.list_nodes() if n["status"] == "online"}
    assert online == registered


def test_unregistered_supernode_is_refused(cluster):
    """A SuperNode whose (valid) key pair was never registered cannot activate: it exits and never shows up."""
    before = {n["node-id"] for n in cluster.list_nodes()}
    intruder = cluster.add_supernode(0, 2, register=False, wait=False, name="intruder", max_wait_time=30)
    assert intruder.private_key is not None and intruder.node_id is None
    rc = intruder.process.popen.wait(timeout=60)
    log = intruder.process.log()
    assert rc != 0
    assert f"Exit Code: {EXIT_SUPERNODE_CONNECTION_ERROR}" in log, log[-2000:]
    assert "Failed to activate SuperNode" in log, log[-2000:]
    assert "SuperNode ID:" not in log
    assert {n["node-id"] for n in cluster.list_nodes()} == before


def test_two_rounds_on_deployed_supernodes(cluster, tmp_path):
    out = tmp_path / "out"
    config = {**TOY, "num-users": 4, "rounds": 2, "client-timeout": 60.0, "discovery-timeout": 60.0,
              "num-supernodes": 2, "output-dir": str(out), "run-dir": str(tmp_path / "run")}
    run = cluster.run_app(config, timeout=180)
    assert run.ok and run.status == "finished:completed", run.output[-3000:]
    result = read_result(out)
    assert result["rounds_run"] == 2 and result["failures"] == 0 and np.isfinite(result["test"]["neg_MSE"])
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["ok"] for h in history] == [4, 4] and history[1]["loss"] < history[0]["loss"]
    # personal state stayed on the SuperNodes between rounds (and across flwr-clientapp processes), one table each
    for part in (0, 1):
        assert (tmp_path / "run" / "devices" / f"partition-{part}" / "round-000002.pt").exists()


@pytest.mark.timeout(900)
def test_fedsasrec_runs_on_the_deployment_engine(tmp_path, monkeypatch):
    """The real FedSASRec client update through a SuperLink + 2 SuperNodes (TLS, SuperNode auth) via `ffmrec run`."""
    import json

    import torch

    from ffmrec.pipeline import pipeline
    from ffmrec.recipes import load_recipe

    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    rows = ["user,item,timestamp"] + [f"{u},{(u * 3 + t) % 11 + 1},{t}" for u in range(4) for t in range(6)]
    (tmp_path / "interactions.csv").write_text("\n".join(rows) + "\n")
    config = load_recipe("fedsasrec", str(tmp_path / "interactions.csv"), [
        "model.max_len=6", "model.hidden_size=8", "model.inner_size=16", "model.num_layers=1",
        "federated.engine=flower-deploy", "federated.num_supernodes=2", "federated.rounds=2",
        "federated.clients_per_round=2", "federated.eval_every=2", "federated.server_lr=0.05",
        "federated.deploy_timeout=900"])
    result = pipeline(config, tmp_path / "run", progress=False)
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["round"] for h in history] == [1, 2] and all(h["ok"] == 2 and h["failed"] == 0 for h in history)
    assert set(result.metrics) >= {"HR@10", "NDCG@10"}
    from ffmrec.methods import build_federated_task

    start = build_federated_task(config).initial_shared()  # same seed, same start
    final = torch.load(tmp_path / "run" / "server.pt", weights_only=False)["params"]
    assert any(not torch.equal(start[k], final[k]) for k in start)  # the global model changed
