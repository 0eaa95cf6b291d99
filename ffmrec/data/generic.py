"""Your own interaction data, as CSV or Parquet files.

**Interactions** (required): a ``.csv``/``.tsv`` (UTF-8, header row; the separator ``,``, tab, ``;`` or ``|`` is
detected from the header line, or set with ``data.separator``) or ``.parquet`` file with the columns

- ``user``: user id (any string or integer),
- ``item``: item id (any string or integer),
- ``timestamp``: when it happened: an integer (e.g. Unix seconds; only the order matters) or an ISO 8601 date/time
  such as ``2021-03-04`` or ``2021-03-04T10:15:00Z`` (converted to Unix seconds, UTC); Parquet datetime columns work too,
- ``rating`` (optional): a number; needed for ``data.min_rating``.

Other columns are ignored. One row is one interaction; a user's rows need not be sorted or contiguous: each user's
items are ordered by timestamp, and rows with equal timestamps keep file order.

Columns named otherwise are mapped with the data options (``--set data.user_column=user_id data.item_column=asin
data.timestamp_column=unixReviewTime``; ``data.rating_column`` likewise). A file whose rows already give each user's
chronological order sets ``data.ordered=true``: no timestamp column is needed (one that is there, e.g. a position, only
orders the rows) and the dataset records no timestamps.

**Item text** (optional): columns ``item`` and ``text`` (one row per item), e.g. ``"Title | Category"``.

**User attributes** (optional): a column ``user`` and any attribute columns (e.g. ``gender``, ``age``), one row per
user. Users without a row get missing values.

Ids are strings in the Dataset; dense ids follow numeric order when every id is an integer, else lexicographic order.

Three ways to load it:

- ``load_dataset("path/to/interactions.csv")`` (or ``.parquet``): item text and user attributes are read from
  ``item_text.csv|parquet`` and ``user_attributes.csv|parquet`` in the same folder when present;
- ``load_dataset("path/to/folder")`` or ``load_dataset("generic", data_dir="path/to/folder")``: the folder holds
  ``interactions.csv|parquet`` and the optional files above;
- ``load_dataset(GenericSource(interactions=..., item_text=..., user_attributes=...))`` for any file names.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ffmrec.data.download import require_file
from ffmrec.data.preprocess import SEPARATORS, DataOptions, RawInteractions
from ffmrec.data.source import Source, SourceStatus
from ffmrec.data.textfile import file_error, line_error, read_text
from ffmrec.errors import DataError

SUFFIXES = (".csv", ".tsv", ".parquet")
DESCRIPTION = "Your own data: interactions.csv|tsv|parquet (user, item, timestamp[, rating]) + optional item_text.*, user_attributes.*"


@dataclass(frozen=True)
class GenericSource(Source):
    """User-supplied files in the format described in this module's docstring."""

    interactions: Path
    item_text: Path | None = None
    user_attributes: Path | None = None
    name: str = "generic"
    options: DataOptions | None = None  # column names, separator, pre-ordered rows (the ``data.*`` options)

    description = DESCRIPTION

    @classmethod
    def from_folder(cls, data_dir: Path) -> GenericSource:
        """``interactions.*`` and the optional side files in ``data_dir`` (``load_dataset("generic", data_dir=...)``)."""
        folder = Path(data_dir)
        interactions = _find(folder, "interactions") or folder / "interactions.csv"
        return cls(interactions, _find(folder, "item_text"), _find(folder, "user_attributes"), name=folder.resolve().name or "generic")

    @classmethod
    def from_path(cls, interactions: Path) -> GenericSource:
        """The interactions file ``interactions`` plus side files found next to it (``load_dataset("x/data.csv")``)."""
        path = Path(interactions)
        name = path.parent.resolve().name if path.stem == "interactions" else path.stem
        return cls(path, _find(path.parent, "item_text"), _find(path.parent, "user_attributes"), name=name or "generic")

    def input_files(self) -> list[Path]:
        return [require_file(p, self.name) for p in (self.interactions, self.item_text, self.user_attributes) if p is not None]

    def read(self) -> RawInteractions:
        opts = self.options or DataOptions()
        user, item, time, rating = opts.user_column, opts.item_column, opts.timestamp_column, opts.rating_column
        required = (user, item) if opts.ordered else (user, item, time)
        frame = read_table(self.interactions, required=required, separator=opts.separator)
        has_rating = rating in frame.columns
        if time in frame.columns:
            timestamps = _timestamps(frame[time], self.interactions, time)
        else:  # data.ordered without a timestamp column: file order is the order
            timestamps = np.arange(len(frame), dtype=np.int64)
        return RawInteractions(
            name=self.name,
            users=_ids(frame, user, self.interactions),
            items=_ids(frame, item, self.interactions),
            timestamps=timestamps,
            ratings=_numbers(frame[rating], self.interactions, rating).astype(np.float32) if has_rating else None,
            ordered=opts.ordered,
            item_text=read_item_text(self.item_text) if self.item_text is not None else None,
            user_attributes=read_user_attributes(self.user_attributes) if self.user_attributes is not None else None,
        )

    def status(self) -> SourceStatus:
        present = self.interactions.is_file()
        return SourceStatus(self.name, self.description, self.interactions.parent, present, [] if present else [str(self.interactions)])


