"""FedTREK-LM's data points from ReDial: prompt (system message + sub-PKG + conversation so far), completion (the
recommended movies) and a KTO label, per user, with a chronological held-out test set and no leakage.

One client per seeker (``initiatorWorkerId``). A user's conversations are put in chronological order (ascending
numeric ``conversationId``: ReDial stores no absolute time, and ids were assigned in collection order), and every
message gets a *turn* index over the user's whole history. Movie mentions (``@<id>``) are resolved to titles; each
mention answered in the questionnaire (the seeker's answers, else the recommender's, as FedTREK-LM reads them) adds a
preference to the user's :class:`~ffmrec.pkg.graph.PKGHistory` at that turn.

A *recommending turn* (a recommender message that mentions movies, after at least one seeker message of its
conversation) yields up to two data points, both prompted with the PKG snapshot taken *before* the turn and the
conversation so far: the desirable one with the recommended movies the user liked or did not dislike and that were not
already in the PKG, the undesirable one with the rest. The completion is one fixed format: a bulleted list of
``Title (Year)`` lines.

Split, per user, by time: the last ``test_fraction`` of the user's desirable data points (at least one) are the test
queries (their relevant set: the movies of that data point); the desirable point just before them is the validation
query; training uses only data points before the validation query (before the test cutoff when there is none). Users
with fewer than ``min_positives`` desirable points have no validation or test queries and train on all their points.
Optional synthetic examples are built from the PKG *as it was at the training cutoff* only: masked liked movies to
recommend (desirable), masked disliked movies (undesirable) and movies already in the PKG (redundancy, undesirable).

``protocol="reference"`` rebuilds the published code's leaky prompts instead: every prompt of a conversation carries the
PKG as it was at the *end* of that conversation, and synthetic examples come from the user's final PKG (defects 1 and 3
of the reference, see the FedTREK-LM notes); labels and test queries are the same, so a model can be scored under both
protocols and the inflation measured. Prompts are never truncated under either: see :func:`render_prompt`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ffmrec.data.redial import Conversation, merge_turns, read_redial, read_redial_turn_merged
from ffmrec.data.redial_kg import MovieCatalog, read_movie_catalog
from ffmrec.errors import ConfigError, DataError
from ffmrec.pkg.graph import MOVIE_FIELDS, PKGHistory, Preference, relation_from_answers
from ffmrec.pkg.retrieval import SubPKG, retrieve

PROTOCOLS = ("leak-free", "reference")
FORMATS = ("raw", "turn-merged")
SYSTEM_MESSAGE = ("You recommend movies using the user's knowledge graph (JSON-LD, schema.org terms; liked, disliked, "
                  "seen, notSeen, suggested). Recommend movies not already in it, as a bulleted list.")
REQUEST = "Recommend movies to me."
_MENTION = re.compile(r"@(\d+)")


@dataclass
class RedialExamplesConfig:
    """How ReDial becomes FedTREK-LM data points."""

    protocol: str = field(default="leak-free", metadata={"help": "'leak-free' (each prompt carries the PKG from before its turn) or 'reference' (the published code's prompts: the end-of-conversation PKG in every prompt, synthetic data from the final PKG)."})
    train_format: str = field(default="raw", metadata={"help": "'raw' (train_subset_raw.jsonl, one message per line item) or 'turn-merged' (train_subset_cfcrs_turn_merged.jsonl; the test file's messages are merged the same way)."})
    test_fraction: float = field(default=0.2, metadata={"help": "Share of each user's desirable data points, the latest ones, held out as test queries (at least one)."})
    min_positives: int = field(default=3, metadata={"help": "Users with fewer desirable data points have no validation/test queries (they only train)."})
    synthetic: bool = field(default=False, metadata={"help": "Add synthetic examples built from the PKG at the training cutoff (masked likes, masked dislikes, redundancy negatives)."})
    synthetic_per_kind: int = field(default=2, metadata={"help": "Synthetic examples of each kind per user (at most)."})
    max_tokens: int = field(default=256, metadata={"help": "Token budget of a whole prompt (system message, sub-PKG, conversation); a prompt never exceeds it and is never truncated."})
    pkg_tokens: int = field(default=96, metadata={"help": "Tokens kept free for the sub-PKG when the conversation window is chosen."})
    movie_fields: tuple[str, ...] = field(default=("name", "datePublished", "genre"), metadata={"help": "Movie properties a sub-PKG shows (name, datePublished, genre, director, actor)."})
    system_message: str = field(default=SYSTEM_MESSAGE, metadata={"help": "The system message that starts every prompt."})

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"task.protocol={self.protocol!r} is unknown: use 'leak-free' or 'reference'.")
        if self.train_format not in FORMATS:
            raise ConfigError(f"task.train_format={self.train_format!r} is unknown: use 'raw' or 'turn-merged'.")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"task.test_fraction={self.test_fraction} must lie in (0, 1), e.g. 0.2.")
        if self.min_positives < 2:
            raise ConfigError(f"task.min_positives={self.min_positives} must be >= 2 (one to test, one to train).")
        if self.synthetic_per_kind < 0 or self.max_tokens < 16 or not 0 < self.pkg_tokens < self.max_tokens:
            raise ConfigError(f"task.synthetic_per_kind={self.synthetic_per_kind} must be >= 0, task.max_tokens="
                              f"{self.max_tokens} >= 16 and task.pkg_tokens={self.pkg_tokens} in (0, max_tokens).")
        unknown = [f for f in self.movie_fields if f not in MOVIE_FIELDS]
        if unknown:
            raise ConfigError(f"task.movie_fields has {unknown[0]!r}: use some of {', '.join(MOVIE_FIELDS)}.")


@dataclass(frozen=True)
class Turn:
    turn: int  # index over the user's whole history
    by_user: bool  # the seeker (True) or the recommender
    text: str  # movie mentions resolved to "Title (Year)"
    movies: tuple[str, ...]  # movie ids mentioned, in order of first mention


@dataclass(frozen=True)
class Example:
    """One data point (no text yet: :func:`render_prompt` builds the prompt on the device from the PKG snapshot)."""

    user_id: int
    conversation_id: str
    turn: int  # the recommending turn (synthetic: the training cutoff)
    pkg_turn: int  # the prompt carries the PKG as it was before this turn
    context: tuple[Turn, ...]  # the conversation so far (synthetic: none)
    movies: tuple[str, ...]  # the completion's movie ids (test: the relevant set)
    desirable: bool
    kind: str = "real"  # "real", "masked" (movies removed from the PKG) or "redundant"
    masked: tuple[str, ...] = ()  # movies removed from the prompt's PKG


@dataclass
class UserData:
    user_id: int
    history: PKGHistory
    turns: list[Turn]
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    train_cutoff: int  # training data and synthetic examples use nothing from this turn on
    test_cutoff: int  # the first test turn (len(turns) when the user has no test query)


def load_redial_conversations(folder: Path, train_format: str = "raw") -> list[Conversation]:
    """The staged ReDial conversations: ``test_data.jsonl`` and the train file (``train_data.jsonl`` when present,
    else ``train_subset_raw.jsonl``; or the turn-merged train subset)."""
    folder = Path(folder)
    test = read_redial(folder / "test_data.jsonl")
    if train_format == "turn-merged":
        return [merge_turns(c) for c in test] + read_redial_turn_merged(folder / "train_subset_cfcrs_turn_merged.jsonl")
    train = folder / "train_data.jsonl"
    return test + read_redial(train if train.is_file() else folder / "train_subset_raw.jsonl")


def format_completion(movie_ids: Sequence[str], catalog: MovieCatalog) -> str:
    """The one completion format: ``"- Title (Year)"`` lines."""
    return "\n".join(f"- {catalog[m].title}" for m in movie_ids)


def resolve_text(text: str, conversation: Conversation, catalog: MovieCatalog) -> tuple[str, tuple[str, ...]]:
    """The message with ``@<id>`` replaced by the movie's title, and the ids mentioned (DataError for an id that is
    neither in the catalogue nor in the conversation's mentions)."""
    ids: list[str] = []

    def title(match: re.Match) -> str:
        movie_id = match.group(1)
        if movie_id in catalog:
            if movie_id not in ids:
                ids.append(movie_id)
            return catalog[movie_id].title
        if conversation.movie_mentions.get(movie_id):
            return " ".join(conversation.movie_mentions[movie_id].split())
        raise DataError(f"conversation {conversation.conversation_id}: unknown movie id @{movie_id} (not in the "
                        "ReDial movie catalogue nor in the conversation's movieMentions). Use the staged ReDial files.")

    return _MENTION.sub(title, text), tuple(ids)


