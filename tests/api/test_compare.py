"""``compare``: mean ± std over seeds, a paired Wilcoxon test over users, validation curves on one figure."""

import json

import numpy as np
import pytest
import yaml

from ffmrec.compare import compare, paired_test, per_user_metric
from ffmrec.errors import ConfigError
from ffmrec.utils.io import save_columns


def fake_run(path, ranks, ndcg, dataset="ml-100k", curve=(0.1, 0.2), step="epoch"):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"method": "sasrec", "dataset": dataset, "data": {"min": 5}}))
    (path / "history.jsonl").write_text("".join(json.dumps({step: i + 1, "valid/NDCG@10": v}) + "\n"
                                                for i, v in enumerate(curve)))
    save_columns(path / "test_ranks.npz", {"user": np.arange(len(ranks))[::-1], "rank": np.asarray(ranks)[::-1]})
    (path / "metrics.json").write_text(json.dumps({"HR@10": 0.5, "NDCG@10": ndcg}))
    return path


def fake_seeds(path, runs):
    path.mkdir(parents=True)
    names = []
    for i, (ranks, ndcg) in enumerate(runs):
        fake_run(path / f"seed-{42 + i}", ranks, ndcg, step="round", curve=(0.01 * (i + 1), 0.02 * (i + 1)))
        names.append(f"seed-{42 + i}")
    (path / "seeds.json").write_text(json.dumps({"runs": names}))
    return path


def test_per_user_metrics_match_their_definitions():
    ranks = np.array([1, 3, 11])
    assert per_user_metric(ranks, "HR@10").tolist() == [1.0, 1.0, 0.0]
    assert np.allclose(per_user_metric(ranks, "NDCG@10"), [1.0, 0.5, 0.0])
    assert np.allclose(per_user_metric(ranks, "MRR"), [1.0, 1 / 3, 1 / 11])
    with pytest.raises(ConfigError, match="metric"):
        per_user_metric(ranks, "F1")


def test_paired_test_is_one_without_differences_and_small_for_a_consistent_gain():
    a = np.linspace(0, 1, 50)
    assert paired_test(a, a) == 1.0
    assert paired_test(a, a + 0.1) < 1e-6


def test_compare_gives_mean_std_over_seeds_and_a_paired_p_value(tmp_path):
    rng = np.random.default_rng(0)
    base_ranks = rng.integers(1, 30, size=60)
    base = fake_seeds(tmp_path / "base", [(base_ranks, 0.2), (base_ranks, 0.4)])
    better = fake_seeds(tmp_path / "better", [(np.ones(60, int), 0.9), (np.ones(60, int), 0.7)])
    result = compare([base, better], figure=tmp_path / "curves.png")
    assert result.runs[0].metrics["NDCG@10"] == pytest.approx(0.3)
    assert result.runs[0].std["NDCG@10"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert result.p_values[0] is None and result.p_values[1] < 1e-3
    table = result.table()
    assert "0.3000 ± 0.1414" in table and "0.8000 ± 0.1414" in table
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_runs_on_other_data_get_no_p_value(tmp_path):
    a = fake_run(tmp_path / "a", [1, 2, 3], 0.5)
    b = fake_run(tmp_path / "b", [1, 2, 3], 0.5, dataset="beauty")
    result = compare([a, b], figure=None)
    assert result.p_values == [None, None]
    assert any("other data" in n for n in result.notes)


def test_unknown_metric_is_refused_with_the_choices(tmp_path):
    a = fake_run(tmp_path / "a", [1, 2, 3], 0.5)
    with pytest.raises(ConfigError, match="NDCG@10"):
        compare([a], metric="NDCG@5")
