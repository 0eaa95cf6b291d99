"""The ReDial movie catalogue: every movie id with its title, year and (where the CFCRS movie KG has them) genres,
directors and actors.

``movies_with_mentions.csv`` (``movieId,movieName,nbMentions``) lists the ReDial movies; ``kg_cfcrs/id2info.json`` maps
ReDial movie ids to ``{"name", "genre": [...], "director": [...], "star": [...], ...}`` for the movies the CFCRS
preprocessing linked to IMDb. Titles end with the year in brackets (``"The Shining  (1980)"``); we split it off as
``datePublished`` and collapse repeated spaces. ``kg_cfcrs/kg.json`` (entity-id triples with relations genre, star,
director, writer) is read by :func:`movie_kg_triples` for the KG-embedding baselines.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ffmrec.data.textfile import file_error, read_text
from ffmrec.errors import DataError

_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Movie:
    movie_id: str  # the ReDial movie id, e.g. "111776"
    name: str  # the title without its year, e.g. "Super Troopers"
    year: str  # "" when the title carries none
    genres: tuple[str, ...] = ()
    directors: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    mentions: int = 0  # nbMentions in movies_with_mentions.csv

    @property
    def title(self) -> str:
        """``"Name (Year)"``: the one form completions and the evaluation use."""
        return f"{self.name} ({self.year})" if self.year else self.name


def split_title(title: str) -> tuple[str, str]:
    """``("Super Troopers", "2001")`` from ``"Super Troopers  (2001)"`` (spaces collapsed; year ``""`` if none)."""
    title = " ".join(str(title).split())
    match = _YEAR.match(title)
    return (match.group(1).strip(), match.group(2)) if match else (title, "")


class MovieCatalog:
    """Movies by ReDial id, in a fixed order (ascending numeric id): ``catalog.ids[i]`` is row ``i`` of any score
    vector over the catalogue."""

    def __init__(self, movies: list[Movie]):
        self.movies = {m.movie_id: m for m in sorted(movies, key=lambda m: int(m.movie_id))}
        self.ids = list(self.movies)
        self.index = {movie_id: i for i, movie_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, movie_id: str) -> bool:
        return movie_id in self.movies

    def __getitem__(self, movie_id: str) -> Movie:
        try:
            return self.movies[movie_id]
        except KeyError:
            raise DataError(f"movie id {movie_id!r} is not in the ReDial movie catalogue "
                            f"({len(self)} movies): use a ReDial movie id such as {self.ids[0]!r}.") from None

    def text(self, movie_id: str) -> str:
        """The movie as one line for a text encoder: ``"Title (Year). Genres: a, b. Director: x. Stars: y, z."``."""
        m = self[movie_id]
        parts = [m.title]
        if m.genres:
            parts.append("Genres: " + ", ".join(m.genres))
        if m.directors:
            parts.append("Director: " + ", ".join(m.directors))
        if m.actors:
            parts.append("Stars: " + ", ".join(m.actors))
        return ". ".join(parts) + "."


def read_movie_catalog(folder: Path) -> MovieCatalog:
    """The catalogue of a staged ReDial folder (``movies_with_mentions.csv``; genres, directors and actors from
    ``kg_cfcrs/id2info.json`` when that file is there)."""
    folder = Path(folder)
    path = folder / "movies_with_mentions.csv"
    rows = list(csv.DictReader(read_text(path).splitlines()))
    if not rows or not {"movieId", "movieName"} <= set(rows[0]):
        raise file_error(path, "has no movieId,movieName header", "Use ReDial's movies_with_mentions.csv")
    info_path = folder / "kg_cfcrs" / "id2info.json"
    info = json.loads(read_text(info_path)) if info_path.is_file() else {}
    movies = []
    for number, row in enumerate(rows, start=2):
        movie_id = (row["movieId"] or "").strip()
        if not movie_id.isdigit():
            raise DataError(f"{path}, line {number}: movieId {movie_id!r} is not a number. Use ReDial's movie list.")
        name, year = split_title(row["movieName"] or "")
        extra = info.get(movie_id, {})
        mentions = (row.get("nbMentions") or "0").strip()
        movies.append(Movie(movie_id, name, year, tuple(extra.get("genre", ())), tuple(extra.get("director", ())),
                            tuple(extra.get("star", ())), int(mentions) if mentions.isdigit() else 0))
    return MovieCatalog(movies)


def movie_kg_triples(catalog: MovieCatalog) -> list[tuple[str, str, str]]:
    """``(movie_id, relation, attribute)`` triples of the CFCRS movie KG for the catalogue's movies: relations
    ``genre``, ``director`` and ``actor``, attributes as ``"genre:drama"`` / ``"person:Name"`` (sorted, deduplicated)."""
    triples = set()
    for movie_id in catalog.ids:
        m = catalog[movie_id]
        triples.update((movie_id, "genre", f"genre:{g}") for g in m.genres)
        triples.update((movie_id, "director", f"person:{p}") for p in m.directors)
        triples.update((movie_id, "actor", f"person:{p}") for p in m.actors)
    return sorted(triples)