def build_user(user_id: int, conversations: Sequence[Conversation], catalog: MovieCatalog,
               config: RedialExamplesConfig, seed: int = 0) -> UserData:
    """One user's PKG history, data points and split (see the module docstring)."""
    conversations = sorted(conversations, key=lambda c: (int(c.conversation_id) if c.conversation_id.isdigit() else 0,
                                                         c.conversation_id))
    events: list[Preference] = []
    turns: list[Turn] = []
    real: list[Example] = []
    for conv in conversations:
        if conv.initiator_worker_id != user_id:
            raise DataError(f"conversation {conv.conversation_id} belongs to seeker {conv.initiator_worker_id}, "
                            f"not user {user_id}: group conversations by initiatorWorkerId.")
        if not conv.messages:
            raise DataError(f"conversation {conv.conversation_id} of user {user_id} is empty (no messages): "
                            "remove it or use the staged ReDial files.")
        questions = conv.initiator_questions or conv.respondent_questions
        start = len(turns)
        conv_examples: list[tuple[int, tuple[str, ...], tuple[str, ...], tuple[Turn, ...]]] = []
        for message in conv.messages:
            t = len(turns)
            by_user = message.sender_worker_id == user_id
            text, mentioned = resolve_text(message.text, conv, catalog)
            turn = Turn(t, by_user, text, mentioned)
            answered = [m for m in mentioned if m in questions]
            context = tuple(turns[start:t])
            if not by_user and answered and any(x.by_user for x in context):
                before = PKGHistory(user_id, events).snapshot(t)
                good = tuple(m for m in answered if m not in before and questions[m].liked != 0)
                bad = tuple(m for m in answered if m not in good)
                conv_examples.append((t, good, bad, context))
            for m in answered:
                relation = relation_from_answers(questions[m], by_recommender=not by_user)
                if relation is not None:
                    events.append(Preference(t, m, relation, conv.conversation_id))
            turns.append(turn)
        end = len(turns)  # the reference protocol's prompts carry the PKG after the conversation's last turn
        for t, good, bad, context in conv_examples:
            pkg_turn = end if config.protocol == "reference" else t
            for movies, desirable in ((good, True), (bad, False)):
                if movies:
                    real.append(Example(user_id, conv.conversation_id, t, pkg_turn, context, movies, desirable))
    history = PKGHistory(user_id, events)
    positives = [e for e in real if e.desirable]
    valid: list[Example] = []
    test: list[Example] = []
    test_cutoff = train_cutoff = len(turns)
    if len(positives) >= config.min_positives:
        n_test = min(len(positives) - 2, max(1, round(config.test_fraction * len(positives))))
        test = positives[len(positives) - n_test:]
        valid = [positives[len(positives) - n_test - 1]]
        test_cutoff, train_cutoff = test[0].turn, valid[0].turn
    train = [e for e in real if e.turn < train_cutoff]
    if config.synthetic:
        source_turn = len(turns) if config.protocol == "reference" else train_cutoff
        train += synthetic_examples(history, source_turn, train_cutoff, config.synthetic_per_kind,
                                    np.random.default_rng((seed, user_id, 0x5E)))
    return UserData(user_id, history, turns, train, valid, test, train_cutoff, test_cutoff)


