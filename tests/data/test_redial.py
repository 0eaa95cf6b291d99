"""Raw ReDial reader."""

from __future__ import annotations

import json

import pytest

from ffmrec.data.redial import MovieAnswers, read_redial
from ffmrec.errors import DataError

CONVERSATION = {
    "conversationId": "1", "initiatorWorkerId": 10, "respondentWorkerId": 11,
    "messages": [{"timeOffset": 0, "text": "Hi, like @5?", "senderWorkerId": 10, "messageId": 100}],
    "movieMentions": {"5": "Movie (2000)"}, "initiatorQuestions": {"5": {"suggested": 0, "seen": 1, "liked": 2}},
    "respondentQuestions": [],
}


def test_real_test_file(real_file):
    conversations = read_redial(real_file("redial/test_data.jsonl"))
    assert len(conversations) == 1342
    assert sum(len(c.messages) for c in conversations) == 23952
    assert len({c.initiator_worker_id for c in conversations}) == 97
    first = conversations[0]
    assert first.messages[0].text == "Hi I am looking for a movie like @111776"
    assert first.movie_mentions["111776"] == "Super Troopers (2001)"


def test_real_train_subset(real_file):
    assert len(read_redial(real_file("redial/train_subset_raw.jsonl"))) == 1401


def test_tiny_file(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(CONVERSATION) + "\n\n")
    (c,) = read_redial(path)
    assert c.initiator_questions == {"5": MovieAnswers(0, 1, 2)} and c.respondent_questions == {}
    assert c.messages[0].sender_worker_id == 10 and c.messages[0].message_id == 100


@pytest.mark.parametrize(
    "second_line, match",
    [
        ('{"conversationId": "2", "messages": [', r"c\.jsonl, line 2: not valid JSON"),
        (json.dumps({k: v for k, v in CONVERSATION.items() if k != "initiatorWorkerId"}), r"line 2: not a raw ReDial conversation \(missing key 'initiatorWorkerId'\)"),
        (json.dumps({**CONVERSATION, "messages": [{"text": "x", "senderWorkerId": 1, "turn_id": 0}]}), r"line 2: .*processed \(turn-merged\) file"),
        ("[1, 2]", r"line 2: not a raw ReDial conversation \(the line is a JSON list"),
    ],
)
def test_malformed_lines(tmp_path, second_line, match):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(CONVERSATION) + "\n" + second_line + "\n")
    with pytest.raises(DataError, match=match):
        read_redial(path)
