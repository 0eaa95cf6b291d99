"""Official download locations of the public datasets, and fetching a missing file with its hash checked.

A missing file is downloaded (``urllib``, 20 s timeout) into a temporary file next to its destination, checked against
the known hash of the file itself, and only then renamed into place, so a failed or interrupted download never leaves a
half-written file. Set ``FFMREC_OFFLINE=1`` (or pass ``offline=True``) to never touch the network; a missing file then
raises a DataError that says where to get it.

Hashes are those of the staged copies described in the datasets README (sha256), which are byte-identical to the
originals. The full ML-1M ``ratings.dat`` is not staged, so its sha256 is unknown; its git blob id is known (from public
repositories holding it) and is checked instead. The zip archives themselves are not checked (their hashes are not
known here): every file taken out of one is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ffmrec.errors import DataError

TIMEOUT_S = 20.0
ML_1M_ZIP = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML_100K_ZIP = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
S3REC_DATA = "https://raw.githubusercontent.com/aHuiWang/CIKM2020-S3Rec/master/data/"


@dataclass(frozen=True)
class RemoteFile:
    """Where one data file comes from: a URL, or a member of the zip archive at the URL, and how to verify it."""

    dataset: str  # the dataset name, for messages
    path: str  # where the file goes, relative to the data directory, e.g. "ml-1m/users.dat"
    url: str
    member: str | None = None  # path inside the zip archive at ``url``; None when ``url`` is the file itself
    sha256: str | None = None  # of the file itself
    git_blob: str | None = None  # git object id (sha1 of "blob <size>\0" + content), used when sha256 is unknown

    @property
    def where(self) -> str:
        return f"{self.url} (file {self.member} in the archive)" if self.member else self.url


_SOURCES = [
    RemoteFile("ml-1m", "ml-1m/ratings.dat", ML_1M_ZIP, "ml-1m/ratings.dat", git_blob="77a7c4b150f588c23bb9e1f068aa996c0b413695"),
    RemoteFile("ml-1m", "ml-1m/users.dat", ML_1M_ZIP, "ml-1m/users.dat", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"),
    RemoteFile("ml-1m", "ml-1m/movies.dat", ML_1M_ZIP, "ml-1m/movies.dat", "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"),
    RemoteFile("ml-100k", "ml-100k/u.data", ML_100K_ZIP, "ml-100k/u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
    RemoteFile("ml-100k", "ml-100k/u.user", ML_100K_ZIP, "ml-100k/u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
    RemoteFile("ml-100k", "ml-100k/u.item", ML_100K_ZIP, "ml-100k/u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
    RemoteFile("ml-100k", "ml-100k/u.genre", ML_100K_ZIP, "ml-100k/u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
    RemoteFile(
        "ml-100k", "ml-100k/u.occupation", ML_100K_ZIP, "ml-100k/u.occupation", "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d"
    ),
    RemoteFile(
        "beauty", "amazon/beauty/Beauty.txt", S3REC_DATA + "Beauty.txt",
        sha256="226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    ),
    RemoteFile(
        "sports", "amazon/sports/Sports_and_Outdoors.txt", S3REC_DATA + "Sports_and_Outdoors.txt",
        sha256="2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
    ),
    RemoteFile(
        "toys", "amazon/toys/Toys_and_Games.txt", S3REC_DATA + "Toys_and_Games.txt",
        sha256="176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
    ),
]
# Keyed by the path relative to the data directory.
REMOTE_FILES: dict[str, RemoteFile] = {remote.path: remote for remote in _SOURCES}

Fetch = Callable[[str, Path], None]


def urllib_fetch(url: str, dest: Path) -> None:
    """Download ``url`` into ``dest`` (``urllib``, ``TIMEOUT_S`` per blocking operation)."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out)


def is_offline() -> bool:
    """True when ``FFMREC_OFFLINE`` is set to anything but ``""``/``0``: never download."""
    return os.environ.get("FFMREC_OFFLINE", "").strip() not in ("", "0")


