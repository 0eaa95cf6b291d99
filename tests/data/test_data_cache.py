"""The processed-dataset cache: equal results, speed, keys, corruption, no writes on failure."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from ffmrec.data import DataOptions, load_dataset
from ffmrec.data.cache import cache_dir, cache_key, cache_path, load_cached, save_cached
from ffmrec.data.dataset import Dataset


def assert_same(a: Dataset, b: Dataset) -> None:
    assert a.name == b.name
    for field in ("items", "offsets", "user_ids", "item_ids", "timestamps", "ratings", "item_text"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype or field == "item_text", field
            assert np.array_equal(x, y), field
    if a.user_attributes is None:
        assert b.user_attributes is None
    else:
        pd.testing.assert_frame_equal(a.user_attributes, b.user_attributes)


def cache_files():
    folder = cache_dir()
    return sorted(p for p in folder.iterdir()) if folder.exists() else []


def test_beauty_cached_load_is_equal_and_fast(real_data_dir, real_file):
    real_file("amazon/beauty/Beauty.txt")
    start = time.perf_counter()
    cold = load_dataset("beauty", real_data_dir)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = load_dataset("beauty", real_data_dir)
    warm_s = time.perf_counter() - start
    assert_same(cold, warm)
    assert warm_s < 2.0, f"cached beauty load took {warm_s:.3f} s"
    assert warm_s < cold_s
    print(f"beauty: cold {cold_s:.3f} s, cached {warm_s:.3f} s")


def test_ml1m_cache_round_trips_attributes(real_data_dir, real_file):
    real_file("ml-1m/users.dat")
    with pytest.warns(UserWarning):
        cold = load_dataset("ml-1m", real_data_dir)
    with pytest.warns(UserWarning):  # still warns when cached: the data is still partial
        warm = load_dataset("ml-1m", real_data_dir)
    assert_same(cold, warm)


def write_generic(tmp_path):
    (tmp_path / "interactions.csv").write_text("user,item,timestamp,rating\n1,a,1,5\n1,b,2,3\n1,c,3,4\n2,a,1,4\n2,c,2,2\n2,b,3,1\n")
    (tmp_path / "item_text.csv").write_text("item,text\na,Ä é 漢字\nb,\n")
    (tmp_path / "user_attributes.csv").write_text("user,gender,age,score\n1,F,30,0.5\n")
    return tmp_path / "interactions.csv"


def test_generic_round_trip_with_missing_attributes(tmp_path):
    path = write_generic(tmp_path)
    cold = load_dataset(path)
    assert len(cache_files()) == 1
    warm = load_dataset(path)
    assert_same(cold, warm)
    assert warm.item_text.tolist() == ["", "Ä é 漢字", "", ""]
    assert pd.isna(warm.user_attributes["gender"][1])


def test_corrupted_cache_is_rebuilt(tmp_path):
    path = write_generic(tmp_path)
    first = load_dataset(path)
    (cached,) = cache_files()
    cached.write_bytes(cached.read_bytes()[: 100])  # truncated
    with pytest.warns(UserWarning, match="ignoring unreadable cache file"):
        again = load_dataset(path)
    assert_same(first, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning now: the cache file was rewritten
        third = load_dataset(path)
    assert_same(first, third)


def test_cache_with_bad_content_is_rebuilt(tmp_path):
    path = write_generic(tmp_path)
    first = load_dataset(path)
    (cached,) = cache_files()
    with np.load(cached) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["items"] = arrays["items"] + 100  # readable, but breaks the Dataset invariants
    with open(cached, "wb") as f:
        np.savez(f, **arrays)
    with pytest.warns(UserWarning, match="ignoring unreadable cache file.*item ids must lie in"):
        assert_same(first, load_dataset(path))


def test_key_changes_with_options_and_files(tmp_path):
    path = write_generic(tmp_path)
    files = [path]
    base = cache_key("g", files, DataOptions())
    assert cache_key("g", files, DataOptions(cache=False)) == base  # cache flag does not change the data
    assert cache_key("g", files, DataOptions(k_core=2)) != base
    assert cache_key("g", files, DataOptions(min_rating=4)) != base
    assert cache_key("other", files, DataOptions()) != base
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cache_key("g", files, DataOptions()) != base
    load_dataset(path)
    load_dataset(path, options=DataOptions(min_sequence_length=1))
    assert len(cache_files()) == 2


def test_edited_file_is_reread(tmp_path):
    path = write_generic(tmp_path)
    assert load_dataset(path).num_users == 2
    path.write_text(path.read_text() + "3,a,1,1\n3,b,2,1\n3,c,3,1\n")
    assert load_dataset(path).num_users == 3


def test_cache_disabled_writes_nothing(tmp_path):
    load_dataset(write_generic(tmp_path), options=DataOptions(cache=False))
    assert cache_files() == []


def test_save_is_atomic_and_key_checked(tmp_path):
    d = Dataset.from_sequences([[1, 2, 3]])
    path = cache_path("toy", "k" * 64)
    save_cached(path, "k" * 64, d)
    assert [p.name for p in cache_files()] == [path.name]  # no temporary files left
    assert_same(load_cached(path, "k" * 64), d)
    with pytest.warns(UserWarning):
        assert load_cached(path, "other") is None  # wrong key: discarded
