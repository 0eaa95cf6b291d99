"""Set-based recommendation metrics as FedTREK-LM (arXiv 2603.13264) defines them, computed honestly.

Per query, a policy outputs a ranked list of recommendations (for a generative model: the bulleted list it wrote,
parsed and resolved to catalogue ids) and is compared with the query's set of relevant movies:

* micro precision, recall and F1 over all queries: ``P = sum(hits) / sum(predicted)``, ``R = sum(hits) /
  sum(relevant)``, ``F1 = 2PR / (P + R)`` (:func:`ffmrec.eval.metrics.micro_precision_recall_f1`), where ``predicted``
  is the length of the set the policy chose to output (every query owes at least one);
* MRR: the mean over queries of ``1 / rank`` of the first relevant item of the ranked list (0 if none);
* Hits@K: the share of queries with a relevant item among the first K.

Unlike the reference code: an unparseable output scores 0 and stays in every denominator (it owes one prediction,
its relevant items count for recall, its reciprocal rank and hits are 0); titles resolve to ids by *exact* match after
normalization (case, Unicode form, spacing), never by substring; a duplicate recommendation is removed (it can
neither hit twice nor push other items down); an unresolvable title stays in the list as a miss.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence

import numpy as np

from ffmrec.eval.metrics import micro_precision_recall_f1

HITS_AT = (1, 3, 10)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.+?)\s*$")


def normalize_title(title: str) -> str:
    """The comparison form of a title: NFKC, case-folded, one space between words, ``" ("`` before a year, no
    surrounding quotes or trailing period. ``"the  SHINING(1980)."`` -> ``"the shining (1980)"``."""
    text = unicodedata.normalize("NFKC", str(title)).casefold()
    text = re.sub(r"\s*\(\s*", " (", text)
    text = re.sub(r"\s*\)", ")", text)
    text = " ".join(text.split()).strip().strip("\"'*").rstrip(".").strip()
    return text


def parse_bulleted(text: str) -> list[str] | None:
    """The items of a bulleted (``-``, ``*``, ``•``) or numbered list in ``text``, in order; None when the text holds
    no list item (unparseable)."""
    items = [m.group(1) for line in str(text).splitlines() if (m := _BULLET.match(line))]
    return items or None


class TitleIndex:
    """Exact lookup of normalized ``"Title (Year)"`` titles to movie ids (a title shared by several movies resolves to
    the smallest id, deterministically)."""

    def __init__(self, titles: Iterable[tuple[str, str]]):
        self.ids: dict[str, str] = {}
        for movie_id, title in sorted(titles, key=lambda t: int(t[0]) if str(t[0]).isdigit() else t[0]):
            self.ids.setdefault(normalize_title(title), movie_id)

    def resolve(self, titles: Sequence[str]) -> list[str | None]:
        """Ids of ``titles`` in order, duplicates removed (by id; unresolved titles by their normalized text), None
        for a title that matches no movie exactly."""
        out: list[str | None] = []
        seen: set[str] = set()
        for title in titles:
            key = normalize_title(title)
            movie_id = self.ids.get(key)
            token = movie_id if movie_id is not None else "?" + key
            if token not in seen:
                seen.add(token)
                out.append(movie_id)
        return out


def dedupe(items: Sequence) -> list:
    """``items`` without repeats, first occurrence kept."""
    seen: set = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def reciprocal_rank(ranked: Sequence | None, relevant: Collection) -> float:
    """``1 / rank`` of the first relevant item of ``ranked`` (duplicates removed), 0 when none (or unparseable)."""
    for rank, item in enumerate(dedupe(ranked or []), start=1):
        if item is not None and item in relevant:
            return 1.0 / rank
    return 0.0


def hit_at(ranked: Sequence | None, relevant: Collection, k: int) -> float:
    """1.0 if a relevant item is among the first ``k`` distinct items of ``ranked``, else 0.0."""
    return float(any(item is not None and item in relevant for item in dedupe(ranked or [])[:k]))


def set_counts(recommended: Sequence | None, relevant: Collection) -> tuple[int, int, int]:
    """``(hits, predicted, relevant)`` of one query's output set: hits among the distinct recommendations, their
    number (at least 1: an empty or unparseable output owes one prediction) and the relevant set's size."""
    items = dedupe(recommended or [])
    hits = sum(1 for x in items if x is not None and x in relevant)
    return hits, max(len(items), 1), len(relevant)


def query_columns(outputs: Sequence[Sequence | None], ranked: Sequence[Sequence | None],
                  relevant: Sequence[Collection], ks: Sequence[int] = HITS_AT) -> dict[str, np.ndarray]:
    """Per-query columns: ``outputs[q]`` is the set the policy output for P/R/F1, ``ranked[q]`` its ranked list for
    MRR and Hits@K (None = unparseable), ``relevant[q]`` the relevant ids."""
    counts = np.array([set_counts(o, r) for o, r in zip(outputs, relevant)], dtype=np.int64).reshape(-1, 3)
    cols = {"hits": counts[:, 0], "predicted": counts[:, 1], "relevant": counts[:, 2],
            "rr": np.array([reciprocal_rank(x, r) for x, r in zip(ranked, relevant)], dtype=np.float64)}
    for k in ks:
        cols[f"hit@{k}"] = np.array([hit_at(x, r, k) for x, r in zip(ranked, relevant)], dtype=np.float64)
    return cols


def set_metrics(columns: dict[str, np.ndarray], ks: Sequence[int] = HITS_AT) -> dict[str, float]:
    """``precision``, ``recall``, ``F1`` (micro), ``MRR`` and ``Hits@K`` from :func:`query_columns`' columns."""
    p, r, f1 = micro_precision_recall_f1(columns["hits"], columns["predicted"], columns["relevant"])
    n = len(columns["rr"])
    out = {"precision": p, "recall": r, "F1": f1, "MRR": float(np.mean(columns["rr"])) if n else 0.0}
    for k in ks:
        out[f"Hits@{k}"] = float(np.mean(columns[f"hit@{k}"])) if n else 0.0
    return out
