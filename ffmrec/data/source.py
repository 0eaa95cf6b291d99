"""What every dataset reader provides: its input files, how to read them, and whether they are there.

A :class:`Source` is one dataset bound to a data directory. ``ffmrec.data.load_dataset`` drives them all the same way:
``input_files()`` (which may download), a cache lookup keyed by those files, then ``read()`` and
:func:`~ffmrec.data.preprocess.build_dataset` on a miss.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from ffmrec.data.preprocess import RawInteractions


@dataclass(frozen=True)
class SourceStatus:
    """Whether a dataset's files are on disk, for ``ffmrec datasets``."""

    name: str
    description: str
    path: Path  # the folder that holds (or should hold) the files
    present: bool  # loadable without downloading
    missing: list[str] = field(default_factory=list)  # required files that are absent
    partial: list[str] = field(default_factory=list)  # notes on partial data or absent optional files

    def as_dict(self) -> dict:
        """Plain data; ``notes`` joins the partial-data notes and the missing files, for one-line listings."""
        return {
            "name": self.name, "description": self.description, "path": str(self.path), "present": self.present,
            "missing": list(self.missing), "partial": list(self.partial),
            "notes": list(self.partial) + [f"missing {m}" for m in self.missing],
        }


class Source(ABC):
    """One dataset in one data directory. Subclasses set ``name`` and ``description`` and fill in the hooks."""

    name: str
    description: str

    @abstractmethod
    def input_files(self) -> list[Path]:
        """The files :meth:`read` reads, after making sure they exist (downloading where possible, else DataError)."""

    @abstractmethod
    def read(self) -> RawInteractions:
        """Parse the input files (DataError on malformed content)."""

    @abstractmethod
    def status(self) -> SourceStatus:
        """Which files are present, missing or partial; never downloads or raises for missing files."""
