import pytest
from lumos_helpers import knowledge, write_text_dataset


@pytest.fixture
def know():
    return knowledge()


@pytest.fixture
def text_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "data"
    folder.mkdir()
    return write_text_dataset(folder)
