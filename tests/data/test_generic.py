"""User-supplied CSV/Parquet data: format, side files, ways to load, and every bad-input error."""

from __future__ import annotations

import pandas as pd
import pytest

from ffmrec.data import DataOptions, GenericSource, load_dataset
from ffmrec.errors import DataError

INTERACTIONS = "user,item,timestamp,rating\nalice,m2,20,4\nalice,m1,10,5\nbob,m1,5,3\nalice,m3,20,2\nbob,m2,6,4\nbob,m3,7,5\n"


def write(path, text: str | bytes):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_csv_with_side_files(tmp_path):
    write(tmp_path / "interactions.csv", INTERACTIONS)
    write(tmp_path / "item_text.csv", 'item,text\nm1,"One, the first"\nm3,Three\n')
    write(tmp_path / "user_attributes.csv", "user,gender,age\nbob,M,30\nalice,F,25\n")
    d = load_dataset(tmp_path / "interactions.csv")
    assert d.name == tmp_path.name
    assert d.user_ids.tolist() == ["alice", "bob"] and d.item_ids.tolist() == ["", "m1", "m2", "m3"]
    assert [d.item_ids[s].tolist() for s in d.sequences()] == [["m1", "m2", "m3"], ["m1", "m2", "m3"]]
    assert d.ratings.tolist() == [5, 4, 2, 3, 4, 5]
    assert d.item_text.tolist() == ["", "One, the first", "", "Three"]
    assert d.user_attributes.to_dict("list") == {"gender": ["F", "M"], "age": [25, 30]}
    # the same through the registry name and through an explicit GenericSource
    assert load_dataset("generic", tmp_path).items.tolist() == d.items.tolist()
    assert load_dataset(str(tmp_path)).items.tolist() == d.items.tolist()
    assert load_dataset(GenericSource(tmp_path / "interactions.csv")).item_text is None


def test_parquet_and_dates(tmp_path):
    frame = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2], "item": [3, 1, 2, 1, 2, 3],
                          "timestamp": pd.to_datetime(["2021-01-03", "2021-01-01", "2021-01-02", "2020-01-01", "2020-01-02", "2020-01-03"])})
    frame.to_parquet(tmp_path / "data.parquet")
    d = load_dataset(tmp_path / "data.parquet")
    assert d.name == "data" and d.sequence(0).tolist() == [1, 2, 3]
    assert d.timestamps[0] == 1609459200  # 2021-01-01T00:00:00Z
    write(tmp_path / "iso.csv", "user,item,timestamp\n1,a,2021-01-02T00:00:00Z\n1,b,2021-01-01\n1,c,2021-01-03\n")
    assert load_dataset(tmp_path / "iso.csv").item_ids[load_dataset(tmp_path / "iso.csv").sequence(0)].tolist() == ["b", "a", "c"]


def test_integer_ids_sort_numerically(tmp_path):
    write(tmp_path / "x.csv", "user,item,timestamp\n10,10,1\n10,9,2\n10,100,3\n9,9,1\n9,10,2\n9,100,3\n")
    d = load_dataset(tmp_path / "x.csv")
    assert d.user_ids.tolist() == ["9", "10"] and d.item_ids.tolist() == ["", "9", "10", "100"]


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("a.csv", "user,item,time\n1,2,3\n", r"a\.csv: missing column 'timestamp' \(found columns: 'user', 'item', 'time'\).*rename or add"),
        ("b.csv", "user item timestamp\n1 2 3\n", r"b\.csv: missing column 'user' \(found columns: 'user item timestamp'\)"),
        ("c.csv", "user,item,timestamp\n1,2,3\n1,2,3,4\n", r"c\.csv, line 3: 4 fields, expected 3"),
        ("d.csv", "user,item,timestamp\n1,2,3\n1,2,yesterday\n", r"d\.csv, line 3: timestamp 'yesterday' is neither an integer nor an ISO 8601 date"),
        ("e.csv", "user,item,timestamp\n1,2,3\n,2,4\n", r"e\.csv, line 3: user is empty"),
        ("f.csv", "user,item,timestamp,rating\n1,2,3,good\n", r"f\.csv, line 2: rating is 'good', not a number"),
        ("g.csv", "", r"g\.csv: the file is empty"),
        ("h.csv", "user,item,timestamp\n", r"h\.csv: the table has no rows"),
        ("i.csv", b"user,item,timestamp\n1,caf\xe9,3\n", r"i\.csv, line 2: byte 0xe9 is not valid UTF-8"),
        ("j.parquet", b"PAR1 this is not parquet", r"j\.parquet: cannot read it as Parquet.*to_parquet"),
        ("k.csv", "user,item,timestamp\n1,2,3.5\n", r"k\.csv, line 2: timestamp '?3.5'? is not an integer"),
        ("l.txt", "user,item,timestamp\n", None),
    ],
)
def test_bad_generic_input(tmp_path, name, content, match):
    path = write(tmp_path / name, content)
    if match is None:  # unknown extension: not a path the registry accepts
        from ffmrec.errors import ConfigError

        with pytest.raises(ConfigError, match="unknown"):
            load_dataset(path)
        return
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def test_bad_side_files(tmp_path):
    write(tmp_path / "interactions.csv", INTERACTIONS)
    write(tmp_path / "user_attributes.csv", "user,gender\nbob,M\nbob,F\n")
    with pytest.raises(DataError, match=r"user_attributes\.csv, line 3: user 'bob' appears twice"):
        load_dataset("generic", tmp_path)
    (tmp_path / "user_attributes.csv").unlink()
    write(tmp_path / "item_text.csv", "id,text\nm1,x\n")
    with pytest.raises(DataError, match=r"item_text\.csv: missing column 'item' \(found columns: 'id', 'text'\)"):
        load_dataset("generic", tmp_path)


def test_missing_generic_files(tmp_path):
    with pytest.raises(DataError, match=r"missing file .*interactions\.csv\. Check the path"):
        load_dataset("generic", tmp_path)
    with pytest.raises(DataError, match=r"missing file .*nothere\.parquet"):
        load_dataset(tmp_path / "nothere.parquet")
    write(tmp_path / "i.csv", INTERACTIONS)
    with pytest.raises(DataError, match=r"missing file .*attrs\.csv"):
        load_dataset(GenericSource(tmp_path / "i.csv", user_attributes=tmp_path / "attrs.csv"))


def test_min_rating_on_generic(tmp_path):
    write(tmp_path / "i.csv", INTERACTIONS)
    d = load_dataset(tmp_path / "i.csv", options=DataOptions(min_rating=4, min_sequence_length=1))
    assert d.ratings.min() >= 4 and d.num_interactions == 4