def read_item_text(path: Path) -> dict[str, str]:
    """An item-text table as ``{item id: text}``."""
    frame = read_table(path, required=("item", "text"))
    items = _ids(frame, "item", path)
    _check_unique(items, path, "item")
    texts = frame["text"].astype(object).where(frame["text"].notna(), "")
    return dict(zip(items.tolist(), (str(t) for t in texts.tolist())))


def read_user_attributes(path: Path) -> pd.DataFrame:
    """A user-attributes table indexed by user id (str), its other columns as read (numbers stay numbers)."""
    frame = read_table(path, required=("user",))
    users = _ids(frame, "user", path)
    _check_unique(users, path, "user")
    attributes = frame.drop(columns=["user"])
    attributes.index = pd.Index(users, dtype=object, name="user")
    return attributes


def read_table(path: Path, required: tuple[str, ...], separator: str | None = None) -> pd.DataFrame:
    """A CSV/TSV or Parquet table (by extension) that has the ``required`` columns; id columns are read as strings.

    ``separator``: the CSV field separator; None detects it from the header line (``,``, tab, ``;`` or ``|``)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        frame = _read_csv(path, required, separator)
    elif suffix == ".parquet":
        frame = _read_parquet(path)
    else:
        raise file_error(path, f"unknown file type {path.suffix!r}", "Use a .csv, .tsv or .parquet file")
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_distinct_columns(list(frame.columns), path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(repr(c) for c in frame.columns)
        hint = ""
        if len(frame.columns) == 1:
            other = next((s for s in SEPARATORS if s in frame.columns[0]), None)
            hint = f"; the file seems to use {other!r} as separator, set data.separator to it" if other else ""
        raise file_error(
            path, f"missing column {missing[0]!r} (found columns: {found}){hint}",
            f"The file needs the columns {', '.join(required)}: rename or add them, or name yours with the data options "
            "(e.g. --set data.user_column=user_id data.item_column=item_id data.timestamp_column=time)",
        )
    if len(frame) == 0:
        raise file_error(path, "the table has no rows", "Add the data rows below the header")
    return frame


def detect_separator(header: str) -> str:
    """The field separator of a header line: the most frequent of ``,``, tab, ``;`` and ``|`` (``,`` if none)."""
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _check_distinct_columns(names: list[str], path: Path) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise file_error(path, f"column {name!r} appears twice in the header",
                             "Give every column a distinct name (ffmrec would not know which one to read)")
        seen.add(name)


def _read_csv(path: Path, required: tuple[str, ...], separator: str | None = None) -> pd.DataFrame:
    text = read_text(path)
    header = text.split("\n", 1)[0]
    sep = separator or detect_separator(header)
    # pandas renames a repeated column ('item', 'item.1'): check the header as written
    _check_distinct_columns([c.strip() for c in next(csv.reader([header], delimiter=sep), [])], path)
    try:
        return pd.read_csv(
            io.StringIO(text), sep=sep, dtype={c: str for c in ("user", "item", "text", *required[:2])},
            keep_default_na=False, na_values=[""],
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            expected, line, saw = match.groups()
            raise line_error(
                path, int(line), f"{saw} fields, expected {expected} (as in the header)",
                "Quote fields that contain commas, or fix the line",
            ) from None
        raise file_error(path, f"not a valid CSV file ({' '.join(str(exc).split())})", "Write it as UTF-8 with a header row, fields separated by one of , tab ; |") from None
    except pd.errors.EmptyDataError:
        raise file_error(path, "the file is empty", f"Write a header row ({', '.join(required)}) and data rows") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    require_file(path, "generic")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types (ArrowInvalid, OSError, ...): all mean "not readable"
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise file_error(path, f"cannot read it as Parquet ({reason[:200]})", "Write it with pandas.DataFrame.to_parquet, or use a .csv file") from None


def _row_error(path: Path, row: int, problem: str, fix: str) -> DataError:
    """An error at 0-based data row ``row``: a line number for CSV (header is line 1), a row number for Parquet."""
    if path.suffix.lower() in (".csv", ".tsv"):
        return line_error(path, row + 2, problem, fix)
    return DataError(f"{path}, row {row + 1}: {problem}. {fix}")


def _where(path: Path, row: int) -> str:
    """``line N`` (CSV, header is line 1) or ``row N`` (Parquet) of 0-based data row ``row``."""
    return f"line {row + 2}" if path.suffix.lower() in (".csv", ".tsv") else f"row {row + 1}"


def _ids(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = frame[column]
    missing = values.isna().to_numpy()
    if missing.any():
        raise _row_error(path, int(np.flatnonzero(missing)[0]), f"{column} is empty", f"Give every row a {column} id")
    return values.astype(str).str.strip().to_numpy(dtype=object)


def _numbers(values: pd.Series, path: Path, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _row_error(path, row, f"{column} is {_show(values.iloc[row])}, not a number", f"Write every {column} as a number")
    return numbers.to_numpy(dtype=np.float64)


def _timestamps(values: pd.Series, path: Path, column: str = "timestamp") -> np.ndarray:
    """Integer timestamps as they are; dates (ISO 8601 strings or datetime columns) as Unix seconds (UTC)."""
    same_way = "Write every timestamp the same way: an integer (e.g. Unix seconds) or a date like 2021-03-04T10:15:00Z"
    if pd.api.types.is_datetime64_any_dtype(values):
        dates = pd.to_datetime(values, utc=True)
    else:
        empty = values.isna().to_numpy()
        if empty.any():
            raise _row_error(path, int(np.flatnonzero(empty)[0]), f"{column} is empty", f"Give every row a {column}")
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().all():
            too_big = (numbers.astype(np.float64).abs() >= 2.0**63).to_numpy()
            if too_big.any():
                row = int(np.flatnonzero(too_big)[0])
                raise _row_error(path, row, f"{column} {_show(values.iloc[row])} does not fit in 64 bits",
                                 "Write timestamps as Unix seconds (or milliseconds), or as ISO 8601 dates")
            fractional = (numbers != np.floor(numbers)).to_numpy()
            if fractional.any():
                row = int(np.flatnonzero(fractional)[0])
                raise _row_error(path, row, f"{column} {_show(values.iloc[row])} is not an integer", "Write timestamps as integers (e.g. Unix seconds) or ISO 8601 dates")
            return numbers.to_numpy().astype(np.int64)
        if numbers.notna().any():  # some integers, some not
            row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
            if pd.isna(pd.to_datetime(pd.Series([values.iloc[row]]), utc=True, errors="coerce", format="ISO8601").iloc[0]):
                raise _row_error(path, row, f"{column} {_show(values.iloc[row])} is neither an integer nor an ISO 8601 date", same_way)
            number_row = int(np.flatnonzero(numbers.notna().to_numpy())[0])
            raise _row_error(
                path, row, f"{column} {_show(values.iloc[row])} is an ISO 8601 date, but {_where(path, number_row)} has "
                f"the integer {column} {_show(values.iloc[number_row])}", same_way,
            )
        dates = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        bad = dates.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise _row_error(path, row, f"{column} {_show(values.iloc[row])} is neither an integer nor an ISO 8601 date", same_way)
    missing = dates.isna().to_numpy()
    if missing.any():
        raise _row_error(path, int(np.flatnonzero(missing)[0]), f"{column} is empty", f"Give every row a {column}")
    return ((dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy().astype(np.int64)


def _check_unique(ids: np.ndarray, path: Path, column: str) -> None:
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise _row_error(path, row, f"{column} {ids[row]!r} appears twice", f"Keep one row per {column}")


def _show(value: object) -> str:
    """A cell value for a message: strings quoted, numbers plain (no numpy reprs)."""
    return repr(value) if isinstance(value, str) else str(value)


def _find(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{s}" for s in SUFFIXES if (folder / f"{stem}{s}").is_file()), None)
