"""A run killed with SIGKILL and started again with the same --out ends exactly like an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import TINY_MODEL, write_interactions


def command(recipe, data, out, extra):
    return [sys.executable, "-m", "ffmrec.cli", "run", recipe, "--dataset", str(data), "--out", str(out), "--quiet",
            "--set", *TINY_MODEL, *extra]


def lines(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("recipe,extra,unit", [
    ("fedsasrec", ["federated.rounds=120", "federated.clients_per_round=10", "federated.eval_every=20",
                   "federated.chunk_size=4"], 10),
    ("sasrec", ["train.epochs=40", "train.patience=0", "train.batch_size=8"], 5),
])
def test_kill_9_then_resume_gives_identical_metrics(recipe, extra, unit, tmp_path):
    data = write_interactions(tmp_path / "interactions.csv", num_users=60, num_items=30)
    env = {**os.environ, "FFMREC_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run(command(recipe, data, full, extra), check=True, env=env, timeout=600)

    out = tmp_path / "killed"
    proc = subprocess.Popen(command(recipe, data, out, extra), env=env)
    deadline = time.time() + 300
    while lines(out / "history.jsonl") < unit and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    subprocess.run(command(recipe, data, out, extra), check=True, env=env, timeout=600)

    assert json.loads((out / "metrics.json").read_text()) == json.loads((full / "metrics.json").read_text())
    a = [json.loads(x) for x in (full / "history.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731
    assert [strip(h) for h in a] == [strip(h) for h in b]
