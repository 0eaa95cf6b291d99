"""The Ray processes a program starts inside ``ray_reaped()`` end when it leaves the block and when it is killed with
SIGKILL; its other processes are left alone (ffmrec.federated.engines.flower.ray_reaper).

Instead of Ray, the program starts two ``sleep`` processes, one renamed ``ray::FakeAgent`` as Ray's agents rename
themselves; killing the program leaves both behind as orphans, as a SIGKILL of ``ffmrec run`` leaves Ray's agents.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")]

REPO = Path(__file__).resolve().parents[2]
PROGRAM = textwrap.dedent("""
    import subprocess, sys, time
    from ffmrec.federated.engines.flower.ray_reaper import ray_reaped

    with ray_reaped(grace=0.5):
        fake = subprocess.Popen(["bash", "-c", "exec -a ray::FakeAgent sleep 60"])
        other = subprocess.Popen(["sleep", "60"])
        print(fake.pid, other.pid, flush=True)
        time.sleep(float(sys.argv[1]))  # the watcher records the processes meanwhile
    print("left", flush=True)
    time.sleep(60)
""")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@pytest.mark.parametrize("ending", ["leaves-the-block", "killed"])
def test_ray_processes_end_with_the_block_or_the_program(ending):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    block = "2" if ending == "leaves-the-block" else "60"
    program = subprocess.Popen([sys.executable, "-c", PROGRAM, block], env=env, stdout=subprocess.PIPE, text=True)
    fake = other = None
    try:
        fake, other = map(int, program.stdout.readline().split())
        if ending == "leaves-the-block":
            assert program.stdout.readline().strip() == "left"
            assert not alive(fake), "the Ray process outlived the block"  # ray_reaped returned after ending it
            assert alive(other) and program.poll() is None
        else:
            time.sleep(3)  # the watcher starts and looks a few times
            program.kill()
            program.wait(timeout=10)
            assert wait_gone(fake, within=10), "the Ray process outlived the program killed with SIGKILL"
            assert alive(other), "a process that is not Ray's was ended"
    finally:
        for pid in (fake, other):
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGKILL)
        if program.poll() is None:
            program.kill()
        program.wait(timeout=10)
