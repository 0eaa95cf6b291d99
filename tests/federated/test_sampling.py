"""Client sampling: exact counts, reproducibility independent of call history, and config errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffmrec.errors import ConfigError
from ffmrec.federated.sampling import resolve_clients_per_round, sample_clients

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(num_clients=st.integers(1, 500), data=st.data(), server_round=st.integers(0, 10_000),
       seed=st.integers(0, 2**63))
def test_sample_exact_count_distinct_sorted_in_range(num_clients, data, server_round, seed):
    k = data.draw(st.integers(1, num_clients))
    chosen = sample_clients(num_clients, k, server_round, seed)
    assert len(chosen) == k
    assert chosen == sorted(set(chosen))
    assert all(isinstance(c, int) and 0 <= c < num_clients for c in chosen)


def test_sample_reproducible_and_independent_of_history():
    fresh = [sample_clients(100, 10, r, seed=7) for r in range(1, 11)]
    # a "resumed" run asks for round 6 first, after unrelated draws with other seeds and rounds
    sample_clients(100, 10, 3, seed=8)
    sample_clients(50, 5, 6, seed=7)
    assert sample_clients(100, 10, 6, seed=7) == fresh[5]
    assert [sample_clients(100, 10, r, seed=7) for r in range(1, 11)] == fresh


def test_sample_varies_with_round_and_seed():
    rounds = {tuple(sample_clients(1000, 10, r, seed=0)) for r in range(20)}
    seeds = {tuple(sample_clients(1000, 10, 1, seed=s)) for s in range(20)}
    assert len(rounds) == 20 and len(seeds) == 20


def test_sample_all_clients_when_count_equals_population():
    assert sample_clients(5, 5, 3, seed=1) == [0, 1, 2, 3, 4]


def test_sample_is_roughly_uniform():
    counts = [0] * 10
    for r in range(2000):
        for c in sample_clients(10, 3, r, seed=123):
            counts[c] += 1
    assert all(500 < n < 700 for n in counts)  # expectation 600 each


@pytest.mark.parametrize("args, name", [
    ((5, 6, 1, 0), "clients_per_round"),
    ((5, 0, 1, 0), "clients_per_round"),
    ((5, 2.0, 1, 0), "clients_per_round"),
    ((0, 1, 1, 0), "num_clients"),
    ((5, 2, -1, 0), "server_round"),
    ((5, 2, 1, -3), "seed"),
    ((5, 5, 1, -3), "seed"),  # validated even when everyone is taken
    ((5, True, 1, 0), "clients_per_round"),
])
def test_sample_errors(args, name):
    with pytest.raises(ConfigError, match=name):
        sample_clients(*args)


@pytest.mark.parametrize("num_clients, fraction, expected", [
    (10, 0.25, 3),  # 2.5 rounds half up
    (10, 0.24, 2),
    (10, 0.35, 4),  # 3.5 rounds half up
    (50, 0.29, 15),  # 14.5, although the float product is 14.499999999999998
    (10, 0.01, 1),  # never zero
    (100, 0.1, 10),
    (7, 1.0, 7),
    (3, 0.5, 2),
])
def test_resolve_fraction(num_clients, fraction, expected):
    assert resolve_clients_per_round(num_clients, fraction=fraction) == expected


def test_resolve_count():
    assert resolve_clients_per_round(10, clients_per_round=4) == 4
    assert resolve_clients_per_round(10, 10) == 10


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one"),
    ({"clients_per_round": 2, "fraction": 0.5}, "exactly one"),
    ({"fraction": 0.0}, "fraction"),
    ({"fraction": 1.5}, "fraction"),
    ({"fraction": float("nan")}, "fraction"),
    ({"fraction": "0.1"}, "fraction"),
    ({"clients_per_round": 11}, "clients_per_round"),
    ({"clients_per_round": 0}, "clients_per_round"),
])
def test_resolve_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        resolve_clients_per_round(10, **kwargs)
