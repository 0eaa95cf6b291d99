"""From raw interactions (as read from a source's files) to a :class:`~ffmrec.data.dataset.Dataset`.

The steps, in order:

1. ``min_rating``: keep interactions rated at least ``min_rating``.
2. Core filter, repeated until nothing changes: drop users with fewer than ``max(k_core, min_sequence_length)``
   interactions and items with fewer than ``k_core`` interactions (the iterative k-core of the user-item graph, where a
   repeated (user, item) pair counts every time). With ``k_core`` unset only the user threshold applies. Doing both in
   one loop keeps the guarantee "every user and every item has at least k interactions" true after the user filter.
3. Dense ids in *natural order* of the original ids: numeric order when every id is an integer ("2" before "10"),
   else lexicographic order. Users get ``0..num_users-1``, items ``1..num_items`` (``0`` is padding). So a source whose
   ids are already ``1..N`` (the S3-Rec Amazon files) keeps its ids when no filter removes anything.
4. Chronological order per user: a stable sort by timestamp, so interactions with equal timestamps keep file order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from ffmrec.data.dataset import Dataset
from ffmrec.errors import ConfigError


@dataclass(frozen=True)
class DataOptions:
    """How raw interactions are filtered before training; the same fields feed the CLI and YAML (``data.*``)."""

    min_rating: float | None = field(
        default=None, metadata={"help": "Keep only interactions rated at least this (sources with ratings only); unset keeps all."}
    )
    k_core: int | None = field(
        default=None,
        metadata={"help": "Iterative k-core: repeatedly drop users and items with fewer than k interactions; unset disables it."},
    )
    min_sequence_length: int = field(
        default=3, metadata={"help": "Drop users with fewer interactions than this after filtering (leave-one-out needs 3)."}
    )
    cache: bool = field(default=True, metadata={"help": "Cache the processed dataset in $FFMREC_CACHE_DIR (default ~/.cache/ffmrec)."})
    user_column: str = field(default="user", metadata={"help": "Your own files: the column holding user ids (e.g. user_id)."})
    item_column: str = field(default="item", metadata={"help": "Your own files: the column holding item ids (e.g. item_id, asin)."})
    timestamp_column: str = field(default="timestamp", metadata={"help": "Your own files: the column holding timestamps (integers or ISO 8601 dates)."})
    rating_column: str = field(default="rating", metadata={"help": "Your own files: the optional column holding ratings (for data.min_rating)."})
    separator: str | None = field(default=None, metadata={"help": "Your own CSV files: the field separator (',', 'tab', ';' or '|'); null detects it from the header line."})
    ordered: bool = field(default=False, metadata={"help": "Your own files: the rows already give each user's chronological order; no timestamp column is needed (one that is there only orders the rows, e.g. a position) and the dataset records no timestamps."})

    def __post_init__(self) -> None:
        if self.separator in ("tab", "\\t"):
            object.__setattr__(self, "separator", "\t")
        if self.separator is not None and self.separator not in SEPARATORS:
            raise ConfigError(f"data.separator={self.separator!r} is not a separator ffmrec reads: use ',', 'tab', ';' or '|', or null to detect it.")
        for name in SOURCE_FIELDS[:4]:
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"data.{name}={getattr(self, name)!r} must be a column name, e.g. data.{name}={name.split('_')[0]}.")
        if not isinstance(self.ordered, bool):
            raise ConfigError(f"data.ordered={self.ordered!r} must be true or false.")
        if self.min_rating is not None and (isinstance(self.min_rating, bool) or not isinstance(self.min_rating, (int, float))
                                            or not math.isfinite(self.min_rating)):
            raise ConfigError(f"data.min_rating={self.min_rating!r} is not a finite number: set a number such as 4, or leave it unset.")
        if self.k_core is not None and (isinstance(self.k_core, bool) or not isinstance(self.k_core, int) or self.k_core < 1):
            raise ConfigError(f"data.k_core={self.k_core!r} must be an integer >= 1 (5 is common), or unset to disable it.")
        if isinstance(self.min_sequence_length, bool) or not isinstance(self.min_sequence_length, int) or self.min_sequence_length < 1:
            raise ConfigError(f"data.min_sequence_length={self.min_sequence_length!r} must be an integer >= 1 (3 for leave-one-out).")
        if not isinstance(self.cache, bool):
            raise ConfigError(f"data.cache={self.cache!r} must be true or false.")

    def processing_key(self) -> dict:
        """The fields that change the processed data (everything but ``cache``; the file-format fields only when set),
        for cache keys."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "cache" and not (f.name in SOURCE_FIELDS and getattr(self, f.name) == f.default)}

    def changed_source_fields(self) -> list[str]:
        """The file-format options (``data.user_column``, ..., ``data.ordered``) set away from their defaults."""
        return [f.name for f in fields(self) if f.name in SOURCE_FIELDS and getattr(self, f.name) != f.default]


#: DataOptions fields that say how your own files are laid out (see :mod:`ffmrec.data.generic`).
SOURCE_FIELDS = ("user_column", "item_column", "timestamp_column", "rating_column", "separator", "ordered")
SEPARATORS = (",", "\t", ";", "|")


