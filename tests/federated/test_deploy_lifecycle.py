"""No process of a Flower deployment outlives it (ffmrec.federated.engines.flower.deploy).

A run starts a SuperLink and SuperNodes, their ``flower-superexec`` helpers, a ``flwr-serverapp`` per run, a
``flwr-clientapp`` per message and ``flwr run``. All of them must end within seconds when the cluster stops normally,
when the code using it raises, and when the program that started it is killed with SIGKILL (which runs no cleanup
code: a user's ``kill -9`` left SuperNode helpers starting ClientApps for minutes). Each test records every descendant
of the program while a run is in flight, then checks that none of them is alive and that no process anywhere still
mentions the cluster's workdir in its command line or environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ffmrec.federated.engines.flower.deploy import DeploymentCluster
from ffmrec.federated.engines.flower.deploy.processes import _proc_stats, descendants, processes_mentioning

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")]

REPO = Path(__file__).resolve().parents[2]
LINEAR = {"method-resolver": "ffmrec.tasks.linear:from_flat",  # per-user linear regression (ffmrec.tasks.linear)
          "num-users": 4, "client-timeout": 60.0, "discovery-timeout": 60.0}


def linear_run(tmp_path: Path, **keys) -> dict:
    """The run config of a linear-regression run writing into ``tmp_path``."""
    return {**LINEAR, "run-dir": str(tmp_path / "run"), "output-dir": str(tmp_path / "out"), **keys}


class TreeWatch(threading.Thread):
    """Records every descendant of ``root`` (``{pid: (start time, command line)}``) every 0.1 s until stopped, so
    short-lived ones (a ``flwr-clientapp`` lives for one message) are seen too. ``on_new`` is called with each new
    command line."""

    def __init__(self, root: int, on_new=None):
        super().__init__(daemon=True)
        self.root, self.on_new = root, on_new
        self.seen: dict[int, tuple[int, str]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            stats = _proc_stats()
            for pid in descendants(self.root, stats):
                if pid in self.seen and self.seen[pid][0] == stats[pid][3]:
                    continue
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                self.seen[pid] = (stats[pid][3], cmd.strip())
                if self.on_new is not None:
                    self.on_new(cmd)
            self._halt.wait(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def saw(self, program: str) -> bool:
        return any(program in cmd for _, cmd in self.seen.values())

    def alive(self) -> dict[int, str]:
        """The recorded processes that are still running (same pid and start time, not a zombie)."""
        stats = _proc_stats()
        return {pid: cmd for pid, (start, cmd) in self.seen.items()
                if pid in stats and stats[pid][3] == start and stats[pid][2] not in ("Z", "X")}


def assert_nothing_left(watch: TreeWatch, workdir: Path, within: float = 10.0) -> float:
    """Wait up to ``within`` s for every recorded process to end and for no process to mention ``workdir``; returns
    how long it took."""
    start = time.monotonic()
    while True:
        alive, strays = watch.alive(), processes_mentioning(str(workdir))
        if not alive and not strays:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            pytest.fail(f"{within:g} s after the end, still running: {alive} {strays}")
        time.sleep(0.2)


CHILD = textwrap.dedent("""
    import json, sys
    from ffmrec.federated.engines.flower.deploy import DeploymentCluster

    workdir, config = sys.argv[1], json.loads(sys.argv[2])
    cluster = DeploymentCluster(num_supernodes=2, workdir=workdir, startup_timeout=60).start()
    print("started", flush=True)
    cluster.run_app(config, timeout=600)  # blocks in `flwr run` until we are killed
""")


def test_sigkill_of_the_starting_process_ends_the_whole_cluster(tmp_path):
    """The program that started a cluster (SuperLink, 2 SuperNodes, a run in flight) is killed with SIGKILL:
    within 10 s no process of the cluster remains, and no SuperNode helper goes on starting ClientApps."""
    import json

    workdir = tmp_path / "cluster"
    config = linear_run(tmp_path, **{"num-supernodes": 2, "rounds": 10_000})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(workdir), json.dumps(config)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watch = TreeWatch(child.pid)
    watch.start()
    try:
        deadline = time.monotonic() + 120
        while not (watch.saw("flwr-serverapp") and watch.saw("flwr-clientapp")):  # a round is in flight
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run did not get going (exit {child.poll()}):\n{child.stdout.read()[-3000:]}")
            time.sleep(0.2)
        for program in ("flower-superlink", "flower-supernode", "flower-superexec", "flwr run"):
            assert watch.saw(program), f"no {program} among {[c for _, c in watch.seen.values()]}"
        child.kill()
        child.wait(timeout=10)
        assert_nothing_left(watch, workdir, within=10.0)
    finally:
        watch.stop()
        if child.poll() is None:
            child.kill()
            child.wait()


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("ending", ["completes", "raises"])
def test_leaving_the_cluster_ends_every_process(tmp_path, ending):
    """``with DeploymentCluster(...)`` leaves nothing behind: after a completed run, and when the code inside raises
    in the middle of a run (a signal handler raises while ``flwr run`` is in flight, as Ctrl-C would)."""
    workdir = tmp_path / "cluster"
    main = threading.main_thread().ident

    def interrupt_once_clients_run(cmd: str) -> None:
        if ending == "raises" and "flwr-clientapp" in cmd and not interrupted.is_set():
            interrupted.set()
            signal.pthread_kill(main, signal.SIGUSR1)

    def raise_interrupted(signum, frame):
        raise _Interrupted

    interrupted = threading.Event()
    previous = signal.signal(signal.SIGUSR1, raise_interrupted)
    watch = TreeWatch(os.getpid(), on_new=interrupt_once_clients_run)
    watch.start()
    try:
        if ending == "completes":
            with DeploymentCluster(num_supernodes=1, workdir=workdir, startup_timeout=60) as cluster:
                config = linear_run(tmp_path, **{"num-users": 2, "num-supernodes": 1, "rounds": 1})
                run = cluster.run_app(config, timeout=120)
            assert run.ok, run.output[-3000:]
        else:
            with pytest.raises(_Interrupted):
                with DeploymentCluster(num_supernodes=1, workdir=workdir, startup_timeout=60) as cluster:
                    config = linear_run(tmp_path, **{"num-supernodes": 1, "rounds": 10_000})
                    cluster.run_app(config, timeout=120)
        for program in ("flower-superlink", "flower-supernode", "flower-superexec", "flwr run", "flwr-serverapp",
                        "flwr-clientapp"):
            assert watch.saw(program), f"no {program} among {[c for _, c in watch.seen.values()]}"
        assert not watch.alive(), "stop() returned while processes of the cluster were still running"
        assert_nothing_left(watch, workdir, within=10.0)
    finally:
        watch.stop()
        signal.signal(signal.SIGUSR1, previous)
