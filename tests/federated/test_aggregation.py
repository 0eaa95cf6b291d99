"""Aggregation maths on tiny hand-computed fixtures, plus hypothesis properties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ffmrec.errors import ConfigError
from ffmrec.federated.aggregation import (
    client_update_norms,
    coordinate_median,
    flatten_updates,
    krum,
    krum_scores,
    norm_bounded,
    pairwise_sq_distances,
    rowwise_weighted_mean,
    trim_count,
    trimmed_mean,
    unflatten_updates,
    update_shapes,
    weighted_mean,
)

DTYPES = [torch.float32, torch.float64]
FAST = settings(max_examples=60, deadline=None)


def t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Hand-computed expectations
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_mean_hand_computed(dtype):
    updates = t([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype)  # (C=3, 2)
    weights = torch.tensor([1, 1, 2])  # integer counts are fine
    out = weighted_mean(updates, weights)
    # (1*1 + 1*3 + 2*5) / 4 = 3.5 ; (2 + 4 + 12) / 4 = 4.5
    assert out.dtype == dtype and out.shape == (2,)
    assert torch.equal(out, t([3.5, 4.5], dtype))


def test_weighted_mean_zero_weight_client_is_ignored():
    updates = t([[1.0], [100.0]])
    assert torch.equal(weighted_mean(updates, t([3.0, 0.0])), t([1.0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rowwise_weighted_mean_hand_computed(dtype):
    # 3 clients, table of R=4 rows, d=2.
    updates = t([
        [[1, 1], [2, 2], [9, 9], [7, 7]],
        [[3, 3], [4, 4], [9, 9], [7, 7]],
        [[5, 5], [6, 6], [float("nan"), 0], [7, 7]],  # nan in an untouched row must not leak
    ], dtype)
    weights = t([1.0, 1.0, 2.0])
    touched = torch.tensor([
        [True, True, False, False],
        [True, False, False, False],
        [True, False, False, False],
    ])
    out = rowwise_weighted_mean(updates, weights, touched)
    expected = t([
        [(1 + 3 + 2 * 5) / 4] * 2,  # all clients: 3.5
        [2, 2],  # touched by client 0 only: its row, not scaled down by the others' weight
        [0, 0],  # touched by nobody: zero update
        [0, 0],  # ditto, although every client sent 7
    ], dtype)
    assert out.dtype == dtype
    assert torch.equal(out, expected)


def test_rowwise_weighted_mean_row_touched_only_by_zero_weight_client_is_zero():
    updates = t([[[1.0]], [[5.0]]])
    out = rowwise_weighted_mean(updates, t([1.0, 0.0]), torch.tensor([[False], [True]]))
    assert torch.equal(out, t([[0.0]]))


def test_rowwise_equals_weighted_mean_when_all_rows_touched():
    g = torch.Generator().manual_seed(0)
    updates = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    weights = t([1.0, 2.0, 3.0, 4.0])
    touched = torch.ones(4, 5, dtype=torch.bool)
    torch.testing.assert_close(rowwise_weighted_mean(updates, weights, touched), weighted_mean(updates, weights))


@pytest.mark.parametrize("dtype", DTYPES)
def test_coordinate_median_odd_and_even(dtype):
    odd = t([[1.0, -5.0], [2.0, 0.0], [100.0, 3.0]], dtype)  # 100 is an outlier
    assert torch.equal(coordinate_median(odd), t([2.0, 0.0], dtype))
    even = t([[1.0], [2.0], [4.0], [100.0]], dtype)
    assert torch.equal(coordinate_median(even), t([3.0], dtype))  # mean of the two middle values, not torch's lower 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_trimmed_mean_hand_computed(dtype):
    updates = t([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [-1000.0, 1000.0]], dtype)  # C=5
    # trim_ratio 0.2 -> floor(1.0) = 1 each end: column 0 keeps {1,2,3}, column 1 keeps {20,30,40}
    assert torch.equal(trimmed_mean(updates, 0.2), t([2.0, 30.0], dtype))
    # trim_ratio 0.4 -> 2 each end: the median for odd C
    assert torch.equal(trimmed_mean(updates, 0.4), coordinate_median(updates))
    # trim_ratio 0 -> plain mean
    torch.testing.assert_close(trimmed_mean(updates, 0.0), updates.mean(dim=0))


def test_trim_count_uses_decimal_value_of_ratio():
    assert 0.29 * 100 < 29  # the float product would floor to 28
    assert trim_count(100, 0.29) == 29
    assert trim_count(10, 0.1) == 1
    assert trim_count(9, 0.1) == 0


def test_trimmed_mean_warns_when_it_trims_nothing():
    updates = t([[1.0], [2.0], [3.0]])
    with pytest.warns(UserWarning, match="plain mean"):
        out = trimmed_mean(updates, 0.2)  # floor(0.6) = 0
    assert torch.equal(out, t([2.0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_norm_bounded_hand_computed(dtype):
    updates = {
        "a": t([[3.0], [0.3], [0.0]], dtype),  # (C=3, 1)
        "b": t([[4.0, 0.0], [0.4, 0.0], [0.0, 0.0]], dtype),  # (C=3, 2)
    }
    torch.testing.assert_close(client_update_norms(updates), t([5.0, 0.5, 0.0]))
    out = norm_bounded(updates, max_norm=1.0)
    # client 0 has global norm 5 -> scaled by 1/5 in every tensor; clients 1 and 2 are inside -> unchanged
    torch.testing.assert_close(out["a"], t([[0.6], [0.3], [0.0]], dtype))
    torch.testing.assert_close(out["b"], t([[0.8, 0.0], [0.4, 0.0], [0.0, 0.0]], dtype))
    assert out["a"].dtype == dtype and out["b"].dtype == dtype
    assert torch.equal(out["a"][1:], updates["a"][1:])


def test_norm_bounded_accepts_single_stack():
    out = norm_bounded(t([[3.0, 4.0], [0.0, 1.0]]), max_norm=2.5)
    torch.testing.assert_close(out, t([[1.5, 2.0], [0.0, 1.0]]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_krum_rejects_obvious_outlier(dtype):
    updates = t([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [0.05, 0.05], [50.0, -50.0]], dtype)  # C=6, f=1
    # C - f - 2 = 3 neighbours each. Client 4 sits in the middle: its 3 nearest are at squared distance 0.005 each.
    scores = krum_scores(updates, num_malicious=1)
    assert scores[4] == pytest.approx(0.015)
    assert krum(updates, num_malicious=1).tolist() == [4]
    picked = krum(updates, num_malicious=1, multi=5)
    assert picked[0] == 4 and 5 not in picked.tolist()
    assert sorted(picked.tolist()) == [0, 1, 2, 3, 4]


def test_krum_tie_break_by_lower_index():
    updates = t([[1.0], [1.0], [1.0], [1.0], [9.0]])  # clients 0-3 tie with score 0
    assert krum(updates, num_malicious=1, multi=3).tolist() == [0, 1, 2]


def test_pairwise_sq_distances_exact():
    x = t([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    d = pairwise_sq_distances(x)
    assert torch.equal(d, t([[0, 25, 0], [25, 0, 25], [0, 25, 0]]))
    assert torch.equal(d, d.T)


def test_flatten_unflatten_roundtrip():
    updates = {"w": torch.arange(12.0).reshape(2, 3, 2), "b": torch.tensor([[1.0], [2.0]]), "s": torch.zeros(2)}
    flat = flatten_updates(updates)
    assert flat.shape == (2, 6 + 1 + 1)
    assert flat[1].tolist() == [6, 7, 8, 9, 10, 11, 2, 0]
    back = unflatten_updates(flat, update_shapes(updates))
    assert list(back) == ["w", "b", "s"]
    for name in updates:
        assert torch.equal(back[name], updates[name])
    single = unflatten_updates(flat[0], update_shapes(updates))  # one aggregated vector
    assert torch.equal(single["w"], updates["w"][0]) and single["s"].shape == ()


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [-0.1, 0.5, 0.7, float("nan"), float("inf")])
def test_trimmed_mean_rejects_bad_ratio(ratio):
    with pytest.raises(ConfigError, match="trim_ratio"):
        trimmed_mean(t([[1.0], [2.0], [3.0]]), ratio)


def test_trimmed_mean_rejects_non_numeric_ratio():
    with pytest.raises(ConfigError, match="trim_ratio"):
        trimmed_mean(t([[1.0], [2.0], [3.0]]), "0.1")


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan"), True])
def test_norm_bounded_rejects_bad_max_norm(max_norm):
    with pytest.raises(ConfigError, match="max_norm"):
        norm_bounded(t([[1.0]]), max_norm)


def test_krum_rejects_too_few_clients():
    updates = torch.zeros(4, 2)  # needs > 2f + 2 = 4
    with pytest.raises(ConfigError, match=r"num_malicious.*=1.*needs > 4"):
        krum(updates, num_malicious=1)
    krum(torch.zeros(5, 2), num_malicious=1)  # boundary is fine


@pytest.mark.parametrize("kwargs", [{"num_malicious": -1}, {"num_malicious": 1.0}, {"num_malicious": 0, "multi": 0},
                                    {"num_malicious": 0, "multi": 6}, {"num_malicious": 0, "multi": True}])
def test_krum_rejects_bad_parameters(kwargs):
    with pytest.raises(ConfigError, match="num_malicious|multi"):
        krum(torch.zeros(5, 2), **kwargs)


def test_bad_tensors_raise_value_error():
    with pytest.raises(ValueError, match="weights"):
        weighted_mean(t([[1.0], [2.0]]), t([1.0]))
    with pytest.raises(ValueError, match="weights"):
        weighted_mean(t([[1.0], [2.0]]), t([1.0, -1.0]))
    with pytest.raises(ValueError, match="positive sum"):
        weighted_mean(t([[1.0], [2.0]]), t([0.0, 0.0]))
    with pytest.raises(ValueError, match="C >= 1"):
        coordinate_median(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="floating point"):
        coordinate_median(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="touched"):
        rowwise_weighted_mean(torch.zeros(2, 3, 1), t([1.0, 1.0]), torch.ones(2, 3))  # not bool
    with pytest.raises(ValueError, match="same number of clients"):
        flatten_updates({"a": torch.zeros(2, 1), "b": torch.zeros(3, 1)})
    with pytest.raises(ValueError, match="shapes"):
        unflatten_updates(torch.zeros(2, 5), {"a": (2, 2)})


# ---------------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def stacks(draw, min_clients=1, max_clients=7):
    c = draw(st.integers(min_clients, max_clients))
    d = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    values = draw(st.lists(st.lists(finite, min_size=d, max_size=d), min_size=c, max_size=c))
    return torch.tensor(values, dtype=dtype)


@FAST
@given(row=st.lists(finite, min_size=1, max_size=5), c=st.integers(1, 6),
       weights=st.lists(st.integers(1, 10_000), min_size=6, max_size=6), dtype=st.sampled_from(DTYPES))
def test_weighted_mean_of_identical_updates_is_that_update(row, c, weights, dtype):
    update = torch.tensor(row, dtype=dtype)
    out = weighted_mean(update.expand(c, -1).clone(), torch.tensor(weights[:c]))
    if dtype == torch.float32:
        assert torch.equal(out, update)  # float64 accumulation makes this exact for float32
    else:
        torch.testing.assert_close(out, update, rtol=1e-12, atol=1e-12)


@FAST
@given(updates=stacks(), trim=st.floats(0, 0.49))
def test_median_and_trimmed_mean_within_min_max(updates, trim):
    lo, hi = updates.min(dim=0).values, updates.max(dim=0).values
    for out in (coordinate_median(updates), trimmed_mean(updates, trim) if trim_count(len(updates), trim) else None):
        if out is None:
            continue
        assert out.dtype == updates.dtype
        assert bool((out >= lo).all()) and bool((out <= hi).all())


@FAST
@given(updates=stacks(), data=st.data())
def test_permutation_invariance(updates, data):
    c = updates.shape[0]
    perm = torch.tensor(data.draw(st.permutations(range(c))))
    weights = torch.tensor(data.draw(st.lists(st.integers(1, 100), min_size=c, max_size=c)), dtype=torch.float64)
    tol = {"rtol": 1e-5, "atol": 1e-4} if updates.dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-9}
    torch.testing.assert_close(weighted_mean(updates[perm], weights[perm]), weighted_mean(updates, weights), **tol)
    assert torch.equal(coordinate_median(updates[perm]), coordinate_median(updates))  # sorting: exact
    trim = data.draw(st.sampled_from([0.0, 0.2, 0.34, 0.49]))
    if trim == 0.0 or trim_count(c, trim) > 0:
        torch.testing.assert_close(trimmed_mean(updates[perm], trim), trimmed_mean(updates, trim), **tol)


@FAST
@given(updates=stacks(), extra=stacks(), max_norm=st.floats(1e-3, 1e3))
def test_norm_bounded_bounds_norms_and_keeps_inside_updates(updates, extra, max_norm):
    c = updates.shape[0]
    extra = extra[:1].expand(c, -1).clone().to(updates.dtype)  # a second parameter with the same C
    stacked = {"a": updates, "b": extra}
    before = client_update_norms(stacked)
    out = norm_bounded(stacked, max_norm)
    after = client_update_norms(out)
    rel = 1e-6 if updates.dtype == torch.float32 else 1e-12
    assert bool((after <= max_norm * (1 + rel)).all())
    inside = before <= max_norm
    for name in stacked:
        assert torch.equal(out[name][inside], stacked[name][inside])  # bit-for-bit unchanged
    # clipping keeps the direction: every tensor of a clipped client is scaled by the same factor
    clipped = ~inside
    if bool(clipped.any()):
        torch.testing.assert_close(after[clipped], torch.full_like(after[clipped], max_norm), rtol=rel * 10, atol=0)


@FAST
@given(f=st.integers(0, 2), extra=st.integers(1, 3), d=st.integers(1, 4), seed=st.integers(0, 2**16),
       far=st.floats(1e3, 1e6), dtype=st.sampled_from(DTYPES))
def test_krum_never_selects_far_outlier(f, extra, d, seed, far, dtype):
    c = 2 * f + 2 + extra  # C > 2f + 2
    g = torch.Generator().manual_seed(seed)
    updates = torch.rand(c, d, generator=g, dtype=torch.float64).to(dtype)  # honest clients in the unit cube
    outlier = int(torch.randint(c, (1,), generator=g))
    updates[outlier] = far
    assert outlier not in krum(updates, num_malicious=f).tolist()
    # Multi-Krum with up to C - f - 1 picks (at least one honest client has not been picked) avoids it as well
    assert outlier not in krum(updates, num_malicious=f, multi=c - f - 1).tolist()


@FAST
@given(updates=stacks(min_clients=3))
def test_krum_is_deterministic_and_symmetric(updates):
    d = pairwise_sq_distances(updates)
    assert torch.equal(d, d.T) and bool((d >= 0).all()) and bool((d.diagonal() == 0).all())
    assert torch.equal(krum(updates, 0, multi=updates.shape[0]), krum(updates.clone(), 0, multi=updates.shape[0]))


@FAST
@given(shapes=st.lists(st.lists(st.integers(0, 3), max_size=3), min_size=1, max_size=4), c=st.integers(1, 3))
def test_flatten_unflatten_roundtrip_property(shapes, c):
    g = torch.Generator().manual_seed(0)
    updates = {f"p{i}": torch.randn(c, *s, generator=g) for i, s in enumerate(shapes)}
    back = unflatten_updates(flatten_updates(updates), update_shapes(updates))
    assert list(back) == list(updates)
    for name in updates:
        assert torch.equal(back[name], updates[name])