@dataclass(frozen=True, eq=False)
class RawInteractions:
    """Interactions as a source's files give them: one entry per interaction, in file order, with original ids.

    ``users``/``items`` are int64 arrays (ids known to be integers) or arrays of str. ``timestamps`` are int64; for a
    pre-ordered source (``ordered=True``, e.g. S3-Rec files) they are just positions in the file and the Dataset gets
    ``timestamps=None``. ``item_text`` maps ``str(original item id)`` to text; ``user_attributes`` is indexed by
    ``str(original user id)``.
    """

    name: str
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None = None
    ordered: bool = False
    item_text: dict[str, str] | None = None
    user_attributes: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        n = len(self.users)
        if len(self.items) != n or len(self.timestamps) != n or (self.ratings is not None and len(self.ratings) != n):
            raise ValueError(f"RawInteractions {self.name!r}: users, items, timestamps and ratings must have equal lengths")


def build_dataset(raw: RawInteractions, options: DataOptions) -> Dataset:
    """Filter, remap and sort ``raw`` into a Dataset (the steps in the module docstring)."""
    keep = np.ones(len(raw.users), dtype=bool)
    if options.min_rating is not None:
        if raw.ratings is None:
            raise ConfigError(f"data.min_rating={options.min_rating} but {raw.name} has no ratings: leave data.min_rating unset for it.")
        keep &= raw.ratings >= options.min_rating

    user_codes, _ = pd.factorize(raw.users[keep])
    item_codes, _ = pd.factorize(raw.items[keep])
    user_min = max(options.k_core or 1, options.min_sequence_length)
    core = core_mask(user_codes, item_codes, min_user=user_min, min_item=options.k_core or 1)
    keep[keep] = core
    if not keep.any():
        raise ConfigError(
            f"{raw.name}: no interactions are left after filtering (min_rating={options.min_rating}, k_core={options.k_core}, "
            f"min_sequence_length={options.min_sequence_length}): loosen these data options."
        )

    users, user_ids = natural_codes(raw.users[keep])  # (n,) 0..num_users-1
    items, item_ids = natural_codes(raw.items[keep])
    items = items + 1  # 0 is padding
    timestamps = raw.timestamps[keep].astype(np.int64, copy=False)
    order = np.lexsort((timestamps, users))  # stable: equal timestamps keep file order

    counts = np.bincount(users, minlength=len(user_ids))
    item_ids = np.concatenate([np.array([""]), item_ids])
    return Dataset(
        name=raw.name,
        items=items[order].astype(np.int64),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        timestamps=None if raw.ordered else timestamps[order],
        ratings=None if raw.ratings is None else raw.ratings[keep][order].astype(np.float32),
        item_text=_item_text(raw.item_text, item_ids),
        user_attributes=_user_attributes(raw.user_attributes, user_ids),
    )


def core_mask(user_codes: np.ndarray, item_codes: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Interactions in the (min_user, min_item)-core: repeat dropping users/items below their threshold until stable.

    ``user_codes``/``item_codes`` are dense 0-based codes of each interaction; returns a bool mask over interactions.
    """
    keep = np.ones(len(user_codes), dtype=bool)
    num_users = int(user_codes.max()) + 1 if len(user_codes) else 0
    num_items = int(item_codes.max()) + 1 if len(item_codes) else 0
    while True:
        user_counts = np.bincount(user_codes[keep], minlength=num_users)
        item_counts = np.bincount(item_codes[keep], minlength=num_items)
        drop = keep & ((user_counts[user_codes] < min_user) | (item_counts[item_codes] < min_item))
        if not drop.any():
            return keep
        keep &= ~drop


def natural_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense 0-based codes of ``values`` in natural order of the values, and the distinct values as str.

    Natural order: numeric when all values are integers (int dtype, or strings like "7", "-3", "0012"), ties between
    spellings of one number ("7" vs "07") broken lexicographically; otherwise lexicographic.
    """
    codes, uniques = pd.factorize(values, sort=False)
    uniques = np.asarray(uniques)
    if uniques.dtype.kind in "iu":
        order = np.argsort(uniques, kind="stable")
        names = uniques[order].astype(str)
    else:
        names = uniques.astype(str)
        numbers = _as_integers(names)
        order = np.lexsort((names, numbers)) if numbers is not None else np.argsort(names, kind="stable")
        names = names[order]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], names


def _as_integers(names: np.ndarray) -> np.ndarray | None:
    """``names`` as int64 if every one is an integer of at most 15 digits, else None."""
    series = pd.Series(names, dtype=object)
    if len(series) == 0 or not series.str.fullmatch(r"[+-]?\d{1,15}").all():
        return None
    return series.astype(np.int64).to_numpy()


def _item_text(texts: dict[str, str] | None, item_ids: np.ndarray) -> np.ndarray | None:
    if texts is None:
        return None
    return np.array([""] + [texts.get(i, "") for i in item_ids[1:].tolist()], dtype=object)


def _user_attributes(attributes: pd.DataFrame | None, user_ids: np.ndarray) -> pd.DataFrame | None:
    if attributes is None:
        return None
    frame = attributes.reindex(pd.Index(user_ids, dtype=object))
    return frame.reset_index(drop=True)
