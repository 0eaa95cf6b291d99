"""The supervisor each deployment process runs under (see :mod:`~ffmrec.federated.engines.flower.deploy.processes`)::

    python -m ffmrec.federated.engines.flower.deploy.supervisor --parent PID [--pdeathsig] [--grace S] -- COMMAND...

It runs COMMAND as its child and, being a child subreaper, inherits every process that COMMAND's tree orphans. When
COMMAND exits, when it is asked to stop (SIGTERM, SIGINT, SIGHUP) or when process PID (the program that started the
cluster) is gone, it ends all its descendants (SIGTERM, ``--grace`` seconds, SIGKILL) and exits with COMMAND's status,
or by the signal that ended COMMAND. COMMAND itself gets ``PR_SET_PDEATHSIG=SIGKILL``: should the supervisor be
killed, COMMAND dies with it.

Linux only in full; elsewhere ``prctl`` is missing and the supervisor still watches PID and ends what it can see.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import signal
import sys
import time

from ffmrec.federated.engines.flower.deploy.processes import end_tree

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_INTERVAL = 0.1  # seconds between looks at the child, the parent and pending signals
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@functools.cache
def _libc_prctl():
    """libc's ``prctl`` through ctypes, or None where there is none (not Linux). The supervisor loads it before it
    forks, so the child between fork and exec only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)``; False where there is no prctl or it failed."""
    prctl = _libc_prctl()
    return prctl is not None and prctl(option, value, 0, 0, 0) == 0


def _start(command: list[str]) -> int:
    """Fork and exec ``command`` with SIGKILL as its parent-death signal; its pid. (Signal handlers need no reset:
    exec restores the default action of every caught signal.)"""
    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: nothing here may return into the supervisor's code
        try:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != supervisor:  # the supervisor died before prctl took effect
                os._exit(1)
            os.execvp(command[0], command)
        except BaseException as err:  # noqa: BLE001 - report any failure to exec, then leave
            os.write(2, f"supervisor: cannot start {command[0]!r}: {err}\n".encode())
        os._exit(127)
    return pid


def supervise(command: list[str], parent: int, grace: float = 5.0, pdeathsig: bool = False) -> int:
    """Run ``command`` until it exits, we are told to stop or ``parent`` is gone; then end every descendant. Returns
    ``command``'s wait status as :func:`os.waitstatus_to_exitcode` gives it (``-N``: ended by signal N), or 1 when
    it never started because ``parent`` was already gone."""
    stop: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if pdeathsig:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before (or while) we started
        return 1

    child = _start(command)
    status: list[int] = []

    def reap() -> None:
        """Collect every exited child (ours and orphans re-parented to us); keep the command's status."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == child:
                status.append(os.waitstatus_to_exitcode(wait_status))

    while not status and not stop and os.getppid() == parent:
        reap()
        if not status:
            time.sleep(POLL_INTERVAL)
    end_tree(os.getpid(), grace, reap=reap)
    deadline = time.monotonic() + 1.0
    while not status and time.monotonic() < deadline:  # end_tree reaped it, or it is about to be reaped
        reap()
        time.sleep(0.01)
    return status[0] if status else -signal.SIGKILL


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name if __spec__ else 'supervisor'}",
                                description="Run COMMAND; end it and everything it started when it exits, on SIGTERM, "
                                            "or when process PARENT is gone.")
    p.add_argument("--parent", type=int, required=True, help="pid of the process whose death ends COMMAND")
    p.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    p.add_argument("--pdeathsig", action="store_true",
                   help="also ask Linux for SIGTERM when PARENT's thread that started us exits")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no COMMAND given: put it after `--`")
    code = supervise(command, args.parent, args.grace, args.pdeathsig)
    if code < 0:  # ended by a signal: end the same way, so our parent sees what the command's parent would have
        sys.stdout.flush()
        try:
            signal.signal(-code, signal.SIG_DFL)  # SIGKILL and SIGSTOP have no handler to reset
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), -code)
        code = 128 - code
    sys.exit(code)


if __name__ == "__main__":
    main()