def synthetic_examples(history: PKGHistory, source_turn: int, turn: int, per_kind: int,
                       rng: np.random.Generator) -> list[Example]:
    """Synthetic data points from the PKG before ``source_turn`` only: masked liked movies (desirable), masked disliked
    movies (undesirable), movies left in the PKG (redundancy, undesirable); each of 1-3 movies, ``per_kind`` per kind
    at most."""
    pkg = history.snapshot(source_turn)
    out: list[Example] = []
    for kind, pool, desirable in (("masked", pkg.movies("liked"), True), ("masked", pkg.movies("disliked"), False),
                                  ("redundant", pkg.movies(), False)):
        for _ in range(min(per_kind, len(pool))):
            k = int(rng.integers(1, min(3, len(pool)) + 1))
            movies = tuple(sorted((pool[i] for i in rng.choice(len(pool), k, replace=False)), key=int))
            if kind == "masked" and len(pkg) == len(movies):
                continue  # nothing would be left to recommend from
            out.append(Example(history.user_id, "", turn, source_turn, (), movies, desirable, kind,
                               movies if kind == "masked" else ()))
    return out


def build_users(conversations: Sequence[Conversation], catalog: MovieCatalog, config: RedialExamplesConfig,
                seed: int = 0) -> list[UserData]:
    """Every seeker's :class:`UserData`, by ascending worker id (users without any data point are left out)."""
    by_user: dict[int, list[Conversation]] = {}
    for c in conversations:
        by_user.setdefault(c.initiator_worker_id, []).append(c)
    users = [build_user(u, by_user[u], catalog, config, seed) for u in sorted(by_user)]
    return [u for u in users if u.train or u.test]


