"""Sensitive traits of each client: what a curious server should not learn from what the device shares.

"Learn to Preserve Personality: Federated Foundation Models in Recommendations" (arXiv:2506.11563) names a user's
personality, their sensitive traits, as what a federated recommender must keep on the device. ffmrec reads them from
the dataset's user attributes (MovieLens ``users.dat`` / ``u.user``, or a generic ``user_attributes.*`` file) and uses
them only to *measure* leakage (the attack suite's labels) and group fairness; neither the server nor the model ever
reads them.

Three traits, each a categorical label per dense user id (``-1`` where unknown):

- ``gender``: 0 = F, 1 = M (binary);
- ``age``: the age group. ML-1M already stores the group code (1, 18, 25, 35, 45, 50, 56); ages in years (ML-100K, a
  generic file) are binned to the same groups (under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+);
- ``occupation``: the occupation code (or, for a generic file, the category of its string value).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ffmrec.errors import DataError

TRAITS = ("gender", "age", "occupation")
#: The lower bounds of ML-1M's age groups; ``users.dat`` stores the bound itself as the group code.
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)


@dataclass(frozen=True)
class Traits:
    """Per-user trait labels: ``labels[name]`` is an int64 array over dense user ids, ``-1`` where unknown;
    ``classes[name]`` names each label value."""

    labels: dict[str, np.ndarray]
    classes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(next(iter(self.labels.values()))) if self.labels else 0

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    def known(self, name: str) -> np.ndarray:
        """Dense ids of the users whose ``name`` is known."""
        return np.flatnonzero(self.labels[name] >= 0)

    def majority_rate(self, name: str, users: np.ndarray | None = None) -> float:
        """Share of the most common class among ``users`` (default: every user whose trait is known)."""
        y = self.labels[name] if users is None else self.labels[name][users]
        y = y[y >= 0]
        return float(np.bincount(y).max() / len(y)) if len(y) else float("nan")


def age_group(age: np.ndarray) -> np.ndarray:
    """Index (0..6) of the ML-1M age group of each age: a group code (1, 18, ...) or an age in years both map to the
    group whose lower bound is the largest one <= the value (ages under 18 to group 0)."""
    age = np.asarray(age, dtype=np.float64)
    return np.searchsorted(np.asarray(AGE_GROUPS, dtype=np.float64), age, side="right").clip(min=1) - 1


def _categorical(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    known = values.notna().to_numpy()
    names = sorted({str(v) for v in values[known]}, key=lambda s: (len(s), s))
    code = {name: i for i, name in enumerate(names)}
    out = np.full(len(values), -1, dtype=np.int64)
    out[known] = [code[str(v)] for v in values[known]]
    return out, names


def traits_from_attributes(attributes: pd.DataFrame | None, dataset_name: str = "dataset") -> Traits:
    """The traits a user-attribute frame (index = dense user id) holds: any of gender, age, occupation.

    Raises :class:`~ffmrec.errors.DataError` when the frame is missing or holds none of them.
    """
    if attributes is None:
        raise DataError(f"{dataset_name} has no user attributes, so there are no traits to attack: use ml-1m, ml-100k "
                        "or a generic dataset with a user_attributes.csv|parquet (columns user, gender, age, occupation).")
    labels: dict[str, np.ndarray] = {}
    classes: dict[str, list[str]] = {}
    columns = {str(c).lower(): c for c in attributes.columns}
    if "gender" in columns:
        g = attributes[columns["gender"]].astype(object)
        text = g.where(g.notna(), None).map(lambda v: None if v is None else str(v).strip().upper()[:1])
        labels["gender"] = np.where(text == "F", 0, np.where(text == "M", 1, -1)).astype(np.int64)
        classes["gender"] = ["F", "M"]
    if "age" in columns:
        a = pd.to_numeric(attributes[columns["age"]], errors="coerce")
        known = a.notna().to_numpy()
        out = np.full(len(a), -1, dtype=np.int64)
        out[known] = age_group(a.to_numpy()[known])
        labels["age"] = out
        bounds = list(AGE_GROUPS) + [None]
        classes["age"] = [f"{lo}-{hi - 1}" if hi else f"{lo}+" for lo, hi in zip(bounds[:-1], bounds[1:])]
    if "occupation" in columns:
        labels["occupation"], classes["occupation"] = _categorical(attributes[columns["occupation"]])
    if not labels:
        raise DataError(f"{dataset_name}'s user attributes have none of the traits {', '.join(TRAITS)} (columns: "
                        f"{', '.join(map(str, attributes.columns))}): add a gender, age or occupation column.")
    return Traits(labels, classes)


def load_traits(dataset) -> Traits:
    """The traits of a loaded :class:`~ffmrec.data.dataset.Dataset` (its ``user_attributes``, by dense user id)."""
    attributes = dataset.user_attributes
    if attributes is not None:
        attributes = attributes.reindex(range(dataset.num_users)) if not attributes.index.equals(
            pd.RangeIndex(dataset.num_users)) else attributes
    return traits_from_attributes(attributes, repr(dataset.name))