def missing_file_error(
    path: Path, dataset: str, remote: RemoteFile | None = None, reason: str | None = None, folder: str | None = None
) -> DataError:
    """The one-line DataError for a data file that is not there (and could not be downloaded).

    ``folder``: the dataset's folder relative to the data directory (taken from ``remote`` when given); without either
    the file is the user's own and the message just asks to check the path.
    """
    why = f" ({reason})" if reason else ""
    folder = str(Path(remote.path).parent) if remote is not None else folder
    if remote is not None:
        fix = f"Download it from {remote.where} (or put it there), or set FFMREC_DATA_DIR to the folder that holds {folder}/."
    elif folder is not None:
        fix = f"Put it there, or set FFMREC_DATA_DIR to the folder that holds {folder}/."
    else:
        fix = "Check the path."
    return DataError(f"{dataset}: missing file {path}{why}. {fix}")


def require_file(path: Path, dataset: str, folder: str | None = None) -> Path:
    """``path`` if it exists, else the missing-file DataError (for files with no download source)."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file. Give the data file itself (e.g. {path}/interactions.csv), "
                        "or the folder's name if it holds interactions.csv.")
    if not path.is_file():
        raise missing_file_error(path, dataset, folder=folder)
    return path


def ensure_file(path: Path, source: RemoteFile, *, offline: bool | None = None, fetch: Fetch = urllib_fetch) -> Path:
    """``path``, downloading it from ``source`` first if it is absent (see :func:`ensure_files`)."""
    ensure_files([(path, source)], offline=offline, fetch=fetch)
    return path


def ensure_files(wanted: Iterable[tuple[Path, RemoteFile]], *, offline: bool | None = None, fetch: Fetch = urllib_fetch) -> None:
    """Make every ``path`` exist, downloading absent ones (each URL once); DataError when that is impossible.

    ``offline`` defaults to :func:`is_offline`; ``fetch(url, dest)`` does the transfer (injectable for tests).
    """
    missing = [(path, remote) for path, remote in wanted if not path.is_file()]
    if not missing:
        return
    offline = is_offline() if offline is None else offline
    if offline:
        path, remote = missing[0]
        raise missing_file_error(path, remote.dataset, remote, "not downloaded: FFMREC_OFFLINE is set")
    by_url: dict[str, list[tuple[Path, RemoteFile]]] = {}
    for path, remote in missing:
        by_url.setdefault(remote.url, []).append((path, remote))
    for url, files in by_url.items():
        _download(url, files, fetch)


def _download(url: str, files: list[tuple[Path, RemoteFile]], fetch: Fetch) -> None:
    first_path, first_remote = files[0]
    try:
        first_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=first_path.parent, prefix=".ffmrec-download-") as tmp:
            fetched = Path(tmp) / "download"
            fetch(url, fetched)
            for path, remote in files:
                staged = Path(tmp) / path.name
                if remote.member is None:
                    shutil.copyfile(fetched, staged)
                else:
                    with zipfile.ZipFile(fetched) as archive, archive.open(remote.member) as src, open(staged, "wb") as out:
                        shutil.copyfileobj(src, out)
                _verify(staged, path, remote)
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, path)  # atomic within one file system (the temp dir is next to the destination)
    except DataError:
        raise
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:  # URLError and timeouts are OSErrors
        path, remote = next(((p, r) for p, r in files if not p.is_file()), files[0])
        raise missing_file_error(path, remote.dataset, remote, f"download failed: {_reason(exc)}") from None


def _verify(staged: Path, path: Path, remote: RemoteFile) -> None:
    data = staged.read_bytes()
    if remote.sha256 is not None:
        digest, expected, kind = hashlib.sha256(data).hexdigest(), remote.sha256, "sha256"
    elif remote.git_blob is not None:
        digest, expected, kind = git_blob_id(data), remote.git_blob, "git blob id"
    else:
        return
    if digest != expected:
        raise DataError(
            f"{remote.dataset}: the file downloaded from {remote.where} for {path} has {kind} {digest}, expected {expected}; "
            f"it was not saved. Download it by hand from {remote.url} and check it, or put a verified copy at {path}."
        )


def git_blob_id(data: bytes) -> str:
    """Git's object id of a file with content ``data`` (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc) or type(exc).__name__
    return " ".join(text.split())