def load_redial_users(folder: Path, config: RedialExamplesConfig, seed: int = 0
                      ) -> tuple[MovieCatalog, list[UserData]]:
    """The catalogue and every user's data of a staged ReDial folder."""
    catalog = read_movie_catalog(folder)
    return catalog, build_users(load_redial_conversations(folder, config.train_format), catalog, config, seed)


# --- prompts --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    text: str  # the whole prompt as one text (the catalog policy's input)
    messages: tuple[dict, ...]  # the same as chat messages (system with the sub-PKG, then the conversation)
    sub_pkg: SubPKG
    tokens: int  # count_tokens(text) <= max_tokens, asserted
    mentioned: tuple[str, ...]  # movie ids the prompt's conversation mentions, in order (repeats kept)


def _render(system: str, pkg_text: str, context: Sequence[Turn]) -> tuple[str, tuple[dict, ...]]:
    head = f"{system}\nKnowledge graph: {pkg_text}"
    lines = [f"{'User' if t.by_user else 'Recommender'}: {t.text}" for t in context] or [f"User: {REQUEST}"]
    messages = ({"role": "system", "content": head},
                *({"role": "user" if t.by_user else "assistant", "content": t.text} for t in context))
    if not context:
        messages = (*messages, {"role": "user", "content": REQUEST})
    return "\n".join([head, *lines]), messages


def render_prompt(example: Example, history: PKGHistory, catalog: MovieCatalog, config: RedialExamplesConfig,
                  count_tokens: Callable[[str], int]) -> Prompt:
    """The example's prompt within ``config.max_tokens`` tokens (by ``count_tokens``), never truncated: the most
    recent messages of the conversation that fit beside ``pkg_tokens`` tokens of PKG, then the largest relevant
    sub-PKG of the snapshot before ``example.pkg_turn`` (minus masked movies) that fits the rest. DataError (naming
    the example) when even the system message and the last message do not fit."""
    pkg = history.snapshot(example.pkg_turn).without(example.masked)
    limit = config.max_tokens
    context = list(example.context)
    if config.protocol == "reference" and context:
        return _render_pkg_first(example, pkg, catalog, config, count_tokens)
    window: list[Turn] = []
    for reserve in ("x " * config.pkg_tokens, "{}"):  # room kept for the sub-PKG; none if the last message needs it
        keep = 0
        while keep < len(context) and count_tokens(
                _render(config.system_message, reserve, context[len(context) - keep - 1:])[0]) <= limit:
            keep += 1
        window = context[len(context) - keep:] if keep else []
        if window or not context:
            break
    if context and not window:
        raise DataError(f"user {example.user_id}, conversation {example.conversation_id}, turn {example.turn}: the "
                        f"system message and the last message alone exceed task.max_tokens={limit}: raise "
                        "max_tokens (prompts are never truncated).")
    mentioned = [m for t in window for m in t.movies]
    sub = retrieve(pkg, catalog, mentioned,
                   lambda text: count_tokens(_render(config.system_message, text, window)[0]) <= limit,
                   config.movie_fields)
    text, messages = _render(config.system_message, sub.text, window)
    tokens = count_tokens(text)
    assert tokens <= limit, f"prompt of {tokens} tokens exceeds max_tokens={limit}"
    return Prompt(text, messages, sub, tokens, tuple(mentioned))


def _render_pkg_first(example: Example, pkg, catalog: MovieCatalog, config: RedialExamplesConfig,
                      count_tokens: Callable[[str], int]) -> Prompt:
    """The reference protocol's layout: the (end-of-conversation) PKG first, as the published prompts carry the whole
    graph in the system message, then as many of the latest messages as still fit (at least the last one)."""
    limit = config.max_tokens
    context = list(example.context)
    mentioned = [m for t in context for m in t.movies]
    sub = retrieve(pkg, catalog, mentioned,
                   lambda text: count_tokens(_render(config.system_message, text, context[-1:])[0]) <= limit,
                   config.movie_fields)
    keep = 1
    while keep < len(context) and count_tokens(_render(config.system_message, sub.text, context[-keep - 1:])[0]) <= limit:
        keep += 1
    text, messages = _render(config.system_message, sub.text, context[-keep:])
    tokens = count_tokens(text)
    assert tokens <= limit, f"prompt of {tokens} tokens exceeds max_tokens={limit}"
    return Prompt(text, messages, sub, tokens, tuple(m for t in context[-keep:] for m in t.movies))
