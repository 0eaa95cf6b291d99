"""The supervisor every deployment process runs under (ffmrec.federated.engines.flower.deploy.processes), on plain
shell commands: it ends the whole tree, orphans and new sessions included, when asked to, when the command exits,
when its parent dies by SIGKILL, and it passes the command's exit status on. Seconds each, no Flower involved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ffmrec.federated.engines.flower.deploy.processes import (
    _proc_stats,
    live_descendants,
    run_supervised,
    spawn,
)

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc and prctl")]

REPO = Path(__file__).resolve().parents[2]
# A tree that escapes plain process-group killing: a background child, a grandchild in a session of its own and an
# orphan whose parent exited at once (re-parented: to init, were the supervisor not a subreaper).
TREE = "sleep 300 & setsid sh -c 'sleep 301 & sleep 302' & (sleep 303 &); exec sleep 304"


def _wait_for(condition, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def _alive(pids: dict[int, int]) -> list[int]:
    """Of ``{pid: start time}``, the ones still running (not zombies, not a reused pid)."""
    stats = _proc_stats()
    return [p for p, start in pids.items() if p in stats and stats[p][3] == start and stats[p][2] not in ("Z", "X")]


def _snapshot(root: int) -> dict[int, int]:
    stats = _proc_stats()
    return {p: stats[p][3] for p in live_descendants(root) if p in stats}


def test_stop_ends_orphans_and_other_sessions(tmp_path):
    proc = spawn("tree", ["sh", "-c", TREE], tmp_path / "tree.log")
    _wait_for(lambda: len(live_descendants(proc.pid)) >= 6, 10, "the tree started")
    tree = _snapshot(proc.pid)
    proc.stop()
    assert proc.popen.returncode == -signal.SIGTERM  # the command was ended by SIGTERM; so is the supervisor
    assert not _alive(tree)


def test_the_command_exit_status_is_passed_on_and_leftovers_end(tmp_path):
    proc = spawn("exits", ["sh", "-c", "(sleep 305 &); sleep 0.5; exit 3"], tmp_path / "exits.log")
    _wait_for(lambda: live_descendants(proc.pid), 10, "the command started")
    tree = _snapshot(proc.pid)
    assert proc.popen.wait(timeout=15) == 3
    assert not _alive(tree)


def test_sigterm_ignored_means_sigkill_after_the_grace_period(tmp_path):
    proc = spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 306 & exec sleep 307"], tmp_path / "s.log", grace=1.0)
    _wait_for(lambda: len(live_descendants(proc.pid)) >= 2, 10, "the command started")
    tree = _snapshot(proc.pid)
    start = time.monotonic()
    proc.stop()
    assert 0.9 < time.monotonic() - start < 8 and not _alive(tree)


def test_a_command_that_cannot_start_is_reported(tmp_path):
    proc = spawn("missing", ["/nonexistent/flower-superlink"], tmp_path / "missing.log")
    assert proc.popen.wait(timeout=15) == 127
    assert "cannot start '/nonexistent/flower-superlink'" in proc.log()


def test_run_supervised_timeout_ends_the_tree():
    before = set(live_descendants(os.getpid()))
    with pytest.raises(subprocess.TimeoutExpired):
        run_supervised(["sh", "-c", TREE], timeout=1.0)
    assert set(live_descendants(os.getpid())) <= before
    res = run_supervised(["sh", "-c", "echo out; echo err >&2; exit 4"], timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == (4, "out\n", "err\n")


CHILD = textwrap.dedent("""
    import sys, threading, time
    from ffmrec.federated.engines.flower.deploy.processes import spawn

    spawn("main-thread", ["sh", "-c", sys.argv[1]], sys.argv[2])
    # from another thread: no PR_SET_PDEATHSIG (it would fire when that thread ends); the parent pid is watched
    worker = threading.Thread(target=spawn, args=("thread", ["sh", "-c", sys.argv[1]], sys.argv[2]))
    worker.start()
    worker.join()
    print("started", flush=True)
    time.sleep(600)
""")


def test_sigkill_of_the_parent_ends_every_tree(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, TREE, str(tmp_path / "trees.log")], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started"
        _wait_for(lambda: len(live_descendants(child.pid)) >= 14, 10, "both trees started")  # 2 x (supervisor + 6)
        tree = _snapshot(child.pid)
        child.kill()
        child.wait()
        took = _wait_for(lambda: not _alive(tree), 10, "every process of both trees ended")
        assert took < 5.0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
