"""Fairness figures against hand-computed values."""

import numpy as np
import pytest
import torch

from ffmrec.eval.fairness import (
    active_users,
    coverage,
    exposure_gini,
    fairness_metrics,
    gini,
    ndcg_gap,
    ranks_and_top_k,
)


def test_gini_is_zero_for_equal_and_high_for_concentrated_exposure():
    assert gini([2, 2, 2]) == 0.0 and gini([0, 0, 0]) == 0.0
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)  # (n - 1) / n for one item taking everything
    assert exposure_gini(np.array([[1, 2], [1, 2]]), 4) == pytest.approx(0.5)


def test_coverage_and_ndcg_gap():
    assert coverage(np.array([[1, 2], [2, 3]]), 6) == 0.5
    ranks = np.array([1, 3, 100, 100])
    assert ndcg_gap(ranks, np.array([1, 1, 0, 0]), 20) == pytest.approx((1 + 0.5) / 2)
    assert np.isnan(ndcg_gap(ranks, np.ones(4), 20))


def test_active_users_are_the_top_share_by_interactions():
    assert active_users(np.array([5, 50, 7, 3, 40]), share=0.4).tolist() == [0, 1, 0, 0, 1]


def test_ranks_and_top_k_agree_with_the_scores():
    scores = torch.tensor([[-np.inf, 0.1, 0.9, 0.5, 0.2], [-np.inf, 0.8, 0.1, 0.3, 0.7]])

    def score_fn(batch):
        return scores[batch["users"]]

    ranks, top = ranks_and_top_k(score_fn, [np.array([3]), np.array([2])], np.array([4, 1]), np.array([0, 1]),
                                 max_len=3, k=2)
    assert ranks.tolist() == [2, 1]  # user 0: item 3 masked, 2 > 4; user 1: item 1 first
    assert top.tolist() == [[2, 4], [1, 4]]
    m = fairness_metrics(ranks, top, 4, np.array([1, 9]), gender=np.array([0, 1]), k=2)
    assert m["coverage@2"] == 0.75 and m["NDCG@2_gap_gender"] == pytest.approx(1 - 1 / np.log2(3))


def test_rank_fairness_reads_a_runs_ranks_and_the_users_gender(tmp_path):
    import pandas as pd

    from ffmrec.data.dataset import Dataset
    from ffmrec.eval.fairness import rank_fairness
    from ffmrec.utils.io import save_columns

    data = Dataset.from_sequences([[1, 2, 3]] * 4 + [[1, 2, 3, 4, 5, 6]], num_items=6)
    data = Dataset(**{**data.__dict__, "user_attributes": pd.DataFrame({"gender": ["F", "M", "M", "F", "M"]})})
    save_columns(tmp_path / "test_ranks.npz", {"user": np.arange(5), "rank": np.array([1, 3, 100, 1, 3])})
    m = rank_fairness(tmp_path / "test_ranks.npz", data)
    assert m["NDCG@20_gap_gender"] == pytest.approx((0.5 + 0 + 0.5) / 3 - 1.0)
    assert m["NDCG@20_gap_active"] == pytest.approx(0.5 - (1 + 0.5 + 0 + 1) / 4)  # user 4 is the active 20%
    assert rank_fairness(tmp_path / "missing.npz", data) == {}
