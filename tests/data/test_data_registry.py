"""The edge: names, data directory resolution, status and statistics."""

from __future__ import annotations

import pytest

from ffmrec.data import DATASETS, dataset_statistics, dataset_status, load_dataset
from ffmrec.errors import ConfigError


def test_unknown_name_lists_known_names():
    with pytest.raises(ConfigError, match=r"dataset='movielens' is unknown: use one of beauty, generic, ml-100k, ml-1m, sports"):
        load_dataset("movielens")


def test_data_dir_from_environment(monkeypatch, tmp_path):
    (tmp_path / "amazon" / "beauty").mkdir(parents=True)
    (tmp_path / "amazon" / "beauty" / "Beauty.txt").write_text("1 1 2 3\n")
    monkeypatch.setenv("FFMREC_DATA_DIR", str(tmp_path))
    assert load_dataset("beauty").num_interactions == 3


def test_status_of_empty_folder(tmp_path):
    rows = {row["name"]: row for row in dataset_status(tmp_path)}
    assert set(DATASETS) | {"redial"} == set(rows)
    assert not any(row["present"] for row in rows.values())
    assert rows["ml-100k"]["missing"][0].endswith("u.data")
    assert all(row["description"] for row in rows.values())


def test_status_of_real_folder(real_data_dir, real_file):
    real_file("ml-1m/users.dat")
    rows = {row["name"]: row for row in dataset_status(real_data_dir)}
    assert rows["beauty"]["present"] and rows["ml-100k"]["present"] and rows["ml-1m"]["present"]
    if not (real_data_dir / "ml-1m" / "ratings.dat").is_file():
        assert "ratings_subset_users_1-2999.dat" in rows["ml-1m"]["partial"][0]
    assert "no " in rows["sports"]["partial"][0]  # no item text for sports


def test_statistics(real_data_dir, real_file):
    real_file("ml-100k/u.data")
    stats = dataset_statistics("ml-100k", real_data_dir)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["has_item_text"] and stats["has_user_attributes"] and stats["min_sequence_length"] == 20
