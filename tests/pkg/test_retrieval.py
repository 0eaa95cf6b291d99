"""Sub-PKG retrieval: relevant part first, canonical text, token budget checked and never exceeded."""

from __future__ import annotations

import json

import pytest

from ffmrec.pkg.graph import PKG
from ffmrec.pkg.retrieval import BudgetError, relevance_order, retrieve, retrieve_within

PKG_ALL = PKG(3, {"1": "suggested", "2": "liked", "3": "disliked", "4": "seen", "5": "liked", "6": "liked"})


def count(text: str) -> int:
    return len(text)  # characters stand in for tokens


def test_relevance_puts_recent_statements_after_mentioned_ones(catalog):
    pkg = PKG(3, {"1": "suggested", "3": "liked", "5": "liked"}, {"1": 0, "3": 7, "5": 2})
    assert relevance_order(pkg, catalog, ["5"]) == ["5", "3", "1"]


def test_relevance_mentioned_then_shared_attributes_then_priority(catalog):
    # movie 1 is mentioned; 2 shares genre and director with it; then liked (5, 6), disliked (3), seen (4)
    order = relevance_order(PKG_ALL, catalog, ["1"])
    assert order[:2] == ["1", "2"]
    assert order[2:] == ["3", "5", "6", "4"]  # priority 3 (3, 5, 6 by id), then 2 (4)
    assert relevance_order(PKG_ALL, catalog, []) == ["2", "3", "5", "6", "4", "1"]


@pytest.mark.parametrize("budget", [60, 150, 300, 10_000])
def test_budget_never_exceeded_and_prefix_is_maximal(catalog, budget):
    sub = retrieve_within(PKG_ALL, catalog, ["1"], budget, count, ("name",))
    assert count(sub.text) <= budget
    order = relevance_order(PKG_ALL, catalog, ["1"])
    kept = len(order) - sub.dropped
    assert set(sub.pkg.relations) == set(order[:kept])
    if sub.dropped:  # one more movie would not fit
        bigger = retrieve_within(PKG_ALL, catalog, ["1"], 10_000, count, ("name",))
        assert len(bigger.text) > budget
    doc = json.loads(sub.text)
    assert doc["@id"] == "user:3" and doc["@type"] == "Person"


def test_retrieval_is_deterministic(catalog):
    a = retrieve(PKG_ALL, catalog, ["4"], lambda t: len(t) < 200)
    b = retrieve(PKG(3, dict(reversed(list(PKG_ALL.relations.items())))), catalog, ["4"], lambda t: len(t) < 200)
    assert a.text == b.text and "movie:4" in a.text


def test_budget_too_small_is_an_error_not_a_silent_overflow(catalog):
    with pytest.raises(BudgetError, match="cannot hold even the empty PKG of user 3"):
        retrieve_within(PKG_ALL, catalog, [], 5, count)
