"""ReDial (Li et al., NeurIPS 2018) movie-recommendation dialogues, as released (raw JSON lines).

Each line of ``test_data.jsonl`` / ``train_data.jsonl`` (here also ``train_subset_raw.jsonl``) is one conversation::

    {"conversationId": "20001", "initiatorWorkerId": 956, "respondentWorkerId": 957,
     "messages": [{"timeOffset": 0, "text": "... @111776", "senderWorkerId": 956, "messageId": 204171}, ...],
     "movieMentions": {"111776": "Super Troopers (2001)", ...},
     "initiatorQuestions": {"111776": {"suggested": 0, "seen": 1, "liked": 1}, ...}, "respondentQuestions": {...}}

Movies appear in the text as ``@<movieId>``. Answer codes: ``suggested`` 0 = mentioned by the seeker, 1 = suggested by
the recommender; ``seen``/``liked`` 0 = no, 1 = yes, 2 = did not say. Empty mentions/questions, stored as ``[]`` in
some lines, are read as empty dicts. Turn-merged/processed variants (e.g. CFCRS files without ``messageId``) are not
this format and are rejected with a hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ffmrec.data.source import SourceStatus
from ffmrec.data.textfile import iter_json_lines, line_error

FILES = ("test_data.jsonl", "train_subset_raw.jsonl")
DESCRIPTION = "ReDial dialogues (raw JSON lines; read with ffmrec.data.redial.read_redial): test 1,342 + train subset 1,401"


@dataclass(frozen=True)
class Message:
    message_id: int
    sender_worker_id: int
    text: str
    time_offset: int  # seconds since the conversation started


@dataclass(frozen=True)
class MovieAnswers:
    suggested: int  # 0 = mentioned by the seeker, 1 = suggested by the recommender
    seen: int  # 0 = no, 1 = yes, 2 = did not say
    liked: int  # 0 = no, 1 = yes, 2 = did not say


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    initiator_worker_id: int  # the seeker
    respondent_worker_id: int  # the recommender
    messages: tuple[Message, ...]
    movie_mentions: dict[str, str]  # movieId -> title
    initiator_questions: dict[str, MovieAnswers]  # movieId -> the seeker's answers
    respondent_questions: dict[str, MovieAnswers]  # movieId -> the recommender's answers


def read_redial(path: Path) -> list[Conversation]:
    """Every conversation in a raw ReDial JSON-lines file, in file order (DataError naming the line if malformed)."""
    path = Path(path)
    conversations = []
    for number, record in iter_json_lines(path, "Each line must be one complete JSON object (re-download the file)"):
        try:
            conversations.append(_conversation(record))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise line_error(path, number, f"not a raw ReDial conversation ({_describe(exc, record)})", _fix(record)) from None
    return conversations


def redial_status(data_dir: Path) -> SourceStatus:
    folder = Path(data_dir) / "redial"
    missing = [str(folder / n) for n in FILES if not (folder / n).is_file()]
    partial = [] if (folder / "train_data.jsonl").is_file() else ["no full train_data.jsonl (10,006 conversations); train_subset_raw.jsonl has 1,401"]
    return SourceStatus("redial", DESCRIPTION, folder, len(missing) < len(FILES), missing, partial)


def _conversation(record: dict) -> Conversation:
    return Conversation(
        conversation_id=str(record["conversationId"]),
        initiator_worker_id=_int(record["initiatorWorkerId"]),
        respondent_worker_id=_int(record["respondentWorkerId"]),
        messages=tuple(
            Message(_int(m["messageId"]), _int(m["senderWorkerId"]), _str(m["text"]), _int(m["timeOffset"])) for m in record["messages"]
        ),
        movie_mentions={str(k): _str(v) if v is not None else "" for k, v in _mapping(record.get("movieMentions")).items()},
        initiator_questions=_answers(record.get("initiatorQuestions")),
        respondent_questions=_answers(record.get("respondentQuestions")),
    )


def _answers(value: object) -> dict[str, MovieAnswers]:
    return {str(k): MovieAnswers(_int(a["suggested"]), _int(a["seen"]), _int(a["liked"])) for k, a in _mapping(value).items()}


def _mapping(value: object) -> dict:
    if value is None or value == []:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _describe(exc: Exception, record: object) -> str:
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}"
    if not isinstance(record, dict):
        return f"the line is a JSON {type(record).__name__}, not an object"
    return " ".join(str(exc).split())


def _fix(record: object) -> str:
    messages = record.get("messages") if isinstance(record, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict) and "turn_id" in messages[0]:
        return "This is a processed (turn-merged) file; read the raw ReDial file (test_data.jsonl / train_data.jsonl) instead"
    return "Each line must be a raw ReDial conversation (see ffmrec.data.redial); re-download the file"



def read_redial_turn_merged(path: Path) -> list[Conversation]:
    """Every conversation of a turn-merged ReDial file (CFCRS preprocessing: consecutive messages of one sender merged
    into one turn, ``turn_id`` instead of ``messageId``/``timeOffset``), as :class:`Conversation` whose messages are the
    turns (``message_id`` = ``turn_id``, ``time_offset`` = 0). DataError naming the line if malformed."""
    path = Path(path)
    conversations = []
    for number, record in iter_json_lines(path, "Each line must be one complete JSON object (re-download the file)"):
        try:
            if record["messages"] and "turn_id" not in record["messages"][0]:
                raise ValueError("its messages have no turn_id: this is a raw file, read it with read_redial")
            turned = {**record, "messages": [{"messageId": m["turn_id"], "senderWorkerId": m["senderWorkerId"],
                                              "text": m["text"], "timeOffset": 0} for m in record["messages"]]}
            conversations.append(_conversation(turned))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise line_error(path, number, f"not a turn-merged ReDial conversation ({_describe(exc, record)})",
                             "Each line must be a turn-merged ReDial conversation (messages with turn_id)") from None
    return conversations


def merge_turns(conversation: Conversation) -> Conversation:
    """The conversation with consecutive messages of the same sender merged into one turn (texts joined by a space,
    ids renumbered 0, 1, ...), as the turn-merged files do."""
    turns: list[Message] = []
    for m in conversation.messages:
        if turns and turns[-1].sender_worker_id == m.sender_worker_id:
            last = turns[-1]
            turns[-1] = Message(last.message_id, last.sender_worker_id, f"{last.text} {m.text}", last.time_offset)
        else:
            turns.append(Message(len(turns), m.sender_worker_id, m.text, m.time_offset))
    return Conversation(conversation.conversation_id, conversation.initiator_worker_id,
                        conversation.respondent_worker_id, tuple(turns), conversation.movie_mentions,
                        conversation.initiator_questions, conversation.respondent_questions)
