"""The embedding backend's three views: deterministic per (seed, round, client), never history items, the paraphrase
keeps order and length, the counterfactual is far from the profile, the future near the recent items."""

import math

import numpy as np
import torch

from ffmrec.fm.text import nearest_neighbours
from ffmrec.fm.views import (
    EmbeddingViewConfig,
    EmbeddingViews,
    counterfactual,
    future_continuation,
    normalize_title,
    paraphrase,
)
from ffmrec.tasks.base import client_generator

HISTORY = torch.tensor([3, 7, 12, 5, 21, 9])


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_nearest_neighbours_are_the_exact_top_k_and_never_the_item_itself(know):
    sims = know.table[1:] @ know.table[1:].T
    sims.fill_diagonal_(float("-inf"))
    top = sims.topk(know.neighbours.shape[1], dim=1)
    assert torch.equal(know.neighbours[1:], top.indices + 1)
    torch.testing.assert_close(know.similarities[1:], top.values)
    assert not (know.neighbours[1:] == torch.arange(1, know.num_items + 1).unsqueeze(1)).any()
    assert (know.neighbours[0] == 0).all()
    ids, _ = nearest_neighbours(know.table, 3, chunk=4)  # chunking changes nothing
    assert torch.equal(ids, know.neighbours[:, :3])


def test_future_continuation_comes_from_recent_neighbourhoods_and_avoids_the_history(know):
    for seed in range(30):
        out = future_continuation(HISTORY, know, 3, recent=2, decay=0.7, temperature=0.1, g=gen(seed))
        assert len(out) == 3 and len(set(out.tolist())) == 3
        assert not torch.isin(out, HISTORY).any()
        allowed = set(know.neighbours[HISTORY[-2:]].flatten().tolist())
        assert set(out.tolist()) <= allowed


def test_future_continuation_at_low_temperature_takes_the_best_scored_items(know):
    last = HISTORY[-1:]
    out = future_continuation(HISTORY, know, 2, recent=1, decay=1.0, temperature=1e-6, g=gen(0))
    ranked = [i for i in know.neighbours[last[0]].tolist() if i not in HISTORY.tolist()]
    assert out.tolist() == ranked[:2]


def test_paraphrase_keeps_order_and_length_and_swaps_for_near_neighbours(know):
    for seed in range(30):
        out = paraphrase(HISTORY, know, 0.5, top=3, g=gen(seed))
        assert out.shape == HISTORY.shape
        changed = (out != HISTORY).nonzero().flatten().tolist()
        assert 1 <= len(changed) <= math.floor(0.5 * len(HISTORY))
        for pos in range(len(HISTORY)):
            if pos in changed:
                assert int(out[pos]) in know.neighbours[HISTORY[pos], :3].tolist()
                assert int(out[pos]) not in HISTORY.tolist()
            else:
                assert out[pos] == HISTORY[pos]  # order kept: untouched positions are the original items


def test_counterfactual_items_are_the_far_ones_and_not_in_the_history(know):
    profile = know.table[HISTORY].mean(0)
    profile = profile / profile.norm()
    sims = know.table[1:] @ profile
    far = 0.3
    for seed in range(10):
        out = counterfactual(HISTORY, know, 4, far, gen(seed))
        assert len(set(out.tolist())) == 4 and not torch.isin(out, HISTORY).any()
        pool = sims.clone()
        pool[HISTORY - 1] = float("inf")
        farthest = set(((-pool).topk(math.ceil(far * know.num_items)).indices + 1).tolist())
        assert set(out.tolist()) <= farthest
        assert float(sims[out - 1].mean()) < float(sims.mean())


def test_views_are_deterministic_per_seed_round_and_client_and_differ_otherwise(know):
    views = EmbeddingViews(know, EmbeddingViewConfig())
    history = np.array([3, 7, 12, 5, 21, 9])

    def draw(seed, rnd, client):
        return views.generate(history, 2, client_generator(seed, rnd, client, "views"))

    a, b = draw(1, 4, 7), draw(1, 4, 7)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    others = [draw(1, 5, 7), draw(1, 4, 8), draw(2, 4, 7)]
    for other in others:
        assert any(not torch.equal(x[k], y[k]) for x, y in zip(a, other) for k in x)
    assert views.cost.calls == 5 and views.cost.ms > 0


def test_a_disabled_view_kind_is_not_generated(know):
    views = EmbeddingViews(know, EmbeddingViewConfig(), kinds=("future", "counterfactual"))
    (one,) = views.generate(np.array([1, 2, 3]), 1, gen(0))
    assert set(one) == {"future", "counterfactual"}


def test_normalize_title_ignores_case_accents_and_punctuation():
    assert normalize_title("  L'Oréal   Paris: True-Match!! ") == "l oreal paris true match"


def test_excluded_items_never_appear_in_any_view(know):
    from ffmrec.fm.views import ItemKnowledge

    excluded = torch.tensor([2, 4, 6, 8, 10, 11, 13, 15, 17, 19])
    held = ItemKnowledge(know.table, know.neighbours, know.similarities, excluded)
    views = EmbeddingViews(held, EmbeddingViewConfig(paraphrase_ratio=1.0, counterfactual_far=0.5))
    for seed in range(20):
        for v in views.generate(np.array([1, 3, 5, 7, 9]), 2, gen(seed)):
            for kind, items in v.items():
                assert not torch.isin(items, excluded).any(), kind
