import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ffmrec.data.batching import pad_histories
from ffmrec.errors import ConfigError
from ffmrec.eval.metrics import (
    f1_at_k,
    hit_rate,
    hits_at_k,
    mrr,
    ndcg,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from ffmrec.eval.ranking import exclude_history, target_ranks


def test_single_target_metrics_by_hand():
    ranks = np.array([1, 3, 11, 2])
    assert hit_rate(ranks, 10) == pytest.approx(3 / 4)
    assert hit_rate(ranks, 1) == pytest.approx(1 / 4)
    # NDCG@10: 1/log2(2) + 1/log2(4) + 0 + 1/log2(3), averaged
    assert ndcg(ranks, 10) == pytest.approx((1 + 0.5 + 0 + 1 / math.log2(3)) / 4)
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 11 + 1 / 2) / 4)
    assert mrr(ranks, k=2) == pytest.approx((1 + 0 + 0 + 1 / 2) / 4)
    assert ranking_metrics(ranks, (10, 20)).keys() == {"HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR"}


def test_set_metrics_by_hand_and_duplicates_never_count_twice():
    rec = ["a", "b", "a", "c", "d"]
    rel = {"a", "d"}
    # top-3 distinct: a, b, c
    assert precision_at_k(rec, rel, 3) == pytest.approx(1 / 3)
    assert recall_at_k(rec, rel, 3) == pytest.approx(1 / 2)
    assert f1_at_k(rec, rel, 3) == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert hits_at_k(rec, rel, 3) == 1.0
    assert hits_at_k(["b", "b", "b"], rel, 3) == 0.0
    assert precision_at_k(["a", "a", "a"], {"a"}, 3) == pytest.approx(1 / 3)
    assert recall_at_k(rec, set(), 3) == 0.0
    with pytest.raises(ConfigError):
        precision_at_k(rec, rel, 0)


def test_ties_are_pessimistic_and_deterministic():
    scores = torch.tensor([[float("-inf"), 1.0, 1.0, 1.0, 0.5]])
    # target 2 ties with items 1 and 3 -> rank 3 whatever the order of items
    assert target_ranks(scores, torch.tensor([2])).item() == 3
    assert target_ranks(scores, torch.tensor([4])).item() == 4
    constant = torch.zeros(1, 6)
    assert target_ranks(constant, torch.tensor([5])).item() == 6


def test_history_masking_keeps_repeated_target():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0]])
    hist = torch.tensor([[0, 1, 2]])
    masked = exclude_history(scores, hist, torch.tensor([3]))
    assert target_ranks(masked, torch.tensor([3])).item() == 1  # items 1, 2 excluded
    masked = exclude_history(scores, hist, torch.tensor([2]))  # target repeated from history: still a candidate
    assert target_ranks(masked, torch.tensor([2])).item() == 1


def test_pad_histories_left_pads_and_truncates():
    out = pad_histories([np.array([1, 2, 3]), np.array([4])], max_len=2)
    assert out.tolist() == [[2, 3], [0, 4]]


ranks_st = st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=50).map(np.array)


@given(ranks_st, st.integers(1, 100))
def test_ndcg_and_hr_bounds(ranks, k):
    assert 0.0 <= ndcg(ranks, k) <= hit_rate(ranks, k) <= 1.0


@given(ranks_st, st.integers(1, 100), st.integers(0, 100))
def test_hr_and_ndcg_monotone_in_k(ranks, k, extra):
    assert hit_rate(ranks, k) <= hit_rate(ranks, k + extra)
    assert ndcg(ranks, k) <= ndcg(ranks, k + extra) + 1e-12


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=30), st.data())
def test_rank_invariant_to_item_permutation(values, data):
    scores = torch.tensor([values])
    t = data.draw(st.integers(0, len(values) - 1))
    perm = torch.tensor(data.draw(st.permutations(list(range(len(values))))))
    r1 = target_ranks(scores, torch.tensor([t])).item()
    inv = torch.argsort(perm)
    r2 = target_ranks(scores[:, perm], inv[t].view(1)).item()
    assert r1 == r2


def test_target_scored_nan_ranks_last_with_a_warning():
    scores = torch.tensor([[float("-inf"), 0.3, float("nan"), 0.1], [float("-inf"), 0.3, float("nan"), 0.1]])
    with pytest.warns(RuntimeWarning, match="NaN"):
        ranks = target_ranks(scores, torch.tensor([2, 1]))
    assert ranks.tolist() == [4, 1]  # the NaN target is a miss (last of 4 columns); a NaN competitor never outranks
