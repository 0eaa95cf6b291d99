"""Processes a deployment starts, started so that none of them outlives the cluster (Linux ``/proc`` and ``prctl``).

Flower's processes start processes of their own: the SuperLink and every SuperNode start a ``flower-superexec`` in a
session of its own, which starts a ``flwr-serverapp`` or a ``flwr-clientapp`` per run or message. Signalling the
processes we started is not enough: when a SuperNode dies its ``flower-superexec`` is re-parented to init and goes on
starting ClientApps, and a program killed with SIGKILL runs no cleanup code at all. So every process runs under a
supervisor (:mod:`~ffmrec.federated.engines.flower.deploy.supervisor`), a small Python process that

* is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): whatever its child starts stays its descendant, even
  when a process in between exits or starts a session of its own, so one walk over ``/proc`` finds them all;
* notices within 0.1 s that the program which started it is gone (``PR_SET_PDEATHSIG`` and its parent pid), that it
  is asked to stop (SIGTERM) or that its child exited, and then ends its whole descendant tree (:func:`end_tree`:
  SIGTERM, a grace period, SIGKILL until nothing is left) and exits with its child's status.

:class:`ManagedProcess` is the parent's handle on one supervised process (:func:`spawn`); :func:`run_supervised` runs a
short command (the ``flwr`` CLI) the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SUPERVISOR_MODULE = "ffmrec.federated.engines.flower.deploy.supervisor"
KILL_TIMEOUT = 5.0  # seconds end_tree keeps sending SIGKILL after the grace period before it gives up


# --- the process tree ------------------------------------------------------------------------------------------------
def _proc_stats() -> dict[int, tuple[int, int, str, int]]:
    """``{pid: (ppid, process group, state, start time)}`` of every process (Linux ``/proc``; empty elsewhere)."""
    stats: dict[int, tuple[int, int, str, int]] = {}
    if not os.path.isdir("/proc"):
        return stats
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            fields = stat[stat.rindex(")") + 2:].split()
            stats[int(entry)] = (int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
        except (OSError, ValueError, IndexError):
            continue
    return stats


def descendants(pid: int, stats: dict[int, tuple[int, int, str, int]] | None = None) -> list[int]:
    """All descendants of ``pid`` (zombies included: they are gone but not yet reaped)."""
    stats = _proc_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for child, (ppid, *_) in stats.items():
        children.setdefault(ppid, []).append(child)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def live_descendants(pid: int) -> list[int]:
    """The descendants of ``pid`` that have not exited (no zombies)."""
    stats = _proc_stats()
    return [p for p in descendants(pid, stats) if stats[p][2] not in ("Z", "X")]


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes (other than this one) whose command line or environment contains ``text``, e.g. a cluster's
    workdir: ``{pid: command line}``. Finds what a cluster left behind even where the process tree no longer leads
    to it. Environments of other users' processes are unreadable without root and are skipped."""
    needle = text.encode()
    found: dict[int, str] = {}
    for pid, (_, _, state, _) in _proc_stats().items():
        if pid == os.getpid() or state in ("Z", "X"):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    environ = f.read()
            except PermissionError:
                environ = b""
        except OSError:  # it exited meanwhile
            continue
        if needle in cmdline or needle in environ:
            found[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def end_tree(pid: int, grace: float = 5.0, *, reap: Callable[[], None] | None = None) -> list[int]:
    """End every descendant of ``pid``: SIGTERM (also to processes that appear meanwhile), up to ``grace`` s for them to
    exit, then SIGKILL until none is left (at most :data:`KILL_TIMEOUT` s more). ``reap`` runs before every look at
    the tree: a subreaper must collect the zombies of the orphans it inherits. Returns the pids still alive (empty
    unless a process could not be killed, e.g. one stuck in the kernel)."""
    def alive() -> list[int]:
        if reap is not None:
            reap()
        return live_descendants(pid)

    def send(pids: list[int], sig: int) -> None:
        for p in pids:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass

    terminated: set[int] = set()
    deadline = time.monotonic() + grace
    while (pids := alive()) and time.monotonic() < deadline:
        send([p for p in pids if p not in terminated], signal.SIGTERM)
        terminated.update(pids)
        time.sleep(0.05)
    deadline = time.monotonic() + KILL_TIMEOUT
    while (pids := alive()) and time.monotonic() < deadline:
        send(pids, signal.SIGKILL)
        time.sleep(0.05)
    return pids


# --- supervised processes --------------------------------------------------------------------------------------------
def supervised(args: Sequence[str], grace: float = 5.0) -> list[str]:
    """The command line that runs ``args`` under a supervisor tied to this process (see the module docstring).

    ``PR_SET_PDEATHSIG`` fires when the *thread* that started the process exits, so the supervisor asks for it only
    when started from the main thread; from other threads it relies on watching its parent pid (every 0.1 s)."""
    cmd = [sys.executable, "-m", SUPERVISOR_MODULE, "--parent", str(os.getpid()), "--grace", f"{grace:g}"]
    if threading.current_thread() is threading.main_thread():
        cmd.append("--pdeathsig")
    return [*cmd, "--", *args]


def _importable(env: dict[str, str] | None) -> dict[str, str]:
    """``env`` (default: ours) with ffmrec's source root on ``PYTHONPATH``, so the supervisor module can be found."""
    import ffmrec

    env = dict(os.environ if env is None else env)
    root = str(Path(ffmrec.__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


@dataclass
class ManagedProcess:
    """A process started under a supervisor (:func:`spawn`), and its log file.

    ``popen`` is the supervisor: its pid and exit status stand for the process's, and it exits only once the process
    and everything the process started have ended. ``args`` is the process's own command line."""

    name: str
    args: list[str]
    popen: subprocess.Popen
    log_path: Path
    grace: float = 5.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def terminate(self) -> None:
        """Ask the supervisor to end the process tree (it does not wait; :meth:`stop` does)."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """End the process and every process it started: SIGTERM, ``grace`` s, SIGKILL (done by the supervisor;
        should the supervisor itself hang, from here)."""
        self.terminate()
        try:
            self.popen.wait(timeout=self.grace + KILL_TIMEOUT + 5.0)
        except subprocess.TimeoutExpired:
            end_tree(self.popen.pid, grace=0.0)  # still its descendants: the supervisor is alive and a subreaper
            self.popen.kill()
            self.popen.wait(timeout=KILL_TIMEOUT)


def spawn(name: str, args: Sequence[str], log_path: str | os.PathLike, *, env: dict[str, str] | None = None,
          cwd: str | os.PathLike | None = None, grace: float = 5.0) -> ManagedProcess:
    """Start ``args`` under a supervisor in a session of its own (Ctrl-C in a terminal reaches only us; we stop it),
    stdout and stderr appended to ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        popen = subprocess.Popen(supervised(args, grace), stdout=log_file, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=_importable(env), cwd=cwd, start_new_session=True)
    return ManagedProcess(name, list(args), popen, log_path, grace)


def run_supervised(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None,
                   cwd: str | os.PathLike | None = None, grace: float = 5.0) -> subprocess.CompletedProcess:
    """``subprocess.run(args, capture_output=True, text=True, timeout=timeout)`` with ``args`` under a supervisor: on
    the timeout (:class:`subprocess.TimeoutExpired`), any exception here (Ctrl-C) or this process's death, ``args``
    and everything it started end."""
    popen = subprocess.Popen(supervised(args, grace), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True, env=_importable(env), cwd=cwd,
                             start_new_session=True)
    try:
        stdout, stderr = popen.communicate(timeout=timeout)
    except BaseException:
        popen.terminate()
        try:
            popen.communicate(timeout=grace + KILL_TIMEOUT + 5.0)
        except subprocess.TimeoutExpired:
            end_tree(popen.pid, grace=0.0)
            popen.kill()
            popen.communicate()
        raise
    return subprocess.CompletedProcess(list(args), popen.returncode, stdout, stderr)
