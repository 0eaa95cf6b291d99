"""The Dataset container: layout, accessors, statistics, invariants."""

from __future__ import annotations

import numpy as np
import pytest

from ffmrec.data import Dataset


def test_from_sequences_layout_and_accessors():
    d = Dataset.from_sequences([[1, 2, 3], [3], [2, 1, 4, 4]])
    assert (d.num_users, d.num_items, d.num_interactions) == (3, 4, 8)
    assert d.offsets.tolist() == [0, 3, 4, 8]
    assert d.sequence(2).tolist() == [2, 1, 4, 4]
    assert [s.tolist() for s in d.sequences()] == [[1, 2, 3], [3], [2, 1, 4, 4]]
    assert d.item_ids[0] == ""


def test_stats():
    stats = Dataset.from_sequences([[1, 2, 3], [3, 1, 2, 2, 1]]).stats()
    assert stats["users"] == 2 and stats["items"] == 3 and stats["interactions"] == 8
    assert stats["density"] == pytest.approx(8 / 6)
    assert (stats["min_sequence_length"], stats["max_sequence_length"], stats["mean_sequence_length"]) == (3, 5, 4.0)
    assert stats["has_item_text"] is False and stats["has_user_attributes"] is False


def test_invariants_are_checked():
    good = Dataset.from_sequences([[1, 2]])
    with pytest.raises(ValueError, match="1..2"):
        Dataset(good.name, np.array([0, 2]), good.offsets, good.user_ids, good.item_ids)  # 0 is padding
    with pytest.raises(ValueError, match="offsets"):
        Dataset(good.name, good.items, np.array([0, 1]), good.user_ids, good.item_ids)
    with pytest.raises(ValueError, match="timestamps"):
        Dataset(good.name, good.items, good.offsets, good.user_ids, good.item_ids, timestamps=np.zeros(3, np.int64))
