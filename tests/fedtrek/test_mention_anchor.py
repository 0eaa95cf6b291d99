"""The catalog policy's mention anchor: hand-computed offsets, the same term in policy and reference, and the prompt's
mentions taken from the conversation window the prompt really carries."""

from __future__ import annotations

import math

import pytest
import torch
from redial_tiny import char_count

from ffmrec.data.redial_examples import RedialExamplesConfig, load_redial_users, render_prompt
from ffmrec.errors import ConfigError
from ffmrec.fm.catalog_policy import CatalogPolicy, CatalogPolicyConfig, mention_anchors, mention_logits

R = 1 / math.sqrt(2)


def test_mention_anchors_are_the_catalogue_centered_unit_embeddings():
    anchors = mention_anchors(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))  # unit rows e1, e2; mean (0.5, 0.5)
    assert anchors.tolist() == [pytest.approx([R, -R]), pytest.approx([-R, R])]


def test_mention_logits_hand_computed():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    out = mention_logits(anchors, [[0, 1], [], [2, 2]], weight=2.0, temperature=0.5)
    # row 0: a = normalize((0.5, 0.5)) -> cosines (R, R, -R), times 2 / 0.5; row 1: no mention; row 2: a = (-1, 0)
    assert out[0].tolist() == pytest.approx([4 * R, 4 * R, -4 * R])
    assert out[1].tolist() == [0.0, 0.0, 0.0]
    assert out[2].tolist() == pytest.approx([-4.0, 0.0, 4.0])


def test_anchor_enters_policy_and_reference_alike():
    torch.set_num_threads(1)
    policy = CatalogPolicy(CatalogPolicyConfig(mention_weight=1.0, temperature=0.5), ["a", "b", "c"], seed=0,
                           max_tokens=64)
    d = policy.movie_embeddings.shape[1]
    policy.movie_embeddings = torch.eye(3, d)
    policy.anchors = mention_anchors(policy.movie_embeddings)
    x = torch.eye(1, d)
    # cosines to the prompt (1, 0, 0) / 0.5; anchors: e_i - (1/3)(1,1,1) normalized, so the mention of movie 1
    # gives cos(u_1, u_m) = (1, -1/2, -1/2)[m reordered]: (-1/2, 1, -1/2) over movies 0, 1, 2, times 1 / 0.5
    logits = torch.tensor([2.0 - 1.0, 0.0 + 2.0, 0.0 - 1.0])
    expected = torch.log_softmax(logits, 0).tolist()
    assert policy.log_probs_of(x, mentions=[[1]])[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert policy.log_probs_of(x, reference=True, mentions=[[1]])[0].tolist() == pytest.approx(expected, rel=1e-5)
    plain = torch.log_softmax(torch.tensor([2.0, 0.0, 0.0]), 0).tolist()
    assert policy.log_probs_of(x, mentions=[[]])[0].tolist() == pytest.approx(plain, rel=1e-5)
    assert policy.log_probs_of(x)[0].tolist() == pytest.approx(plain, rel=1e-5)


def test_negative_mention_weight_is_a_config_error():
    with pytest.raises(ConfigError, match="mention_weight=-0.5"):
        CatalogPolicyConfig(mention_weight=-0.5)


def test_prompt_mentions_only_the_movies_of_its_conversation_window(tiny_redial):
    catalog, users = load_redial_users(tiny_redial, RedialExamplesConfig())
    (u,) = [x for x in users if x.user_id == 100]
    example = u.train[1]  # turn 3: "Hi I like Alpha (2001)", "Try Beta (2002)", "ok"
    full = render_prompt(example, u.history, catalog, RedialExamplesConfig(), char_count)
    assert full.mentioned == ("1", "2")
    tight = render_prompt(example, u.history, catalog, RedialExamplesConfig(max_tokens=40, pkg_tokens=10), char_count)
    assert tight.text.endswith("\nUser: ok") and "Alpha (2001)\n" not in tight.text  # only the last message fits
    assert tight.mentioned == ()
    reference = render_prompt(example, u.history, catalog, RedialExamplesConfig(protocol="reference"), char_count)
    assert reference.mentioned == ("1", "2")


def test_task_keeps_each_prompts_mentions_and_needs_keys_for_the_anchor(tiny_redial):
    from ffmrec.tasks.kto import KTOTask, KTOTaskConfig

    torch.set_num_threads(1)
    config = KTOTaskConfig(max_tokens=128, pkg_tokens=48)
    catalog, users = load_redial_users(tiny_redial, config)
    policy = CatalogPolicy(CatalogPolicyConfig(mention_weight=1.0), [catalog.text(m) for m in catalog.ids], seed=0,
                           max_tokens=128)
    task = KTOTask(users, catalog, policy, config, 0)
    c = next(i for i, x in enumerate(users) if x.user_id == 100)
    example = users[c].train[1]
    prompt = task.prompt(c, "train", 1, example)
    assert task.mentions((c, "train", 1)) == [catalog.index["1"], catalog.index["2"]]
    with torch.no_grad():
        loss, _ = task.objective_of([prompt], [example], [(c, "train", 1)])
        assert torch.isfinite(loss)
        with pytest.raises(ValueError, match="mention_weight needs the data points' keys"):
            task.objective_of([prompt], [example])
