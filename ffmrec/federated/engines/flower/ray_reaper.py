"""No Ray process of an in-process Flower simulation outlives the program that started it, even one killed with SIGKILL.

``run_simulation`` starts Ray in the calling process: ``ray.init`` starts Ray's GCS, raylet, dashboard and log
monitor, the raylet starts its dashboard and runtime-env agents and the workers (the ClientApp actors). When that
program is killed with SIGKILL, the GCS and the raylet die with it (Ray ties them to their parent), but the raylet's
two agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) do not: they notice that the raylet is gone, try to
report it to the GCS, which is gone too, and stay (over a minute, with ray 2.55, after ``kill -9`` of ``ffmrec run``).
They rename themselves (``setproctitle``), which also overwrites their environment in ``/proc``, so only the process
tree can tell whose they are, and only while the program is alive.

So :func:`ray_reaped` starts a watcher process (``python -m ffmrec.federated.engines.flower.ray_reaper``, in a session
of its own, so that a SIGKILL of the program's process group spares it) that records the program's Ray descendants
every :data:`POLL_INTERVAL` seconds. When the program leaves the ``with`` block (Ray is shut down by then), or dies,
the watcher ends every recorded Ray process that is still running, and what it started: SIGTERM, ``grace`` seconds,
then SIGKILL until none is left. Linux only (``/proc``); elsewhere :func:`ray_reaped` does nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ffmrec.federated.engines.flower.deploy.processes import _proc_stats, descendants

POLL_INTERVAL = 0.25  # seconds between looks at the program's process tree
KILL_TIMEOUT = 5.0  # seconds of SIGKILL after the grace period before the watcher gives up
_Recorded = dict[int, int]  # pid -> start time (a pid alone may be reused)


def _ray_package_dir() -> str | None:
    """Where the ``ray`` package is installed (found without importing it: that takes seconds)."""
    spec = importlib.util.find_spec("ray")
    return next(iter(spec.submodule_search_locations), None) if spec and spec.submodule_search_locations else None


def is_ray_process(cmdline: str, ray_dir: str | None) -> bool:
    """A process of Ray's: its programs (``raylet``, ``gcs_server``, Python scripts) live in the ``ray`` package; its
    workers and agents rename themselves ``ray::<name>``."""
    if cmdline.startswith("ray::"):
        return True
    return ray_dir is not None and any(arg.startswith(ray_dir + os.sep) for arg in cmdline.split()[:3])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def record_ray_descendants(parent: int, recorded: _Recorded, ray_dir: str | None) -> None:
    """Add the Ray processes among ``parent``'s descendants to ``recorded``."""
    stats = _proc_stats()
    for pid in descendants(parent, stats):
        if recorded.get(pid) != stats[pid][3] and pid != os.getpid() and is_ray_process(_cmdline(pid), ray_dir):
            recorded[pid] = stats[pid][3]


def end_recorded(recorded: _Recorded, grace: float) -> list[int]:
    """End the recorded processes that still run (same pid and start time), and their descendants: SIGTERM, up to
    ``grace`` s, then SIGKILL for at most :data:`KILL_TIMEOUT` s. Returns the pids still alive (normally none)."""

    def alive() -> set[int]:
        stats = _proc_stats()
        pids = {p for p, start in recorded.items() if p in stats and stats[p][3] == start}
        for p in list(pids):
            for child in descendants(p, stats):
                recorded.setdefault(child, stats[child][3])  # so that a reused pid is never signalled later
                pids.add(child)
        return {p for p in pids if p != os.getpid() and stats[p][2] not in ("Z", "X")}

    def send(pids: set[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    terminated: set[int] = set()
    deadline = time.monotonic() + grace
    while (pids := alive()) and time.monotonic() < deadline:
        send(pids - terminated, signal.SIGTERM)
        terminated |= pids
        time.sleep(0.1)
    deadline = time.monotonic() + KILL_TIMEOUT
    while (pids := alive()) and time.monotonic() < deadline:
        send(pids, signal.SIGKILL)
        time.sleep(0.05)
    return sorted(pids)


def watch(parent: int, grace: float) -> None:
    """Record ``parent``'s Ray descendants until ``parent`` is gone or we get SIGTERM/SIGINT/SIGHUP, then end those
    still running."""
    stop: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    recorded: _Recorded = {}
    ray_dir = _ray_package_dir()
    while not stop and os.getppid() == parent:
        record_ray_descendants(parent, recorded, ray_dir)
        time.sleep(POLL_INTERVAL)
    end_recorded(recorded, grace)


@contextmanager
def ray_reaped(grace: float = 2.0) -> Iterator[None]:
    """Within the block, a watcher records this process's Ray descendants; on leaving the block, and should this
    process die, it ends those still running (see the module docstring)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    root = str(Path(__file__).resolve().parents[4])  # ffmrec's source root, so the watcher can import this module
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    watcher = subprocess.Popen(
        [sys.executable, "-m", __spec__.name, "--parent", str(os.getpid()), "--grace", f"{grace:g}"],
        env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield
    finally:
        watcher.terminate()
        try:
            watcher.wait(timeout=grace + KILL_TIMEOUT + 10.0)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name if __spec__ else 'ray_reaper'}",
                                description="Record the Ray processes among PARENT's descendants; when PARENT is gone "
                                            "(or on SIGTERM), end those still running.")
    p.add_argument("--parent", type=int, required=True, help="pid of the program that starts Ray")
    p.add_argument("--grace", type=float, default=2.0, help="seconds between SIGTERM and SIGKILL")
    args = p.parse_args(argv)
    watch(args.parent, args.grace)


if __name__ == "__main__":
    main()
