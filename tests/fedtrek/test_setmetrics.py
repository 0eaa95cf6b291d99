"""Set metrics, hand-computed; the reference's lenient scoring does not apply."""

from __future__ import annotations

import pytest

from ffmrec.eval.setmetrics import (
    TitleIndex,
    normalize_title,
    parse_bulleted,
    query_columns,
    reciprocal_rank,
    set_counts,
    set_metrics,
)

INDEX = TitleIndex([("1", "The Shining  (1980)"), ("2", "It (2017)"), ("3", "It (1990)"), ("4", "Shining Through (1992)")])


def test_normalization_and_exact_resolution():
    assert normalize_title("the  SHINING(1980).") == "the shining (1980)"
    assert INDEX.resolve(["The Shining (1980)", "it (2017)", "Shining", "It", "The Shining (1980)"]) == ["1", "2", None, None]
    # "Shining" would substring-match two titles in the reference; here it is a miss, as is "It" without its year;
    # distinct unresolved titles each stay in the list as a miss
    assert INDEX.resolve(["Shining", "It", "shining"]) == [None, None]


def test_parse_bulleted():
    assert parse_bulleted("Based on your graph:\n- The Shining (1980)\n* It (2017)\n2. Alien (1979)") == [
        "The Shining (1980)", "It (2017)", "Alien (1979)"]
    assert parse_bulleted("I recommend The Shining (1980).") is None
    assert parse_bulleted("") is None


def test_counts_remove_duplicates_and_owe_one_prediction():
    assert set_counts(["1", "1", "2"], {"1"}) == (1, 2, 1)
    assert set_counts(None, {"1", "2"}) == (0, 1, 2)  # unparseable: stays in both denominators
    assert set_counts([], {"1"}) == (0, 1, 1)
    assert set_counts([None, "3"], {"3"}) == (1, 2, 1)  # an unresolved title is a miss, not dropped
    assert reciprocal_rank(["2", "2", "1"], {"1"}) == pytest.approx(1 / 2)


def test_metrics_hand_computed():
    # query 1: outputs {1, 2}, relevant {1}: 1 hit of 2; ranked 1 first -> rr 1
    # query 2: unparseable, relevant {3}: 0 of 1 owed; rr 0
    # query 3: outputs {4}, relevant {2, 3}: 0 hits; ranked [4, 9, 3] -> rr 1/3, hit@3
    cols = query_columns([["1", "2"], None, ["4"]], [["1", "2"], None, ["4", "9", "3"]], [{"1"}, {"3"}, {"2", "3"}])
    m = set_metrics(cols)
    p, r = 1 / 4, 1 / 4
    assert m["precision"] == pytest.approx(p) and m["recall"] == pytest.approx(r)
    assert m["F1"] == pytest.approx(2 * p * r / (p + r))
    assert m["MRR"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert m["Hits@1"] == pytest.approx(1 / 3) and m["Hits@3"] == pytest.approx(2 / 3) and m["Hits@10"] == pytest.approx(2 / 3)
