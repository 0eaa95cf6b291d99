"""Traits from user attributes, and the leakage metrics against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from ffmrec.errors import DataError
from ffmrec.privacy import metrics as M
from ffmrec.privacy.traits import age_group, traits_from_attributes


def test_traits_map_gender_age_groups_and_occupations_with_unknowns():
    frame = pd.DataFrame({"gender": ["F", "M", None, "m"], "age": [1, 23, 56, np.nan],
                          "occupation": [10, 2, 10, None]})
    t = traits_from_attributes(frame)
    assert t.labels["gender"].tolist() == [0, 1, -1, 1]
    assert t.labels["age"].tolist() == [0, 1, 6, -1]  # code 1 -> under 18, 23 years -> 18-24, 56 -> 56+
    assert t.labels["occupation"].tolist() == [1, 0, 1, -1]  # categories "2" < "10"
    assert t.known("gender").tolist() == [0, 1, 3]
    assert t.majority_rate("gender") == pytest.approx(2 / 3)


def test_age_group_codes_and_years_agree():
    assert age_group(np.array([1, 18, 25, 35, 45, 50, 56])).tolist() == list(range(7))
    assert age_group(np.array([12, 17, 19, 30, 44, 49, 52, 80])).tolist() == [0, 0, 1, 2, 3, 4, 5, 6]


def test_traits_without_attributes_fail_clearly():
    with pytest.raises(DataError, match="no user attributes"):
        traits_from_attributes(None, "'toy'")
    with pytest.raises(DataError, match="none of the traits"):
        traits_from_attributes(pd.DataFrame({"zip": ["1"]}), "'toy'")


def test_auc_matches_hand_computed_pairs_with_ties():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.5, 0.5, 0.9])
    # pairs (pos, neg): (0.5,0.1)=1, (0.5,0.5)=0.5, (0.9,0.1)=1, (0.9,0.5)=1 -> 3.5 / 4
    assert M.roc_auc(y, s) == pytest.approx(0.875)
    assert M.roc_auc(y, -s) == pytest.approx(0.125)
    assert np.isnan(M.roc_auc(np.ones(3), np.arange(3)))


def test_balanced_accuracy_of_a_constant_guess_is_one_half():
    y = np.array([1, 1, 1, 0])
    assert M.balanced_accuracy(y, np.ones(4)) == 0.5
    assert M.accuracy(y, np.ones(4)) == 0.75
    assert M.majority_rate(y) == 0.75


def test_macro_auc_averages_one_vs_rest_and_scores_unseen_classes_one_half():
    y = np.array([0, 1, 2, 2])
    perfect = np.eye(3)[y]
    assert M.macro_auc(y, perfect) == 1.0
    only_two_columns = perfect[:, :2]  # class 2 never seen by the attacker
    assert M.macro_auc(y, only_two_columns, classes=np.array([0, 1])) == pytest.approx((1 + 1 + 0.5) / 3)


def test_bootstrap_interval_covers_the_estimate_and_permutation_p_separates_signal_from_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    signal = y + rng.normal(0, 0.7, 300)
    noise = np.random.default_rng(2).normal(0, 1, 300)  # independent of the labels
    lo, hi = M.bootstrap_ci(M.roc_auc, y, signal, n=200)
    assert lo < M.roc_auc(y, signal) < hi and hi - lo < 0.15
    assert M.permutation_pvalue(M.roc_auc, y, signal, n=200) == pytest.approx(1 / 201)
    assert M.permutation_pvalue(M.roc_auc, y, noise, n=200) > 0.05
