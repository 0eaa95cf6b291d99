"""Explanations of a recommendation as a path in the user's PKG and the movie KG: a movie the user liked that shares
an attribute (a director, an actor or a genre, from the catalogue's Movie nodes) with the recommended movie.

``liked --director/actor/genre--> attribute <--same relation-- recommended``. Pure functions of a catalogue (anything
that maps a movie id to a :class:`~ffmrec.data.redial_kg.Movie`), so a hand-built graph tests them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ffmrec.data.redial_kg import Movie

#: relations tried in this order (the most specific link first), with the Movie field that holds them
RELATIONS = (("director", "directors"), ("actor", "actors"), ("genre", "genres"))
NO_LINK = "no link in your graph to a movie you liked; suggested for the conversation so far"


@dataclass(frozen=True)
class KGLink:
    """``liked`` (a movie of the user's PKG) shares ``relation`` ``value`` with ``target`` (the recommendation)."""

    liked: str  # movie id
    relation: str  # "director", "actor" or "genre"
    value: str  # e.g. "Ridley Scott"
    target: str  # movie id


def find_link(liked: Sequence[str], target: str, catalog: Mapping[str, Movie]) -> KGLink | None:
    """The first link from a liked movie to ``target`` through the movie KG: directors before actors before genres
    (a shared genre says least), and within a relation the liked movies in the order given (e.g. most recent first);
    None when ``target`` shares nothing with any of them."""
    goal = catalog[target]
    for relation, attr in RELATIONS:
        wanted = set(getattr(goal, attr))
        if not wanted:
            continue
        for movie_id in liked:
            if movie_id == target:
                continue
            shared = [v for v in getattr(catalog[movie_id], attr) if v in wanted]
            if shared:
                return KGLink(movie_id, relation, shared[0], target)
    return None


def link_words(link: KGLink | None, catalog: Mapping[str, Movie]) -> str:
    """The link in words: ``because you liked Alien (1979), which shares the director Ridley Scott with Gladiator
    (2000)``; :data:`NO_LINK` when there is none."""
    if link is None:
        return NO_LINK
    return (f"because you liked {catalog[link.liked].title}, which shares the {link.relation} {link.value} with "
            f"{catalog[link.target].title}")
