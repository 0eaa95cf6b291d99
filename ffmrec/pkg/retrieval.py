"""Sub-PKG retrieval: the part of a PKG relevant to a request, serialized canonically within a token budget.

Relevance (highest first): movies the request mentions; then the most recently stated (when the PKG is a snapshot of
a history); then movies sharing more genres, directors and actors with the mentioned ones; then stronger relations
(liked/disliked, then seen/notSeen, then suggested); ties by numeric movie id, so the order is deterministic. The sub-PKG is the longest prefix of that order whose canonical serialization
(:func:`ffmrec.pkg.graph.pkg_document` without ``@context``, movies by id) still *fits*; the fit is checked on the
text that will actually be used (the whole prompt, through the caller's ``fits``), by bisection over the prefix length.
If not even the bare Person node fits, :class:`BudgetError` is raised: a budget is never silently exceeded, and a
prompt is never truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ffmrec.data.redial_kg import MovieCatalog
from ffmrec.errors import DataError
from ffmrec.pkg.graph import MOVIE_FIELDS, PKG, PRIORITY, dumps, pkg_document


class BudgetError(DataError):
    """Not even the smallest sub-PKG fits the token budget."""


@dataclass(frozen=True)
class SubPKG:
    pkg: PKG  # the retained part
    text: str  # its canonical compact JSON-LD (prompt form)
    dropped: int  # movies of the PKG left out for the budget


def relevance_order(pkg: PKG, catalog: MovieCatalog, mentioned: Sequence[str]) -> list[str]:
    """The PKG's movie ids, most relevant to a request mentioning ``mentioned`` first (see the module docstring)."""
    wanted = [m for m in mentioned if m in catalog]
    attributes: set[str] = set()
    for m in wanted:
        movie = catalog[m]
        attributes.update(f"g:{g}" for g in movie.genres)
        attributes.update(f"p:{p}" for p in (*movie.directors, *movie.actors))
    mentioned_set = set(wanted)

    def key(movie_id: str):
        movie = catalog[movie_id]
        shared = len(attributes & {f"g:{g}" for g in movie.genres} | attributes & {
            f"p:{p}" for p in (*movie.directors, *movie.actors)})
        return (movie_id not in mentioned_set, -pkg.turns.get(movie_id, -1), -shared, -PRIORITY[pkg.relations[movie_id]],
                int(movie_id))

    return sorted(pkg.relations, key=key)


def retrieve(pkg: PKG, catalog: MovieCatalog, mentioned: Sequence[str], fits: Callable[[str], bool],
             fields: Iterable[str] = MOVIE_FIELDS) -> SubPKG:
    """The largest relevance prefix of ``pkg`` whose serialization ``fits`` (``fits(text)`` must be monotone: a longer
    sub-PKG never fits where a shorter one does not). BudgetError if the empty sub-PKG does not fit."""
    fields = tuple(fields)
    order = relevance_order(pkg, catalog, mentioned)

    def text(k: int) -> str:
        return dumps(pkg_document(pkg.only(order[:k]), catalog, fields, with_context=False))

    if not fits(text(0)):
        raise BudgetError(f"the token budget cannot hold even the empty PKG of user {pkg.user_id} "
                          f"({text(0)!r}): raise the prompt's max_tokens or shorten its fixed parts.")
    lo, hi = 0, len(order)  # fits(text(lo)) holds
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text(mid)):
            lo = mid
        else:
            hi = mid - 1
    return SubPKG(pkg.only(order[:lo]), text(lo), len(order) - lo)


def retrieve_within(pkg: PKG, catalog: MovieCatalog, mentioned: Sequence[str], budget: int,
                    count_tokens: Callable[[str], int], fields: Iterable[str] = MOVIE_FIELDS) -> SubPKG:
    """:func:`retrieve` with a budget of ``budget`` tokens for the sub-PKG's own text (asserted on the result)."""
    if budget < 1:
        raise BudgetError(f"sub-PKG token budget={budget} must be >= 1: raise it.")
    sub = retrieve(pkg, catalog, mentioned, lambda t: count_tokens(t) <= budget, fields)
    assert count_tokens(sub.text) <= budget, "sub-PKG exceeds its token budget"
    return sub
