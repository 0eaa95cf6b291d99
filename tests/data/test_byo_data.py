"""Bringing your own data: column names mapped by data options, the common separators, pre-ordered rows without
timestamps, per-dataset settings chosen from the data; and the inputs that used to pass silently or with wrong
advice (64-bit overflow, repeated column names, mixed timestamp kinds, a folder given as the file)."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from ffmrec.data import DataOptions, load_dataset
from ffmrec.data.download import require_file
from ffmrec.errors import ConfigError, DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_timestamps_beyond_int64_are_refused_naming_the_line(tmp_path):
    path = write(tmp_path / "i.csv", "user,item,timestamp\n1,a,5\n1,b,99999999999999999999\n1,c,7\n")
    with pytest.raises(DataError, match=r"i\.csv, line 3: timestamp 99999999999999999999 does not fit in 64 bits"):
        load_dataset(path)


def test_a_repeated_column_name_is_refused(tmp_path):
    path = write(tmp_path / "i.csv", "user,item,timestamp,item\n1,a,1,x\n1,b,2,y\n1,c,3,z\n")
    with pytest.raises(DataError, match=r"i\.csv: column 'item' appears twice in the header"):
        load_dataset(path)


def test_mixed_iso_and_integer_timestamps_name_both_kinds_not_a_bad_date(tmp_path):
    path = write(tmp_path / "i.csv", "user,item,timestamp\n1,a,2021-01-01\n1,b,5\n1,c,7\n")
    with pytest.raises(DataError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "line 2: timestamp '2021-01-01' is an ISO 8601 date, but line 3 has the integer timestamp" in message
    assert "neither" not in message


def test_a_folder_given_as_the_file_is_called_a_folder(tmp_path):
    (tmp_path / "ratings.csv").mkdir()
    with pytest.raises(DataError, match="is a folder, not a file"):
        require_file(tmp_path / "ratings.csv", "generic")
    with pytest.raises(ConfigError, match="is a folder without an interactions"):
        load_dataset(tmp_path / "ratings.csv")


AMAZON_LIKE = "user_id\titem_id\trating\tunixReviewTime\nA\tx\t5\t30\nA\ty\t4\t10\nA\tz\t3\t20\nB\tx\t5\t1\nB\ty\t2\t2\nB\tz\t1\t3\n"


@pytest.mark.parametrize("name", ["reviews.tsv", "reviews.csv"])
def test_tab_separated_file_with_its_own_column_names_loads_with_data_options(tmp_path, name):
    path = write(tmp_path / name, AMAZON_LIKE)
    options = DataOptions(user_column="user_id", item_column="item_id", timestamp_column="unixReviewTime")
    d = load_dataset(path, options=options)
    assert d.user_ids.tolist() == ["A", "B"]
    assert d.item_ids[d.sequence(0)].tolist() == ["y", "z", "x"]  # A's items by unixReviewTime 10, 20, 30
    assert d.ratings is not None and d.ratings[:3].tolist() == [4.0, 3.0, 5.0]
    assert d.stats()["has_timestamps"]


@pytest.mark.parametrize("separator,symbol", [(";", ";"), ("|", "|"), ("tab", "\t")])
def test_the_common_separators_are_detected_or_set(tmp_path, separator, symbol):
    text = "user,item,timestamp\n1,a,3\n1,b,1\n1,c,2\n".replace(",", symbol)
    path = write(tmp_path / "i.csv", text)
    assert load_dataset(path).item_ids[load_dataset(path).sequence(0)].tolist() == ["b", "c", "a"]
    assert load_dataset(path, options=DataOptions(separator=separator, cache=False)).num_interactions == 3


def test_a_missing_column_error_names_the_data_option_that_maps_it(tmp_path):
    path = write(tmp_path / "i.csv", "user_id,item_id,time\n1,a,1\n")
    with pytest.raises(DataError, match=r"missing column 'user'.*data\.user_column=user_id"):
        load_dataset(path)


def test_ordered_rows_need_no_timestamps_and_record_none(tmp_path):
    path = write(tmp_path / "i.csv", "user,item\n1,c\n2,x\n1,a\n1,b\n2,y\n2,z\n")
    with pytest.raises(DataError, match="missing column 'timestamp'"):
        load_dataset(path)
    d = load_dataset(path, options=DataOptions(ordered=True))
    assert d.item_ids[d.sequence(0)].tolist() == ["c", "a", "b"]  # file order
    assert d.timestamps is None and d.stats()["has_timestamps"] is False


def test_ordered_rows_with_a_position_column_are_ordered_by_it_without_timestamps(tmp_path):
    path = write(tmp_path / "i.csv", "user,item,position\n1,c,3\n1,a,1\n1,b,2\n")
    d = load_dataset(path, options=DataOptions(ordered=True, timestamp_column="position"))
    assert d.item_ids[d.sequence(0)].tolist() == ["a", "b", "c"]
    assert d.stats()["has_timestamps"] is False


def test_file_format_options_on_a_registered_dataset_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.user_column='user_id' describes your own"):
        load_dataset("ml-100k", data_dir=tmp_path, options=DataOptions(user_column="user_id"))


def test_file_format_options_are_validated():
    with pytest.raises(ConfigError, match=r"data\.separator=' ' is not a separator"):
        DataOptions(separator=" ")
    with pytest.raises(ConfigError, match=r"data\.user_column='' must be a column name"):
        DataOptions(user_column="")
    assert DataOptions(separator="\\t").separator == "\t"


def write_lengths(path: Path, lengths: list[int]) -> Path:
    lines = ["user,item,timestamp"]
    for u, n in enumerate(lengths):
        lines += [f"u{u},i{(u + t) % 40},{t}" for t in range(n)]
    return write(path, "\n".join(lines) + "\n")


def test_recipe_settings_for_your_own_file_come_from_its_sequence_lengths(tmp_path):
    from ffmrec.recipes import load_recipe

    short = load_recipe("sasrec", str(write_lengths(tmp_path / "short.csv", [5] * 20)))
    assert short.model.max_len == 50 and short.model.dropout == 0.5
    long = load_recipe("sasrec", str(write_lengths(tmp_path / "long.csv", [150] * 20)))
    assert long.model.max_len == 200 and long.model.dropout == 0.2
    assert any("model.max_len=200: chosen from the data" in note for note in long.defaults_from_data)
    mine = load_recipe("fedsasrec", str(tmp_path / "long.csv"), ["model.max_len=30"])  # --set wins
    assert mine.model.max_len == 30 and mine.model.dropout == 0.2
    assert load_recipe("sasrec", "ml-100k").model.max_len == 200  # the recipe's own dataset overrides
    assert load_recipe("sasrec", "beauty").defaults_from_data == []


def test_the_chosen_settings_are_stated_in_the_runs_config(tmp_path):
    from ffmrec.pipeline import pipeline
    from ffmrec.recipes import load_recipe

    data = write_lengths(tmp_path / "long.csv", [120] * 12)
    config = load_recipe("sasrec", str(data), ["model.hidden_size=8", "model.inner_size=8", "train.epochs=1"])
    result = pipeline(config, tmp_path / "run", progress=False)
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert text.startswith("# model.max_len=200: chosen from the data")
    assert yaml.safe_load(text)["model"]["max_len"] == 200
    assert result.summary["defaults_from_data"][0].startswith("model.max_len=200")
    assert np.isfinite(result.metrics["NDCG@10"])
