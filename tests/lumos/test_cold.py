"""The cold-item protocol: exactly the seeded share of items is held out of every training sequence, the test scores
the cold-target users only."""

import numpy as np
import pytest

from ffmrec.errors import ConfigError
from ffmrec.eval.cold import ColdItems, cold_item_ids, make_split
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.eval.ranking import EvalConfig

NUM_ITEMS = 50


def sequences(num_users=80, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, NUM_ITEMS + 1, size=rng.integers(3, 15)) for _ in range(num_users)]


def test_cold_ids_are_a_seeded_ten_percent_of_the_catalogue():
    cold = cold_item_ids(NUM_ITEMS, 0.1, seed=7)
    assert len(cold) == 5 and len(set(cold.tolist())) == 5
    assert cold.min() >= 1 and cold.max() <= NUM_ITEMS
    assert np.array_equal(cold, cold_item_ids(NUM_ITEMS, 0.1, seed=7))
    assert not np.array_equal(cold, cold_item_ids(NUM_ITEMS, 0.1, seed=8))


def test_no_cold_item_is_in_any_training_sequence_input_or_validation_target():
    seqs = sequences()
    split = ColdItems.from_sequences(seqs, NUM_ITEMS, 0.1, seed=7)
    assert np.array_equal(split.cold, cold_item_ids(NUM_ITEMS, 0.1, seed=7))
    for u in range(split.num_users):
        assert not split.is_cold(split.train_sequence(u)).any()
        for stage in ("valid", "test"):
            history, target = split.history_and_target(stage, u)
            assert not split.is_cold(history).any()
        assert not split.is_cold([split.history_and_target("valid", u)[1]]).any()


def test_sequences_are_the_originals_without_cold_items_but_the_last():
    seqs = sequences()
    split = ColdItems.from_sequences(seqs, NUM_ITEMS, 0.1, seed=7)
    cold = set(split.cold.tolist())
    for row, u in enumerate(split.kept_users):
        original = seqs[u]
        expected = [i for i in original[:-1] if i not in cold] + [original[-1]]
        assert split.sequences[row].tolist() == expected
    dropped = set(range(len(seqs))) - set(split.kept_users.tolist())
    for u in dropped:  # only users left with fewer than 3 items are dropped
        assert len([i for i in seqs[u][:-1] if i not in cold]) + 1 < 3


def test_the_test_scores_exactly_the_users_whose_last_item_is_cold():
    seqs = sequences()
    split = ColdItems.from_sequences(seqs, NUM_ITEMS, 0.1, seed=7)
    scored = split.scored("test")
    expected = np.array([int(s[-1]) in set(split.cold.tolist()) for s in split.sequences])
    assert np.array_equal(scored, expected) and scored.any() and not scored.all()
    assert split.scored("valid").all()
    _, targets, users = split.stage("test")  # the centralized evaluation: the scored users only
    assert np.array_equal(users, np.flatnonzero(expected))
    assert split.is_cold(targets).all()
    _, _, all_users = split.stage("test", np.arange(split.num_users))  # explicit users: all of them
    assert len(all_users) == split.num_users


def test_make_split_follows_the_eval_protocol():
    seqs = sequences()
    assert type(make_split(seqs, NUM_ITEMS, EvalConfig(), 0)) is LeaveOneOut
    assert isinstance(make_split(seqs, NUM_ITEMS, EvalConfig(protocol="cold-items"), 0), ColdItems)
    with pytest.raises(ConfigError, match="eval.protocol='warm'"):
        EvalConfig(protocol="warm")
