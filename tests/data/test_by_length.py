"""``by_length``: rows encoded bucket by bucket, each bucket cut to its longest row, results in the rows' order."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ffmrec.data.batching import LENGTH_EDGES, by_length


def left_padded(lengths: list[int]) -> torch.Tensor:
    width = max(max(lengths), 1)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, width - n:] = torch.arange(1, n + 1) + 100 * row
    return ids


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 70), min_size=1, max_size=40))
def test_rows_come_back_in_order_and_each_call_is_cut_to_its_rows(lengths):
    ids = left_padded(lengths)
    noise = torch.arange(ids.numel(), dtype=torch.float32).view(*ids.shape, 1).expand(-1, -1, 3)  # time axis 0
    calls = []

    def encode(b):  # a function of each row's real items and their noise only: blind to left padding
        calls.append(b["input_ids"].shape[1])
        real = b["input_ids"] > 0
        assert b["noise"]["n"].shape[:2] == b["input_ids"].shape
        assert (b["input_ids"][:, 0] > 0).any() or b["input_ids"].shape[1] == 1  # no column of padding only
        return torch.stack([b["input_ids"].sum(1).float(), (b["noise"]["n"][..., 0] * real).sum(1),
                            b["users"].float()], dim=1)

    batch = {"input_ids": ids, "users": torch.arange(len(lengths)), "noise": {"n": noise}}
    out = by_length(encode, batch, {"n": (0,)})
    calls_direct = len(calls)
    calls.clear()
    torch.testing.assert_close(out, encode(batch))
    width = ids.shape[1]
    bounds = [e for e in LENGTH_EDGES if e < width] + [width]
    assert calls_direct <= len(bounds)


def test_hidden_states_are_padded_back_with_zeros_where_a_bucket_was_cut():
    ids = left_padded([2, 5, 1])  # rows 0 and 2 share the bucket of lengths <= 2, cut to 2 columns; row 1 is full
    out = by_length(lambda b: b["input_ids"].unsqueeze(-1).float() + 1.0, {"input_ids": ids}, {})
    expected = torch.tensor([[0, 0, 0, 2, 3], [2, 3, 4, 5, 6], [0, 0, 0, 1, 2]]).float()
    expected[1] += 100
    expected[2, 4] += 200
    torch.testing.assert_close(out, expected.unsqueeze(-1))
