"""S3-Rec Amazon readers: exact benchmark counts on the real files, id meaning, item text, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ffmrec.data import DataOptions, load_dataset
from ffmrec.errors import DataError


def test_beauty_counts_and_ids(beauty):
    assert (beauty.num_users, beauty.num_items, beauty.num_interactions) == (22363, 12101, 198502)
    assert beauty.timestamps is None and beauty.ratings is None
    # S3-Rec ids are already dense 1..N: dense item i is S3-Rec item i, dense user u is S3-Rec user u + 1.
    assert beauty.item_ids[1:].tolist() == [str(i) for i in range(1, 12102)]
    assert beauty.user_ids.tolist() == [str(u) for u in range(1, 22364)]


def test_beauty_sequences_match_file(beauty, real_file):
    lines = real_file("amazon/beauty/Beauty.txt").read_text().split("\n")
    for u in (0, 1, 9999, 22362):
        tokens = [int(t) for t in lines[u].split()]
        assert tokens[0] == u + 1 and beauty.sequence(u).tolist() == tokens[1:]


def test_beauty_item_text(beauty):
    assert beauty.item_text[1] == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce | Beauty, Makeup, Nails, Nail Polish"
    assert beauty.item_text[8].startswith("Freeman Facial Charcoal & Black Sugar Polish Mask")  # &amp; unescaped
    assert not any("&amp;" in t for t in beauty.item_text.tolist())
    assert all(beauty.item_text[1:])  # every item has a title


def test_sports_counts(real_data_dir, real_file):
    real_file("amazon/sports/Sports_and_Outdoors.txt")
    d = load_dataset("sports", real_data_dir)
    assert (d.num_users, d.num_items, d.num_interactions) == (35598, 18357, 296337)
    assert d.item_text is None  # no titles staged for Sports
    assert d.item_ids[1:].tolist() == [str(i) for i in range(1, 18358)]


def test_beauty_k_core_5_changes_nothing(real_data_dir, real_file):
    real_file("amazon/beauty/Beauty.txt")
    d = load_dataset("beauty", real_data_dir, DataOptions(k_core=5))  # the files are 5-core already
    assert (d.num_users, d.num_items, d.num_interactions) == (22363, 12101, 198502)


def write_s3rec(tmp_path, content: bytes | str, item_text: str | None = None):
    folder = tmp_path / "amazon" / "beauty"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Beauty.txt").write_bytes(content.encode() if isinstance(content, str) else content)
    if item_text is not None:
        (folder / "item_text.jsonl").write_text(item_text)
    return folder


def test_tiny_s3rec_with_item_text(tmp_path):
    write_s3rec(tmp_path, "1 1 2 3\n2 3 2 1 2\n", '{"item_id": 2, "title": "A &quot;B&quot;", "categories": [["X", "Y"], ["X", "Z"]]}\n')
    d = load_dataset("beauty", tmp_path)
    assert [s.tolist() for s in d.sequences()] == [[1, 2, 3], [3, 2, 1, 2]]
    assert d.item_text.tolist() == ["", "", 'A "B" | X, Y, Z', ""]


@pytest.mark.parametrize(
    "content, match",
    [
        ("1 1 2 3\n2 3 x 1\n", r"Beauty\.txt, line 2: item 2 is 'x', not an integer \(user_id item_id item_id \.\.\.\)"),
        ("1 1 2 3\nu2 3 2 1\n", r"Beauty\.txt, line 2: user_id is 'u2', not an integer"),
        ("1,1,2,3\n", r"Beauty\.txt, line 1: values are separated by ',', expected spaces.*space-separated"),
        ("", r"Beauty\.txt: the file is empty"),
        (b"1 1 2 3\n2 \xc3\x28 1\n", r"Beauty\.txt, line 2: byte 0xc3 is not valid UTF-8"),
    ],
)
def test_bad_s3rec_file(tmp_path, content, match):
    write_s3rec(tmp_path, content)
    with pytest.raises(DataError, match=match):
        load_dataset("beauty", tmp_path)


def test_bad_item_text_line(tmp_path):
    write_s3rec(tmp_path, "1 1 2 3\n", '{"item_id": 1, "title": "ok"}\n{"item_id": 2, "title": \n')
    with pytest.raises(DataError, match=r"item_text\.jsonl, line 2: not valid JSON.*one JSON object"):
        load_dataset("beauty", tmp_path)


def test_missing_beauty_offline(tmp_path):
    with pytest.raises(DataError, match=r"beauty: missing file .*amazon/beauty/Beauty\.txt.*Download it from "
                                          r"https://raw\.githubusercontent\.com/aHuiWang/CIKM2020-S3Rec/.*/data/Beauty\.txt.*amazon/beauty/"):
        load_dataset("beauty", tmp_path)
    assert not (tmp_path / "amazon").exists()  # offline: nothing created


def test_users_without_items_are_dropped(tmp_path):
    write_s3rec(tmp_path, "1 1 2 3\n2\n3 1 2 3\n")
    d = load_dataset("beauty", tmp_path)
    assert d.user_ids.tolist() == ["1", "3"] and np.array_equal(d.sequence(1), [1, 2, 3])


def test_crlf_line_endings(tmp_path):
    write_s3rec(tmp_path, "1 1 2 3\r\n2 3 2 1\r\n")  # e.g. the Windows-line-ending copies in some repositories
    assert [s.tolist() for s in load_dataset("beauty", tmp_path).sequences()] == [[1, 2, 3], [3, 2, 1]]
