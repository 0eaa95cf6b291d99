"""Filtering, k-core, chronological order and dense ids on tiny hand-made tables."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffmrec.data.preprocess import DataOptions, RawInteractions, build_dataset, core_mask, natural_codes
from ffmrec.errors import ConfigError


def raw(rows, name="toy", ordered=False, **kwargs) -> RawInteractions:
    """rows: (user, item, timestamp[, rating]) in file order."""
    users, items, times = (np.array([r[i] for r in rows]) for i in range(3))
    ratings = np.array([r[3] for r in rows], dtype=np.float32) if rows and len(rows[0]) > 3 else None
    return RawInteractions(name, users, items, times.astype(np.int64), ratings, ordered, **kwargs)


def original_sequences(dataset):
    return {dataset.user_ids[u]: dataset.item_ids[s].tolist() for u, s in enumerate(dataset.sequences())}


def test_k_core_matches_hand_computation():
    # u1: a b c     u2: a b c     u3: a b     u4: a d
    # 2-core: item d has 1 -> drop (u4: a). u4 has 1 -> drop. Then a:3 b:3 c:2, u1:3 u2:3 u3:2: stable.
    rows = [("1", "a", 1), ("1", "b", 2), ("1", "c", 3), ("2", "a", 1), ("2", "b", 2), ("2", "c", 3),
            ("3", "a", 1), ("3", "b", 2), ("4", "a", 1), ("4", "d", 2)]
    d = build_dataset(raw(rows), DataOptions(k_core=2, min_sequence_length=1))
    assert original_sequences(d) == {"1": ["a", "b", "c"], "2": ["a", "b", "c"], "3": ["a", "b"]}
    # 3-core: c has 2 -> drop; then u3 has 2 -> drop; then a:2 b:2 -> drop all -> nothing left.
    with pytest.raises(ConfigError, match="no interactions are left.*k_core=3.*loosen"):
        build_dataset(raw(rows), DataOptions(k_core=3, min_sequence_length=1))


def test_k_core_is_iterative():
    # Removing item "z" (1 interaction) leaves user 2 with 1 interaction, which then removes item "y".
    rows = [("1", "x", 1), ("1", "y", 2), ("2", "y", 1), ("2", "z", 2), ("3", "x", 1), ("3", "y", 2)]
    d = build_dataset(raw(rows), DataOptions(k_core=2, min_sequence_length=1))
    assert original_sequences(d) == {"1": ["x", "y"], "3": ["x", "y"]}


def test_min_rating_keeps_ratings_at_or_above():
    rows = [(1, 10, 1, 5.0), (1, 11, 2, 3.0), (1, 12, 3, 4.0), (1, 13, 4, 4.5), (2, 10, 1, 1.0)]
    d = build_dataset(raw(rows), DataOptions(min_rating=4, min_sequence_length=1))
    assert original_sequences(d) == {"1": ["10", "12", "13"]}
    assert d.ratings.tolist() == [5.0, 4.0, 4.5]
    assert d.ratings.dtype == np.float32


def test_min_rating_without_ratings_is_a_config_error():
    with pytest.raises(ConfigError, match="min_rating=4.*has no ratings"):
        build_dataset(raw([(1, 1, 1)]), DataOptions(min_rating=4, min_sequence_length=1))


def test_min_sequence_length_drops_short_users():
    rows = [(1, 1, 1), (1, 2, 2), (1, 3, 3), (2, 1, 1), (2, 2, 2)]
    d = build_dataset(raw(rows), DataOptions())
    assert d.user_ids.tolist() == ["1"] and d.num_items == 3


def test_chronological_order_is_stable_for_ties():
    rows = [("u", "a", 5), ("u", "b", 3), ("u", "c", 3), ("u", "d", 1), ("v", "x", 2), ("v", "y", 2), ("v", "z", 1)]
    d = build_dataset(raw(rows), DataOptions(min_sequence_length=1))
    assert original_sequences(d) == {"u": ["d", "b", "c", "a"], "v": ["z", "x", "y"]}
    assert d.timestamps.tolist() == [1, 3, 3, 5, 1, 2, 2]


def test_dense_ids_follow_natural_order():
    rows = [("10", "b", 1), ("2", "a", 1), ("1", "10", 1), ("2", "b", 2), ("10", "a", 2)]
    d = build_dataset(raw(rows), DataOptions(min_sequence_length=1))
    assert d.user_ids.tolist() == ["1", "2", "10"]  # all integers: numeric order
    assert d.item_ids.tolist() == ["", "10", "a", "b"]  # not all integers: lexicographic, 0 = padding
    assert [s.tolist() for s in d.sequences()] == [[1], [2, 3], [3, 2]]
    assert d.offsets.tolist() == [0, 1, 3, 5]


def test_natural_codes_int_and_string():
    codes, names = natural_codes(np.array([30, 4, 30, 100]))
    assert codes.tolist() == [1, 0, 1, 2] and names.tolist() == ["4", "30", "100"]
    codes, names = natural_codes(np.array(["07", "7", "-1"], dtype=object))
    assert names.tolist() == ["-1", "07", "7"] and codes.tolist() == [1, 2, 0]


def test_ordered_sources_have_no_timestamps():
    d = build_dataset(raw([(1, 2, 0), (1, 1, 1), (1, 3, 2)], ordered=True), DataOptions())
    assert d.timestamps is None and d.sequence(0).tolist() == [2, 1, 3]


def test_side_information_follows_dense_ids():
    import pandas as pd

    attributes = pd.DataFrame({"gender": ["F", "M"]}, index=pd.Index(["2", "1"], dtype=object))
    d = build_dataset(
        raw([(2, 20, 1), (1, 10, 1), (1, 30, 2)], item_text={"10": "ten", "20": "twenty"}, user_attributes=attributes),
        DataOptions(min_sequence_length=1),
    )
    assert d.item_text.tolist() == ["", "ten", "twenty", ""]
    assert d.user_attributes["gender"].tolist() == ["M", "F"]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"k_core": 0}, "k_core=0"), ({"min_sequence_length": 0}, "min_sequence_length=0"), ({"min_rating": float("nan")}, "min_rating"),
     ({"k_core": 2.5}, "k_core=2.5"), ({"cache": "yes"}, "cache")],
)
def test_options_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DataOptions(**kwargs)


def test_core_mask_on_codes():
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 2])
    assert core_mask(users, items, 2, 2).tolist() == [True, True, True, True, False]


def reference_core(rows, min_user, min_item):
    """Naive k-core with Counters, for comparison."""
    rows = list(rows)
    while True:
        users = Counter(r[0] for r in rows)
        items = Counter(r[1] for r in rows)
        kept = [r for r in rows if users[r[0]] >= min_user and items[r[1]] >= min_item]
        if len(kept) == len(rows):
            return kept
        rows = kept


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(0, 4)), min_size=0, max_size=60),
    k=st.integers(1, 4),
    min_len=st.integers(1, 5),
)
def test_k_core_property(rows, k, min_len):
    expected = reference_core(rows, max(k, min_len), k)
    if not expected:
        with pytest.raises(ConfigError, match="no interactions are left"):
            build_dataset(raw(rows), DataOptions(k_core=k, min_sequence_length=min_len))
        return
    d = build_dataset(raw(rows), DataOptions(k_core=k, min_sequence_length=min_len))
    lengths = d.sequence_lengths()
    assert lengths.min() >= max(k, min_len)
    assert np.bincount(d.items)[1:].min() >= k  # every item kept has >= k interactions
    for u in range(d.num_users):
        ts = d.timestamps[d.offsets[u]:d.offsets[u + 1]]
        assert np.all(np.diff(ts) >= 0)
    assert d.num_interactions == len(expected)
    assert sorted(zip(d.user_ids[np.repeat(np.arange(d.num_users), lengths)].tolist(), d.item_ids[d.items].tolist())) == sorted(
        (str(u), str(i)) for u, i, _ in expected
    )
