import pytest
from cli_helpers import write_interactions


@pytest.fixture
def tiny_csv(tmp_path):
    return write_interactions(tmp_path / "interactions.csv")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FFMREC_OFFLINE", "1")
