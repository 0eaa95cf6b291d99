"""Reading delimited text data files, with errors that name the file, the line, the problem and the fix.

Every function here raises :class:`~ffmrec.errors.DataError` with a one-line message for input a user can fix (missing,
unreadable or empty file, bad encoding, wrong separator, wrong number of fields, non-integer ids), never a raw
``UnicodeDecodeError`` or pandas error.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ffmrec.errors import DataError

SEPARATORS = ("::", "\t", ",", ";", "|")


def file_error(path: Path, problem: str, fix: str) -> DataError:
    """``<path>: <problem>. <fix>`` as one line."""
    return DataError(_one_line(f"{path}: {problem}. {fix}"))


def line_error(path: Path, line: int, problem: str, fix: str) -> DataError:
    """``<path>, line <n>: <problem>. <fix>`` as one line."""
    return DataError(_one_line(f"{path}, line {line}: {problem}. {fix}"))


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The file's text with ``\\r\\n`` turned into ``\\n`` and a UTF-8 byte-order mark dropped.

    Raises DataError when the file is missing, unreadable, empty (or blank) or not valid ``encoding`` (with the line of
    the first bad byte).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise file_error(path, "missing file", "Put the file there, or point the data directory (FFMREC_DATA_DIR) at the folder that holds it") from None
    except OSError as exc:
        raise file_error(path, f"cannot read the file ({exc.strerror or exc})", "Check that it is a readable file") from None
    if not data.strip():
        raise file_error(path, "the file is empty", "Put the complete file there (download it again)")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise line_error(
            path, line, f"byte {data[exc.start]:#04x} is not valid {encoding.upper()}",
            f"Save the file as {encoding.upper()} (it may be in another encoding, or be damaged)",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n") if "\r" in text else text


def split_lines(text: str, path: Path, sep: str, layout: str) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of each non-blank line, each with exactly as many fields as ``layout`` names.

    ``layout`` is the expected line format with ``sep`` between the field names, e.g. ``"MovieID::Title::Genres"``.
    """
    num_fields = len(layout.split(sep))
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != num_fields:
            raise field_count_error(path, number, line, sep, layout, len(fields))
        rows.append((number, fields))
    return rows


def field_count_error(path: Path, line_number: int, line: str, sep: str, layout: str, found: int) -> DataError:
    """The error for a line with the wrong number of fields: a wrong separator if another one is there, else truncation."""
    num_fields = len(layout.split(sep))
    if found == 1:
        others = [s for s in SEPARATORS if s != sep and s not in sep and s in line]
        if others:
            return line_error(
                path, line_number, f"fields are separated by {others[0]!r}, expected {sep!r} ({layout})",
                f"Write the file with {sep!r} between fields, as in the original",
            )
    problem = "the line is truncated" if found < num_fields else "the line has extra fields"
    return line_error(
        path, line_number, f"{problem}: {found} fields separated by {sep!r}, expected {num_fields} ({layout}): {_clip(line)!r}",
        "Fix or remove the line, or download the file again",
    )


def parse_int(value: str, path: Path, line_number: int, column: str, layout: str) -> int:
    """``int(value)``, or a DataError naming the line and column."""
    try:
        number = int(value)
    except ValueError:
        raise line_error(
            path, line_number, f"{column} is {_clip(value)!r}, not an integer ({layout})", "Fix the line, or download the file again"
        ) from None
    if not -(2**63) <= number < 2**63:
        raise line_error(path, line_number, f"{column} {number} does not fit in 64 bits", "Fix the line, or download the file again")
    return number


def parse_int_table(text: str, path: Path, sep: str, layout: str) -> np.ndarray:
    """The all-integer table in ``text`` as an ``(rows, fields)`` int64 array (blank lines skipped).

    Fast path: pandas' C parser. On any doubt it falls back to a line-by-line parse, which either agrees or raises a
    DataError naming the first bad line.
    """
    columns = layout.split(sep)
    if sep == "\t" or "\t" not in text:
        body = text if sep == "\t" else text.replace(sep, "\t")
        try:
            frame = pd.read_csv(
                io.StringIO(body), sep="\t", header=None, dtype=np.int64, index_col=False, quoting=csv.QUOTE_NONE, engine="c",
            )
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OverflowError):
            frame = None
        if frame is not None and frame.shape[1] == len(columns):
            return frame.to_numpy(dtype=np.int64)
    return _parse_int_table_by_line(text, path, sep, layout)


def _parse_int_table_by_line(text: str, path: Path, sep: str, layout: str) -> np.ndarray:
    columns = layout.split(sep)
    rows = [[parse_int(v, path, number, column, layout) for v, column in zip(fields, columns)]
            for number, fields in split_lines(text, path, sep, layout)]
    if not rows:
        raise file_error(path, "the file has no data lines", "Put the complete file there (download it again)")
    return np.array(rows, dtype=np.int64)


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _one_line(message: str) -> str:
    return " ".join(message.split("\n"))


def iter_json_lines(path: Path, fix: str):
    """``(line number, parsed object)`` for every non-blank line of a JSON-lines file; DataError naming the bad line."""
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise line_error(path, number, f"not valid JSON ({exc.msg} at column {exc.colno})", fix) from None
