"""A Flower run killed with SIGKILL and started again with the same --out ends like an uninterrupted run, and no process
that a run started outlives it.

On Flower's engines the personal state lives on the SuperNodes (``RUN/devices/partition-N/round-XXXXXX.pt``): the
resumed driver is a new session, so every node restarts from its latest round file before the round it is asked to
train and ignores what the killed session half did (``ffmrec.federated.engines.flower.node``). The run is killed once
``history.jsonl`` shows round 2, possibly between that line and ``server.pt``, so the resumed run may redo round 2.
The reference is an uninterrupted run of the fast engine, which computes the same numbers (same per-client randomness,
same vectorised cohort; ``tests/federated/test_engine_equivalence.py``) in seconds rather than a minute.

Processes: the CLI is started in a session of its own and every descendant it has while it runs is recorded (Ray's
GCS, raylet, agents and workers; the SuperLink, SuperNodes, their ``flower-superexec``, ``flwr-serverapp``,
``flwr-clientapp`` and ``flwr run``, each under its supervisor). On the simulation engine the CLI alone is killed
(``kill -9 PID``: Ray's agents are then orphans, see ``ffmrec.federated.engines.flower.ray_reaper``), on the
deployment engine its whole process group (what job control or a batch scheduler does). Within 10 s of the end of
every run, killed or finished, none of the recorded processes may be alive and no process may mention the run folder
in its command line or environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY_MODEL, write_interactions

from ffmrec.federated.engines.flower.deploy.processes import _proc_stats, descendants, processes_mentioning

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")]

REPO = Path(__file__).resolve().parents[2]
COMMON = [*TINY_MODEL, "model.dropout=0.2", "federated.clients_per_round=6", "federated.num_supernodes=2",
          "federated.chunk_size=4", "federated.eval_every=1"]
KILL_AFTER = 2  # rounds in history.jsonl


class TreeWatch(threading.Thread):
    """Records every descendant of ``root`` every 0.1 s until stopped: ``{pid: (start time, command lines)}`` (all the
    command lines it had: a forked child shows its parent's until it execs, a Ray worker renames itself)."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root = root
        self.seen: dict[int, tuple[int, set[str]]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.look()
            self._halt.wait(0.1)

    def look(self) -> None:
        stats = _proc_stats()
        for pid in descendants(self.root, stats):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if pid not in self.seen or self.seen[pid][0] != stats[pid][3]:
                self.seen[pid] = (stats[pid][3], set())
            if cmd:
                self.seen[pid][1].add(cmd)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def commands(self) -> list[str]:
        return sorted(c[:120] for _, cmds in self.seen.values() for c in cmds)

    def saw(self, program: str) -> bool:
        return any(program in c for c in self.commands())

    def alive(self) -> dict[int, list[str]]:
        stats = _proc_stats()
        return {pid: sorted(c[:120] for c in cmds) for pid, (start, cmds) in self.seen.items()
                if pid in stats and stats[pid][3] == start and stats[pid][2] not in ("Z", "X")}


def assert_nothing_left(watch: TreeWatch, out: Path, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        alive, strays = watch.alive(), processes_mentioning(str(out))
        if not alive and not strays:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{within:g} s after the end of the run in {out}, still running: {alive} {strays}")
        time.sleep(0.2)


def command(data: Path, out: Path, engine: str, settings: list[str]) -> list[str]:
    return [sys.executable, "-m", "ffmrec.cli", "run", "fedsasrec", "--dataset", str(data), "--out", str(out),
            "--quiet", "--set", *COMMON, *settings, f"federated.engine={engine}"]


def rounds_logged(out: Path) -> int:
    path = out / "history.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def start(cmd: list[str], env: dict, log: Path) -> tuple[subprocess.Popen, TreeWatch]:
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    watch = TreeWatch(proc.pid)
    watch.start()
    return proc, watch


def run_to_end(cmd: list[str], env: dict, out: Path, timeout: float) -> TreeWatch:
    log = out.with_suffix(".log")
    proc, watch = start(cmd, env, log)
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        watch.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rc == 0, log.read_text()[-4000:]
    watch.look()
    assert_nothing_left(watch, out)
    return watch


def history(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("engine,settings,kill,programs", [
    # kill -9 of the CLI alone: Ray's agents would outlive it (see engines/flower/ray_reaper.py)
    ("flower-sim", ["federated.rounds=6"], "cli", ("raylet", "gcs_server", "ray::")),
    # a SuperLink and 2 SuperNodes (TLS, SuperNode auth), the CLI's process group killed: each message starts a
    # flwr-clientapp process (seconds), so few rounds
    ("flower-deploy", ["federated.rounds=3", "federated.deploy_timeout=400", "federated.client_timeout=120"], "group",
     ("flower-superlink", "flower-supernode", "flower-superexec", "flwr-serverapp", "flwr-clientapp", "flwr run")),
], ids=["flower-sim", "flower-deploy"])
def test_kill_9_then_resume_on_flower(engine, settings, kill, programs, tmp_path):
    data = write_interactions(tmp_path / "interactions.csv", num_users=24, num_items=20)
    env = {**os.environ, "FFMREC_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    full = tmp_path / "full"  # the fast engine: the same numbers as Flower's (test_engine_equivalence.py), in seconds
    run_to_end(command(data, full, "fast", settings), env, full, timeout=300)

    out = tmp_path / "killed"
    proc, watch = start(command(data, out, engine, settings), env, tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + 300
        while rounds_logged(out) < KILL_AFTER and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, ("the run ended before it could be killed: make it longer\n"
                                     + (tmp_path / "killed.log").read_text()[-3000:])
        assert rounds_logged(out) >= KILL_AFTER, "the run did not reach round 2 in time"
        watch.look()
        for program in programs:
            assert watch.saw(program), f"no {program} among {watch.commands()}"
        if kill == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        watch.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (out / "metrics.json").exists()
    assert_nothing_left(watch, out)
    checkpointed = torch.load(out / "server.pt", weights_only=False)["state"]["round"]
    assert checkpointed >= KILL_AFTER - 1
    kept = history(out)[:checkpointed]

    run_to_end(command(data, out, engine, settings), env, out, timeout=300)

    ref, got = (torch.load(p / "server.pt", weights_only=False) for p in (full, out))
    a, b = history(full), history(out)
    assert [h["round"] for h in a] == [h["round"] for h in b] == list(range(1, ref["state"]["round"] + 1))
    assert b[:checkpointed] == kept, "the rounds of the checkpoint were run again instead of resumed"
    for x, y in zip(a, b):
        x.pop("seconds"), y.pop("seconds")
        assert y == pytest.approx(x, abs=1e-6)
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(
        json.loads((full / "metrics.json").read_text()), abs=1e-6)
    assert got["state"]["round"] == ref["state"]["round"] and got["state"]["best_round"] == ref["state"]["best_round"]
    for key in ("params", "best_params"):
        for name, value in ref[key].items():
            torch.testing.assert_close(got[key][name], value, atol=1e-6, rtol=0)
