"""A recorded FedSASRec run with local DP, attacked by ``ffmrec attack`` (generic data with user attributes)."""

import json

import numpy as np
import pytest

from ffmrec.cli import main


@pytest.mark.slow
def test_recorded_run_with_local_dp_is_attacked_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    rows, attrs = ["user,item,timestamp"], ["user,gender,age,occupation"]
    for u in range(80):
        gender = "M" if u % 2 else "F"
        pool = np.arange(0, 20) if gender == "M" else np.arange(15, 35)
        for t, item in enumerate(rng.choice(pool, 8, replace=False)):
            rows.append(f"u{u},i{item},{t}")
        attrs.append(f"u{u},{gender},{20 + u % 30},{u % 4}")
    (data / "interactions.csv").write_text("\n".join(rows) + "\n")
    (data / "user_attributes.csv").write_text("\n".join(attrs) + "\n")
    run = tmp_path / "run"
    assert main(["run", "fedsasrec", "--dataset", str(data), "--out", str(run), "--quiet", "--set", "threads=1",
                 "model.max_len=8", "model.hidden_size=8", "model.num_layers=1", "model.num_heads=1",
                 "model.inner_size=16", "federated.rounds=3", "federated.clients_per_round=40",
                 "federated.eval_every=3", "federated.client_clip_norm=1.0", "federated.client_noise_multiplier=0.5",
                 "federated.pseudo_item_ratio=1", "federated.record_rounds=[2,3]"]) == 0
    assert sorted(p.name for p in (run / "egress").iterdir()) == ["round-00002.pt", "round-00003.pt"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"NDCG@20_gap_gender", "NDCG@20_gap_active"} <= set(metrics)  # fairness in every run's metrics
    capsys.readouterr()
    assert main(["attack", str(run), "--labelled", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "gender_auc=" in out and "gender_auc_worst_artifact=" in out
    doc = json.loads((run / "attack.json").read_text())
    assert doc["users"] == 80 and doc["users_recorded"] > 40
    assert doc["results"]["raw-interactions"]["gender"]["auc"] > 0.9  # the ceiling sees the gendered item pools
    assert {"all", "values:dense", "metadata"} <= set(doc["results"])
    assert (run / "attack.md").read_text().startswith("# Attribute-inference attacks")
