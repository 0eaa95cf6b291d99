from __future__ import annotations

import pytest
from redial_tiny import write_tiny_redial

from ffmrec.data.redial_kg import read_movie_catalog


@pytest.fixture
def tiny_redial(tmp_path):
    return write_tiny_redial(tmp_path / "redial")


@pytest.fixture
def catalog(tiny_redial):
    return read_movie_catalog(tiny_redial)
