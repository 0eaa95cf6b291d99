"""MovieLens 1M and 100K (GroupLens), with ratings, timestamps, user attributes and movie text.

Layout under the data directory (as in the official zips)::

    ml-1m/ratings.dat   UserID::MovieID::Rating::Timestamp      (or ratings_subset_users_1-2999.dat, see below)
    ml-1m/users.dat     UserID::Gender::Age::Occupation::Zip-code
    ml-1m/movies.dat    MovieID::Title::Genres   (Latin-1; genres separated by "|")
    ml-100k/u.data      user id <tab> item id <tab> rating <tab> timestamp
    ml-100k/u.user      user id|age|gender|occupation|zip code   (occupation by name, see u.occupation)
    ml-100k/u.item      movie id|title|release date|video release date|IMDb URL|19 genre flags   (Latin-1)
    ml-100k/u.genre     genre|index
    ml-100k/u.occupation   one occupation name per line

Item text is ``"<title> | <genre>, <genre>"``, e.g. ``"Toy Story (1995) | Animation, Children's, Comedy"``. User
attributes are ``gender`` ("M"/"F"), ``age`` (ML-1M: the age-group code 1/18/25/35/45/50/56; ML-100K: years),
``occupation`` (integer code; ML-100K codes are line positions in ``u.occupation``, 0-based) and ``zip`` (str).

Without the full ML-1M ``ratings.dat``, ``ratings_subset_users_1-2999.dat`` (an exact prefix of it: users 1..2999,
487,650 ratings) is read instead, with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ffmrec.data.download import REMOTE_FILES, ensure_files
from ffmrec.data.preprocess import RawInteractions
from ffmrec.data.source import Source, SourceStatus
from ffmrec.data.textfile import line_error, parse_int, parse_int_table, read_text, split_lines

ML_1M_SUBSET = "ratings_subset_users_1-2999.dat"


class MovieLens1M(Source):
    name = "ml-1m"
    description = "MovieLens 1M: 6,040 users, 3,706 movies, 1,000,209 ratings 1-5 with timestamps; gender/age/occupation; titles+genres"

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / "ml-1m"

    def ratings_file(self) -> Path:
        """``ratings.dat``, or the staged partial file when only that is there."""
        full, subset = self.folder / "ratings.dat", self.folder / ML_1M_SUBSET
        return subset if not full.is_file() and subset.is_file() else full

    def input_files(self) -> list[Path]:
        ratings, users, movies = self.ratings_file(), self.folder / "users.dat", self.folder / "movies.dat"
        if ratings.name == ML_1M_SUBSET:
            warnings.warn(
                f"ml-1m: {self.folder / 'ratings.dat'} is missing, so the partial {ratings} is used (users 1..2999, 487,650 of "
                f"1,000,209 ratings); put the full ratings.dat from {REMOTE_FILES['ml-1m/ratings.dat'].url} there for all users.",
                stacklevel=3,
            )
        ensure_files([(p, REMOTE_FILES[f"ml-1m/{p.name}"]) for p in (ratings, users, movies) if p.name != ML_1M_SUBSET])
        return [ratings, users, movies]

    def read(self) -> RawInteractions:
        ratings_path, users_path, movies_path = self.ratings_file(), self.folder / "users.dat", self.folder / "movies.dat"
        table = parse_int_table(read_text(ratings_path), ratings_path, "::", "UserID::MovieID::Rating::Timestamp")
        attributes = read_ml1m_users(users_path)
        texts = read_ml1m_movies(movies_path)
        _check_known(table[:, 0], attributes.index, ratings_path, users_path, "user")
        _check_known(table[:, 1], pd.Index(list(texts)), ratings_path, movies_path, "movie")
        return RawInteractions(
            name=self.name, users=table[:, 0], items=table[:, 1], timestamps=table[:, 3], ratings=table[:, 2].astype(np.float32),
            item_text=texts, user_attributes=attributes,
        )

    def status(self) -> SourceStatus:
        missing = [str(self.folder / n) for n in ("users.dat", "movies.dat") if not (self.folder / n).is_file()]
        partial = []
        ratings = self.ratings_file()
        if not ratings.is_file():
            missing.insert(0, str(ratings))
        elif ratings.name == ML_1M_SUBSET:
            partial.append(f"{self.folder / 'ratings.dat'} missing: using {ML_1M_SUBSET} (users 1..2999, 487,650 of 1,000,209 ratings)")
        return SourceStatus(self.name, self.description, self.folder, not missing, missing, partial)


class MovieLens100K(Source):
    name = "ml-100k"
    description = "MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings 1-5 with timestamps; age/gender/occupation; titles+genres"
    FILES = ("u.data", "u.user", "u.item", "u.genre", "u.occupation")

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / "ml-100k"

    def input_files(self) -> list[Path]:
        paths = [self.folder / n for n in self.FILES]
        ensure_files([(p, REMOTE_FILES[f"ml-100k/{p.name}"]) for p in paths])
        return paths

    def read(self) -> RawInteractions:
        data_path, users_path, items_path = self.folder / "u.data", self.folder / "u.user", self.folder / "u.item"
        table = parse_int_table(read_text(data_path), data_path, "\t", "user id\titem id\trating\ttimestamp")
        occupations = [line.strip() for line in read_text(self.folder / "u.occupation").split("\n") if line.strip()]
        attributes = read_ml100k_users(users_path, occupations)
        texts = read_ml100k_items(items_path, read_ml100k_genres(self.folder / "u.genre"))
        _check_known(table[:, 0], attributes.index, data_path, users_path, "user")
        _check_known(table[:, 1], pd.Index(list(texts)), data_path, items_path, "item")
        return RawInteractions(
            name=self.name, users=table[:, 0], items=table[:, 1], timestamps=table[:, 3], ratings=table[:, 2].astype(np.float32),
            item_text=texts, user_attributes=attributes,
        )

    def status(self) -> SourceStatus:
        missing = [str(self.folder / n) for n in self.FILES if not (self.folder / n).is_file()]
        return SourceStatus(self.name, self.description, self.folder, not missing, missing)


def read_ml1m_users(path: Path) -> pd.DataFrame:
    """``users.dat`` as a frame indexed by str user id with columns gender, age (code), occupation (code), zip."""
    layout = "UserID::Gender::Age::Occupation::Zip-code"
    ids, genders, ages, occupations, zips = [], [], [], [], []
    for number, (uid, gender, age, occupation, zipcode) in split_lines(read_text(path), path, "::", layout):
        ids.append(str(parse_int(uid, path, number, "UserID", layout)))
        if gender not in ("M", "F"):
            raise line_error(path, number, f"Gender is {gender!r}, expected 'M' or 'F' ({layout})", "Fix the line, or download the file again")
        genders.append(gender)
        ages.append(parse_int(age, path, number, "Age", layout))
        occupations.append(parse_int(occupation, path, number, "Occupation", layout))
        zips.append(zipcode.strip())
    return _attribute_frame(path, ids, {"gender": genders, "age": ages, "occupation": occupations, "zip": zips})


def read_ml1m_movies(path: Path) -> dict[str, str]:
    """``movies.dat`` (Latin-1) as ``{str movie id: "Title | Genre, Genre"}``."""
    layout = "MovieID::Title::Genres"
    texts = {}
    for number, (mid, title, genres) in split_lines(read_text(path, encoding="latin-1"), path, "::", layout):
        texts[str(parse_int(mid, path, number, "MovieID", layout))] = _movie_text(title, [g for g in genres.strip().split("|") if g])
    return texts


def read_ml100k_genres(path: Path) -> list[str]:
    """``u.genre`` (``name|index``) as the list of genre names in flag order."""
    layout = "genre|index"
    genres: dict[int, str] = {}
    for number, (name, index) in split_lines(read_text(path, encoding="latin-1"), path, "|", layout):
        genres[parse_int(index, path, number, "index", layout)] = name
    if sorted(genres) != list(range(len(genres))):
        raise line_error(path, 1, f"genre indexes are {sorted(genres)}, expected 0..{len(genres) - 1}", "Download the file again")
    return [genres[i] for i in range(len(genres))]


def read_ml100k_users(path: Path, occupations: list[str]) -> pd.DataFrame:
    """``u.user`` as a frame indexed by str user id with columns gender, age (years), occupation (code), zip."""
    layout = "user id|age|gender|occupation|zip code"
    codes = {name: code for code, name in enumerate(occupations)}
    ids, genders, ages, jobs, zips = [], [], [], [], []
    for number, (uid, age, gender, occupation, zipcode) in split_lines(read_text(path, encoding="latin-1"), path, "|", layout):
        ids.append(str(parse_int(uid, path, number, "user id", layout)))
        ages.append(parse_int(age, path, number, "age", layout))
        if gender not in ("M", "F"):
            raise line_error(path, number, f"gender is {gender!r}, expected 'M' or 'F' ({layout})", "Fix the line, or download the file again")
        genders.append(gender)
        if occupation not in codes:
            raise line_error(path, number, f"occupation {occupation!r} is not listed in u.occupation", "Use the u.occupation file of the same download")
        jobs.append(codes[occupation])
        zips.append(zipcode.strip())
    return _attribute_frame(path, ids, {"gender": genders, "age": ages, "occupation": jobs, "zip": zips})


def read_ml100k_items(path: Path, genres: list[str]) -> dict[str, str]:
    """``u.item`` (Latin-1) as ``{str movie id: "Title | Genre, Genre"}``."""
    layout = "|".join(["movie id", "movie title", "release date", "video release date", "IMDb URL", *genres])
    texts = {}
    for number, fields in split_lines(read_text(path, encoding="latin-1"), path, "|", layout):
        flags = fields[5:]
        if any(f not in ("0", "1") for f in flags):
            raise line_error(path, number, "genre flags must be 0 or 1", "Fix the line, or download the file again")
        texts[str(parse_int(fields[0], path, number, "movie id", layout))] = _movie_text(fields[1], [g for g, f in zip(genres, flags) if f == "1"])
    return texts


def _movie_text(title: str, genres: list[str]) -> str:
    return f"{title} | {', '.join(genres)}" if genres else title


def _attribute_frame(path: Path, ids: list[str], columns: dict[str, list]) -> pd.DataFrame:
    frame = pd.DataFrame(columns, index=pd.Index(ids, dtype=object, name="user"))
    if frame.index.has_duplicates:
        row = int(np.flatnonzero(frame.index.duplicated())[0])
        raise line_error(path, row + 1, f"user {ids[row]} is listed twice", "Keep one line per user")
    for column in ("age", "occupation"):
        frame[column] = frame[column].astype(np.int64)
    return frame


def _check_known(ids: np.ndarray, known: pd.Index, path: Path, listing: Path, what: str) -> None:
    """DataError if some id in ``path`` is not listed in ``listing`` (files from different downloads)."""
    unknown = np.setdiff1d(np.unique(ids), known.astype(np.int64).to_numpy())
    if len(unknown):
        line = int(np.flatnonzero(ids == unknown[0])[0]) + 1
        raise line_error(
            path, line, f"{what} {unknown[0]} is not in {listing} ({len(unknown)} unknown {what}s)",
            f"Use {listing.name} from the same download as {path.name}",
        )
