"""Helpers shared by the API tests (a uniquely named module: every test folder has its own conftest)."""

import os
from pathlib import Path

import numpy as np
import pytest

#: A small SASRec: the tests check the path from training to recommendations, not accuracy.
TINY_MODEL = {"model.max_len": 20, "model.hidden_size": 16, "model.inner_size": 32, "model.num_layers": 1,
              "model.dropout": 0.1, "threads": 1}


def write_interactions(path: Path, num_users=30, num_items=20, seed=0) -> Path:
    """A tiny interactions CSV (users u0.., items i1..) with 5-10 events per user."""
    rng = np.random.default_rng(seed)
    lines = ["user,item,timestamp"]
    for u in range(num_users):
        for t, i in enumerate(rng.integers(1, num_items + 1, size=rng.integers(5, 11))):
            lines.append(f"u{u},i{i},{1000 + 10 * t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def require_ml100k() -> None:
    root = os.environ.get("FFMREC_DATA_DIR")
    if not root or not (Path(root) / "ml-100k" / "u.data").exists():
        pytest.skip("ml-100k is not under $FFMREC_DATA_DIR")
