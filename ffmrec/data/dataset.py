"""The processed interaction data every ffmrec model, client and evaluator reads.

All users' chronological item sequences live in one flat ``items`` array, cut by ``offsets`` (CSR layout): user ``u``'s
sequence is ``items[offsets[u]:offsets[u + 1]]``. Users are dense ids ``0..num_users-1``; items are dense ids
``1..num_items`` and ``0`` is reserved for padding, so it never appears in ``items``. ``user_ids``/``item_ids`` map the
dense ids back to the ids in the source files (as strings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True, eq=False)
class Dataset:
    """Per-user chronological item sequences plus optional side information, all indexed by dense ids."""

    name: str
    items: np.ndarray  # (num_interactions,) int64, dense item ids 1..num_items, users' sequences concatenated
    offsets: np.ndarray  # (num_users + 1,) int64, user u's sequence = items[offsets[u]:offsets[u + 1]]
    user_ids: np.ndarray  # (num_users,) str, original user id of each dense user id
    item_ids: np.ndarray  # (num_items + 1,) str, original item id of each dense item id; item_ids[0] == "" (padding)
    timestamps: np.ndarray | None = None  # (num_interactions,) int64 aligned with items; None when the source is pre-ordered
    ratings: np.ndarray | None = None  # (num_interactions,) float32 aligned with items, where the source has ratings
    item_text: np.ndarray | None = None  # (num_items + 1,) str, e.g. "Title | Genre1, Genre2"; item_text[0] == ""
    user_attributes: pd.DataFrame | None = None  # index = dense user id 0..num_users-1; e.g. gender, age, occupation

    def __post_init__(self) -> None:
        """Check the layout invariants (cheap: O(interactions)); a violation is a bug in the code that built it."""
        if self.items.dtype != np.int64 or self.offsets.dtype != np.int64:
            raise ValueError(f"Dataset {self.name!r}: items and offsets must be int64, got {self.items.dtype}/{self.offsets.dtype}")
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.items):
            raise ValueError(f"Dataset {self.name!r}: offsets must start at 0 and end at len(items)={len(self.items)}")
        if np.any(np.diff(self.offsets) < 0):
            raise ValueError(f"Dataset {self.name!r}: offsets must be non-decreasing")
        if len(self.user_ids) != self.num_users:
            raise ValueError(f"Dataset {self.name!r}: {len(self.user_ids)} user_ids for {self.num_users} users")
        if len(self.item_ids) < 1 or self.item_ids[0] != "":
            raise ValueError(f"Dataset {self.name!r}: item_ids[0] must be '' (the padding item)")
        if len(self.items) and (self.items.min() < 1 or self.items.max() > self.num_items):
            raise ValueError(f"Dataset {self.name!r}: item ids must lie in 1..{self.num_items}")
        for field_name, per in (("timestamps", "items"), ("ratings", "items"), ("item_text", "item_ids")):
            value = getattr(self, field_name)
            if value is not None and len(value) != len(getattr(self, per)):
                raise ValueError(f"Dataset {self.name!r}: {field_name} has {len(value)} entries, {per} has {len(getattr(self, per))}")
        if self.user_attributes is not None and len(self.user_attributes) != self.num_users:
            raise ValueError(f"Dataset {self.name!r}: user_attributes has {len(self.user_attributes)} rows for {self.num_users} users")

    @classmethod
    def from_sequences(cls, sequences: list[list[int]] | list[np.ndarray], name: str = "toy", num_items: int | None = None) -> Dataset:
        """A dataset from dense item sequences (ids 1..num_items), e.g. for tests; original ids are the dense ids."""
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if len(sequences) else np.zeros(0, np.int64)
        n_items = int(num_items if num_items is not None else (items.max() if len(items) else 0))
        return cls(
            name=name,
            items=items.astype(np.int64),
            offsets=offsets,
            user_ids=np.arange(len(sequences)).astype(str),
            item_ids=np.array([""] + [str(i) for i in range(1, n_items + 1)]),
        )

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_items(self) -> int:
        """Real items, not counting the padding id 0."""
        return len(self.item_ids) - 1

    @property
    def num_interactions(self) -> int:
        return len(self.items)

    def sequence(self, user: int) -> np.ndarray:
        """User ``user``'s items in chronological order (a view into ``items``)."""
        return self.items[self.offsets[user]:self.offsets[user + 1]]

    def sequences(self) -> list[np.ndarray]:
        """Every user's chronological items (views into ``items``), index = dense user id."""
        return np.split(self.items, self.offsets[1:-1])

    def sequence_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def stats(self) -> dict:
        """Size and shape of the data, as printed by ``ffmrec datasets``."""
        lengths = self.sequence_lengths()
        cells = self.num_users * self.num_items
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "density": self.num_interactions / cells if cells else 0.0,
            "mean_sequence_length": float(lengths.mean()) if len(lengths) else 0.0,
            "median_sequence_length": float(np.median(lengths)) if len(lengths) else 0.0,
            "min_sequence_length": int(lengths.min()) if len(lengths) else 0,
            "max_sequence_length": int(lengths.max()) if len(lengths) else 0,
            "has_timestamps": self.timestamps is not None,
            "has_ratings": self.ratings is not None,
            "has_item_text": self.item_text is not None,
            "has_user_attributes": self.user_attributes is not None,
        }
