"""Downloads without the network: file:// URLs, hash checks, zip members, offline and failure errors."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from ffmrec.data.download import REMOTE_FILES, RemoteFile, ensure_file, ensure_files, git_blob_id, is_offline
from ffmrec.errors import DataError


def test_git_blob_id_matches_git():
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `echo hello | git hash-object --stdin`


def test_table_covers_the_public_files():
    assert {"ml-1m/ratings.dat", "ml-1m/users.dat", "ml-100k/u.data", "amazon/beauty/Beauty.txt", "amazon/sports/Sports_and_Outdoors.txt"} <= set(REMOTE_FILES)
    assert all(r.sha256 or r.git_blob for r in REMOTE_FILES.values())


def test_sha256_values_match_staged_files(real_data_dir, real_file):
    for relative in ("ml-1m/users.dat", "ml-100k/u.item", "amazon/beauty/Beauty.txt"):
        data = real_file(relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == REMOTE_FILES[relative].sha256


def test_offline_flag(monkeypatch, tmp_path):
    assert is_offline()  # set by the autouse fixture
    monkeypatch.setenv("FFMREC_OFFLINE", "0")
    assert not is_offline()
    remote = RemoteFile("toy", "toy/x.txt", "https://example.invalid/x.txt")
    with pytest.raises(DataError, match=r"toy: missing file .*x\.txt \(not downloaded: FFMREC_OFFLINE is set\)\. Download it from https://example\.invalid/x\.txt"):
        ensure_file(tmp_path / "toy" / "x.txt", remote, offline=True)


def test_download_verified_file(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_bytes(b"1 2 3\n")
    remote = RemoteFile("toy", "toy/x.txt", source.as_uri(), sha256=hashlib.sha256(b"1 2 3\n").hexdigest())
    dest = tmp_path / "data" / "toy" / "x.txt"
    assert ensure_file(dest, remote, offline=False) == dest
    assert dest.read_bytes() == b"1 2 3\n"
    assert [p.name for p in dest.parent.iterdir()] == ["x.txt"]  # no temporary files left


def test_hash_mismatch_saves_nothing(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_bytes(b"tampered\n")
    remote = RemoteFile("toy", "toy/x.txt", source.as_uri(), sha256="0" * 64)
    dest = tmp_path / "data" / "toy" / "x.txt"
    with pytest.raises(DataError, match=r"toy: the file downloaded from .* has sha256 [0-9a-f]{64}, expected 0{64}; it was not saved"):
        ensure_file(dest, remote, offline=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_zip_members_are_extracted_once(tmp_path):
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("pack/a.txt", "A\n")
        z.writestr("pack/b.txt", "B\n")
    calls = []

    def fetch(url, dest):
        calls.append(url)
        dest.write_bytes(archive.read_bytes())

    url = "https://example.invalid/pack.zip"
    a = RemoteFile("pack", "pack/a.txt", url, "pack/a.txt", git_blob=git_blob_id(b"A\n"))
    b = RemoteFile("pack", "pack/b.txt", url, "pack/b.txt")  # no hash known: not verified
    ensure_files([(tmp_path / "d" / "pack" / "a.txt", a), (tmp_path / "d" / "pack" / "b.txt", b)], offline=False, fetch=fetch)
    assert calls == [url]
    assert (tmp_path / "d" / "pack" / "b.txt").read_text() == "B\n"


def test_failed_download_names_the_source(tmp_path):
    remote = RemoteFile("toy", "toy/x.txt", (tmp_path / "absent.txt").as_uri())
    with pytest.raises(DataError, match=r"toy: missing file .*x\.txt \(download failed: .*\)\. Download it from file://.*FFMREC_DATA_DIR.*toy/"):
        ensure_file(tmp_path / "data" / "toy" / "x.txt", remote, offline=False)
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"not a zip")
    remote = RemoteFile("toy", "toy/x.txt", bad_zip.as_uri(), member="x.txt")
    with pytest.raises(DataError, match=r"download failed: File is not a zip file"):
        ensure_file(tmp_path / "data" / "toy" / "x.txt", remote, offline=False)


def test_network_failure_is_a_data_error(tmp_path):
    def fetch(url, dest):
        raise OSError("Network is unreachable")

    remote = REMOTE_FILES["amazon/beauty/Beauty.txt"]
    with pytest.raises(DataError, match=r"beauty: missing file .*Beauty\.txt \(download failed: Network is unreachable\)"):
        ensure_file(tmp_path / "amazon" / "beauty" / "Beauty.txt", remote, offline=False, fetch=fetch)
