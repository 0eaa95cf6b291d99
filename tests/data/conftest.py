"""Shared fixtures: every test gets its own cache folder and no network; real data comes from $FFMREC_DATA_DIR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_DATA_DIR = Path(os.environ.get("FFMREC_DATA_DIR") or "data")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """Cache under tmp_path (never ~/.cache) and downloads disabled, for every test in tests/data."""
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FFMREC_OFFLINE", "1")


def require_real_file(relative: str) -> Path:
    """A staged real data file, or skip the test when $FFMREC_DATA_DIR does not hold it."""
    path = REAL_DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"{path} not found: set FFMREC_DATA_DIR to the folder with the staged datasets to run this test")
    return path


@pytest.fixture
def real_data_dir() -> Path:
    """The folder with the staged real datasets ($FFMREC_DATA_DIR, else ./data)."""
    return REAL_DATA_DIR


@pytest.fixture
def real_file():
    """``real_file("ml-1m/users.dat")``: the path, or skip the test when it is not there."""
    return require_real_file


def _load_real(name: str, relative: str):
    import warnings

    from ffmrec.data import DataOptions, load_dataset

    require_real_file(relative)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ml-1m warns that the staged ratings are partial
        return load_dataset(name, REAL_DATA_DIR, DataOptions(cache=False))


@pytest.fixture(scope="session")
def beauty():
    return _load_real("beauty", "amazon/beauty/Beauty.txt")


@pytest.fixture(scope="session")
def ml1m():
    return _load_real("ml-1m", "ml-1m/users.dat")


@pytest.fixture(scope="session")
def ml100k():
    return _load_real("ml-100k", "ml-100k/u.data")
