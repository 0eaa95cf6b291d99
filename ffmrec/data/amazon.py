"""Amazon review sequential-recommendation benchmarks in the S3-Rec format (Beauty, Sports_and_Outdoors, Toys_and_Games).

Layout under the data directory::

    amazon/beauty/Beauty.txt                   one line per user: "user_id item_id item_id ..." in chronological order
    amazon/beauty/item_text.jsonl              optional: {"item_id": 1, "asin": ..., "title": ..., "categories": [[...]]}
    amazon/sports/Sports_and_Outdoors.txt
    amazon/toys/Toys_and_Games.txt (+ item_text.jsonl)

These are the 5-core files of S3-Rec (Zhou et al., CIKM 2020), already chronological and with dense 1-based ids, so
they carry no timestamps or ratings (``Dataset.timestamps`` is None). Ids keep their meaning: the ids are exactly
``1..N`` and dense ids follow numeric order, so with no filter removing anything dense item ``i`` *is* S3-Rec item
``i`` and dense user ``u`` is S3-Rec user ``u + 1`` (checked in the tests on the real files). With the default options
the files give exactly: Beauty 22,363 users / 12,101 items / 198,502 interactions, Sports 35,598 / 18,357 / 296,337,
Toys 19,412 / 11,924 / 167,597.

Item text is ``"<title> | <category>, <category>, ..."`` with HTML entities in titles unescaped (``&amp;`` -> ``&``)
and the categories of all category paths, first occurrence first.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from ffmrec.data.download import REMOTE_FILES, ensure_files
from ffmrec.data.preprocess import RawInteractions
from ffmrec.data.source import Source, SourceStatus
from ffmrec.data.textfile import file_error, iter_json_lines, line_error, parse_int, read_text

LAYOUT = "user_id item_id item_id ..."
ITEM_TEXT_FILE = "item_text.jsonl"


@dataclass(frozen=True)
class S3RecFiles:
    folder: str  # relative to the data directory
    sequences: str  # file name of the S3-Rec sequence file
    description: str


S3REC_DATASETS: dict[str, S3RecFiles] = {
    "beauty": S3RecFiles("amazon/beauty", "Beauty.txt", "Amazon Beauty (S3-Rec 5-core): 22,363 users, 12,101 items, 198,502 interactions; titles"),
    "sports": S3RecFiles(
        "amazon/sports", "Sports_and_Outdoors.txt", "Amazon Sports_and_Outdoors (S3-Rec 5-core): 35,598 users, 18,357 items, 296,337 interactions"
    ),
    "toys": S3RecFiles("amazon/toys", "Toys_and_Games.txt", "Amazon Toys_and_Games (S3-Rec 5-core): 19,412 users, 11,924 items, 167,597 interactions; titles"),
}


class AmazonS3Rec(Source):
    """One S3-Rec Amazon dataset (``name`` in :data:`S3REC_DATASETS`) in ``data_dir``."""

    def __init__(self, name: str, data_dir: Path) -> None:
        files = S3REC_DATASETS[name]
        self.name, self.description = name, files.description
        self.folder = Path(data_dir) / files.folder
        self.sequences_path = self.folder / files.sequences
        self.remote = REMOTE_FILES[f"{files.folder}/{files.sequences}"]
        self.item_text_path = self.folder / ITEM_TEXT_FILE

    def input_files(self) -> list[Path]:
        ensure_files([(self.sequences_path, self.remote)])
        return [self.sequences_path] + ([self.item_text_path] if self.item_text_path.is_file() else [])

    def read(self) -> RawInteractions:
        users, items = read_s3rec_sequences(self.sequences_path)
        return RawInteractions(
            name=self.name, users=users, items=items, timestamps=np.arange(len(items), dtype=np.int64), ordered=True,
            item_text=read_item_text(self.item_text_path) if self.item_text_path.is_file() else None,
        )

    def status(self) -> SourceStatus:
        present = self.sequences_path.is_file()
        notes = [] if self.item_text_path.is_file() else [f"no {self.item_text_path}: items have no text"]
        return SourceStatus(self.name, self.description, self.folder, present, [] if present else [str(self.sequences_path)], notes)


def read_s3rec_sequences(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)``, one int64 entry per interaction, in file order, from an S3-Rec sequence file."""
    lines = read_text(path).split("\n")
    tokens = [line.split() for line in lines]
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    try:
        values = np.array(list(chain.from_iterable(tokens))).astype(np.int64)
    except (ValueError, OverflowError):
        _raise_first_bad_token(path, tokens)
        raise  # unreachable: the scan above always raises
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[lengths > 0]  # position of each line's user id in values
    is_user = np.zeros(len(values), dtype=bool)
    is_user[starts] = True
    users = np.repeat(values[starts], lengths[lengths > 0] - 1)
    return users, values[~is_user]


def _raise_first_bad_token(path: Path, tokens: list[list[str]]) -> None:
    for number, line_tokens in enumerate(tokens, start=1):
        for position, token in enumerate(line_tokens):
            separator = next((s for s in (",", ";", "|", ":") if s in token), None)
            if separator is not None:
                raise line_error(
                    path, number, f"values are separated by {separator!r}, expected spaces ({LAYOUT})",
                    "Write one user per line with space-separated integer ids",
                )
            parse_int(token, path, number, "user_id" if position == 0 else f"item {position}", LAYOUT)
    raise file_error(path, "could not be parsed", f"Check that every line is {LAYOUT}")


def read_item_text(path: Path) -> dict[str, str]:
    """``item_text.jsonl`` as ``{str item id: "title | category, category"}`` (titles HTML-unescaped)."""
    texts = {}
    for number, record in iter_json_lines(path, "Each line must be one JSON object"):
        if not isinstance(record, dict) or not isinstance(record.get("item_id"), int) or not isinstance(record.get("title"), str):
            raise line_error(
                path, number, "expected an object with integer 'item_id' and string 'title'",
                'Write lines like {"item_id": 1, "title": "...", "categories": [["..."]]}',
            )
        categories = record.get("categories") or []
        if not isinstance(categories, list) or not all(isinstance(c, list) and all(isinstance(s, str) for s in c) for c in categories):
            raise line_error(path, number, "'categories' must be a list of lists of strings", 'Write it like [["Beauty", "Makeup"]]')
        names = list(dict.fromkeys(html.unescape(s) for s in chain.from_iterable(categories)))
        title = html.unescape(record["title"])
        texts[str(record["item_id"])] = f"{title} | {', '.join(names)}" if names else title
    return texts
