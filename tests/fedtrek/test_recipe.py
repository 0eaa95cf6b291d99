"""``ffmrec run fedtrek`` end to end on a tiny ReDial folder (fast engine, stateful KTO clients), and its resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ffmrec.recipes import load_recipe


def test_recipe_defaults_follow_the_paper():
    config = load_recipe("fedtrek")
    assert config.method == "fedtrek" and config.dataset == "redial"
    assert config.federated.clients_per_round == 4 and config.federated.strategy == "lora_product"
    assert (config.task.desirable_weight, config.task.undesirable_weight) == (4.0, 3.0)
    assert config.task.protocol == "leak-free"


@pytest.mark.slow
def test_cli_run_and_resume(tiny_redial, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ffmrec.cli", "run", "fedtrek", "--dataset", str(tiny_redial), "--out", str(out),
           "--quiet", "--set", "federated.rounds=2", "federated.clients_per_round=2", "federated.eval_every=1",
           "federated.eval_users=null", "task.max_tokens=128", "task.pkg_tokens=48"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=170)
    assert first.returncode == 0, first.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"precision", "recall", "F1", "MRR", "Hits@1", "Hits@3", "Hits@10"}
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2] and all(x["ok"] == 2 and x["bytes_up"] > 0 for x in lines)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=170)  # resumes: nothing left to do
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
