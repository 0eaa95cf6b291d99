"""MovieLens 1M / 100K readers: real staged files and bad input in tiny files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ffmrec.data import DataOptions, load_dataset
from ffmrec.data.movielens import read_ml1m_users
from ffmrec.errors import DataError

# ---------------------------------------------------------------- real files


def test_ml1m_staged_subset_counts(ml1m):
    assert (ml1m.num_users, ml1m.num_items, ml1m.num_interactions) == (2999, 3615, 487650)
    assert ml1m.user_ids[0] == "1" and ml1m.user_ids[-1] == "2999"
    assert ml1m.sequence_lengths().min() >= 20
    assert ml1m.sequence_lengths()[[0, 1, 4]].tolist() == [53, 129, 198]  # users 1, 2, 5 (README)


def test_ml1m_first_user_sequence_is_chronological(ml1m, real_file):
    path = real_file("ml-1m/ratings_subset_users_1-2999.dat")
    rows = []
    with open(path) as f:
        for line in f:
            user, movie, rating, stamp = line.split("::")
            if user != "1":
                break  # the file is sorted by user
            rows.append((int(stamp), movie, float(rating)))
    rows.sort(key=lambda r: r[0])  # stable: ties keep file order
    seq = ml1m.sequence(0)
    assert ml1m.item_ids[seq].tolist() == [m for _, m, _ in rows]
    assert ml1m.timestamps[: len(rows)].tolist() == [t for t, _, _ in rows]
    assert ml1m.ratings[: len(rows)].tolist() == [r for _, _, r in rows]


def test_ml1m_item_text_and_attributes(ml1m, real_file):
    toy_story = int(np.flatnonzero(ml1m.item_ids == "1")[0])
    assert ml1m.item_text[toy_story] == "Toy Story (1995) | Animation, Children's, Comedy"
    assert ml1m.item_text[0] == ""
    attrs = ml1m.user_attributes
    assert list(attrs.columns) == ["gender", "age", "occupation", "zip"] and len(attrs) == 2999
    assert attrs.iloc[0].tolist() == ["F", 1, 10, "48067"]  # 1::F::1::10::48067
    all_users = read_ml1m_users(real_file("ml-1m/users.dat"))
    assert all_users["gender"].value_counts().to_dict() == {"M": 4331, "F": 1709}
    assert sorted(all_users["age"].unique().tolist()) == [1, 18, 25, 35, 45, 50, 56]
    assert sorted(all_users["occupation"].unique().tolist()) == list(range(21))
    assert attrs["gender"].tolist() == all_users["gender"].iloc[:2999].tolist()


def test_ml1m_latin1_titles(ml1m):
    assert any("é" in t for t in ml1m.item_text.tolist())  # movies.dat is Latin-1, decoded, not mangled


def test_ml1m_partial_file_warns(real_data_dir, real_file):
    real_file("ml-1m/ratings_subset_users_1-2999.dat")
    if (real_data_dir / "ml-1m" / "ratings.dat").is_file():
        pytest.skip("the full ratings.dat is present")
    with pytest.warns(UserWarning, match="partial.*users 1..2999"):
        load_dataset("ml-1m", real_data_dir, DataOptions(cache=False))


def test_ml100k_counts_text_and_attributes(ml100k, real_file):
    assert (ml100k.num_users, ml100k.num_items, ml100k.num_interactions) == (943, 1682, 100000)
    assert ml100k.item_text[1] == "Toy Story (1995) | Animation, Children's, Comedy"
    occupations = real_file("ml-100k/u.occupation").read_text().split()
    attrs = ml100k.user_attributes
    assert attrs.iloc[0].tolist() == ["M", 24, occupations.index("technician"), "85711"]  # 1|24|M|technician|85711
    assert attrs["occupation"].between(0, 20).all() and attrs["gender"].isin(["M", "F"]).all()
    for u in range(0, 943, 97):
        assert np.all(np.diff(ml100k.timestamps[ml100k.offsets[u]:ml100k.offsets[u + 1]]) >= 0)


# ---------------------------------------------------------------- tiny files


def write_ml1m(root: Path, ratings: bytes | str | None = None, users: str | None = None, movies: bytes | None = None) -> Path:
    folder = root / "ml-1m"
    folder.mkdir(parents=True, exist_ok=True)
    ratings = ratings if ratings is not None else "1::10::5::100\n1::20::3::90\n1::30::4::100\n2::10::2::50\n2::20::1::40\n2::30::4::60\n"
    (folder / "ratings.dat").write_bytes(ratings.encode() if isinstance(ratings, str) else ratings)
    (folder / "users.dat").write_text(users if users is not None else "1::F::1::10::48067\n2::M::56::16::70072\n")
    (folder / "movies.dat").write_bytes(movies if movies is not None else "10::Amélie (2001)::Comedy|Romance\n20::B::Drama\n30::C::\n".encode("latin-1"))
    return folder


def test_tiny_ml1m(tmp_path):
    write_ml1m(tmp_path)
    d = load_dataset("ml-1m", tmp_path)
    assert d.item_ids[d.sequence(0)].tolist() == ["20", "10", "30"]  # 90 < 100 == 100 (tie keeps file order)
    assert d.item_text.tolist() == ["", "Amélie (2001) | Comedy, Romance", "B | Drama", "C"]
    assert d.user_attributes["gender"].tolist() == ["F", "M"]


@pytest.mark.parametrize(
    "ratings, match",
    [
        ("1::10::5::100\n1::20::3\n", r"ratings\.dat, line 2: the line is truncated: 3 fields.*expected 4.*Fix or remove"),
        ("1::10::5::100::7\n", r"ratings\.dat, line 1: the line has extra fields"),
        ("1,10,5,100\n", r"ratings\.dat, line 1: fields are separated by ',', expected '::'.*Write the file"),
        ("1::10::5::100\n1\t10\t5\t100\n", r"ratings\.dat, line 2: fields are separated by '\\t', expected '::'"),
        ("1::10::5::100\nu1::10::5::100\n", r"ratings\.dat, line 2: UserID is 'u1', not an integer"),
        ("1::10::5::100\n1::10::4.5::100\n", r"ratings\.dat, line 2: Rating is '4.5', not an integer"),
        ("", r"ratings\.dat: the file is empty.*Put the complete file there"),
        ("\n\n", r"ratings\.dat: the file is empty"),
        (b"1::10::5::100\n1::1\xff::5::100\n", r"ratings\.dat, line 2: byte 0xff is not valid UTF-8.*Save the file as UTF-8"),
    ],
)
def test_bad_ratings_file(tmp_path, ratings, match):
    write_ml1m(tmp_path, ratings=ratings)
    with pytest.raises(DataError, match=match):
        load_dataset("ml-1m", tmp_path)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # nothing cached


def test_bad_users_file(tmp_path):
    write_ml1m(tmp_path, users="1::F::1::10::48067\n2::X::56::16::70072\n")
    with pytest.raises(DataError, match=r"users\.dat, line 2: Gender is 'X'"):
        load_dataset("ml-1m", tmp_path)
    write_ml1m(tmp_path, users="1::F::1::10::48067\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 4: user 2 is not in .*users\.dat.*same download"):
        load_dataset("ml-1m", tmp_path)


def test_missing_file_offline(tmp_path):
    folder = write_ml1m(tmp_path)
    (folder / "users.dat").unlink()
    with pytest.raises(DataError, match=r"ml-1m: missing file .*users\.dat \(not downloaded: FFMREC_OFFLINE is set\)\. "
                                          r"Download it from https://files\.grouplens\.org/datasets/movielens/ml-1m\.zip.*FFMREC_DATA_DIR.*ml-1m/"):
        load_dataset("ml-1m", tmp_path)


def write_ml100k(root: Path, data: str = "1\t1\t5\t10\n1\t2\t3\t5\n1\t1\t4\t7\n", user: str = "1|24|M|technician|85711\n") -> Path:
    folder = root / "ml-100k"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(data)
    (folder / "u.user").write_text(user)
    (folder / "u.item").write_bytes("1|Toy Story (1995)|01-Jan-1995||http://x|0|1|1\n2|Café|||http://y|1|0|0\n".encode("latin-1"))
    (folder / "u.genre").write_text("unknown|0\nAction|1\nAdventure|2\n\n")
    (folder / "u.occupation").write_text("administrator\ntechnician\n")
    return folder


def test_tiny_ml100k(tmp_path):
    write_ml100k(tmp_path)
    d = load_dataset("ml-100k", tmp_path)
    assert d.item_ids[d.sequence(0)].tolist() == ["2", "1", "1"]
    assert d.item_text.tolist() == ["", "Toy Story (1995) | Action, Adventure", "Café | unknown"]
    assert d.user_attributes.iloc[0].tolist() == ["M", 24, 1, "85711"]


def test_bad_ml100k(tmp_path):
    write_ml100k(tmp_path, data="1::1::5::10\n")
    with pytest.raises(DataError, match=r"u\.data, line 1: fields are separated by '::', expected '\\t'"):
        load_dataset("ml-100k", tmp_path)
    write_ml100k(tmp_path, user="1|24|M|astronaut|85711\n")
    with pytest.raises(DataError, match=r"u\.user, line 1: occupation 'astronaut' is not listed in u\.occupation"):
        load_dataset("ml-100k", tmp_path)
