from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pkg"))
from redial_tiny import REAL_REDIAL, write_tiny_redial  # noqa: E402


@pytest.fixture
def tiny_redial(tmp_path):
    return write_tiny_redial(tmp_path / "redial")


@pytest.fixture
def real_redial() -> Path:
    if not (REAL_REDIAL / "test_data.jsonl").is_file():
        pytest.skip(f"{REAL_REDIAL} not staged: set FFMREC_DATA_DIR")
    return REAL_REDIAL
