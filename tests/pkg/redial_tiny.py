"""A tiny staged ReDial folder (8 movies, 2 seekers, 4 conversations) whose data points are computed by hand in the
tests: user 100 talks in conversations 10, 11 and 12 (written out of order), user 200 in conversation 20."""

from __future__ import annotations

import json
import os
from pathlib import Path

MOVIES = [("1", "Alpha  (2001)"), ("2", "Beta (2002)"), ("3", "Gamma (2003)"), ("4", "Delta (2004)"),
          ("5", "Epsilon (2005)"), ("6", "Zeta (2006)"), ("7", "Eta (2007)"), ("8", "Theta")]
INFO = {"1": {"name": "Alpha (2001)", "genre": ["comedy"], "director": ["Dee One"], "star": ["Ann Actor"]},
        "2": {"name": "Beta (2002)", "genre": ["comedy"], "director": ["Dee One"], "star": []},
        "3": {"name": "Gamma (2003)", "genre": ["horror"], "director": [], "star": []},
        "4": {"name": "Delta (2004)", "genre": ["horror"], "director": [], "star": []},
        "5": {"name": "Epsilon (2005)", "genre": ["drama"], "director": [], "star": []},
        "6": {"name": "Zeta (2006)", "genre": ["drama"], "director": [], "star": []},
        "7": {"name": "Eta (2007)", "genre": ["comedy"], "director": [], "star": []}}


def q(suggested: int, seen: int, liked: int) -> dict:
    return {"suggested": suggested, "seen": seen, "liked": liked}


def conversation(cid: str, seeker: int, texts: list[tuple[bool, str]], questions: dict) -> dict:
    messages = [{"timeOffset": i, "text": text, "senderWorkerId": seeker if by_user else 900, "messageId": 1000 + i}
                for i, (by_user, text) in enumerate(texts)]
    mentions = {m: dict(MOVIES)[m] for m in questions}
    return {"conversationId": cid, "initiatorWorkerId": seeker, "respondentWorkerId": 900, "messages": messages,
            "movieMentions": mentions, "initiatorQuestions": questions, "respondentQuestions": []}


CONVERSATIONS = {
    "10": conversation("10", 100, [(True, "Hi I like @1"), (False, "Try @2"), (True, "ok"),
                                   (False, "Or @1 again and @3")],
                       {"1": q(0, 1, 1), "2": q(1, 0, 1), "3": q(1, 1, 0)}),
    "11": conversation("11", 100, [(True, "I want drama"), (False, "@5 is great"), (True, "thanks"), (False, "@6")],
                       {"5": q(1, 2, 2), "6": q(1, 1, 1)}),
    "12": conversation("12", 100, [(True, "more please"), (False, "@7")], {"7": q(1, 0, 1)}),
    "20": conversation("20", 200, [(True, "hello @8"), (False, "@1")], {"8": q(0, 1, 1), "1": q(1, 0, 1)}),
}


def write_tiny_redial(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kg_cfcrs").mkdir(exist_ok=True)
    lines = ["movieId,movieName,nbMentions", *(f"{m},{t},{i}" for i, (m, t) in enumerate(MOVIES, start=1))]
    (folder / "movies_with_mentions.csv").write_text("\n".join(lines) + "\n")
    (folder / "kg_cfcrs" / "id2info.json").write_text(json.dumps(INFO))
    test = [CONVERSATIONS[c] for c in ("12", "10", "11")]  # out of order on purpose
    (folder / "test_data.jsonl").write_text("".join(json.dumps(c) + "\n" for c in test))
    (folder / "train_subset_raw.jsonl").write_text(json.dumps(CONVERSATIONS["20"]) + "\n")
    return folder


REAL_REDIAL = Path(os.environ.get("FFMREC_DATA_DIR") or "data") / "redial"


def char_count(text: str) -> int:
    """Whitespace tokens: a tokenizer stand-in for data tests."""
    return len(text.split())
