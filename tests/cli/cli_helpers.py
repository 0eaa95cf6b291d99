"""Helpers shared by the CLI tests (a uniquely named module: every test folder has its own conftest)."""

import numpy as np


def write_interactions(path, num_users=40, num_items=25, seed=0, min_len=4, max_len=12):
    rng = np.random.default_rng(seed)
    lines = ["user,item,timestamp"]
    for u in range(num_users):
        for t, i in enumerate(rng.integers(1, num_items + 1, size=rng.integers(min_len, max_len))):
            lines.append(f"u{u},i{i},{1000 + 10 * t}")
    path.write_text("\n".join(lines) + "\n")
    return path


TINY_MODEL = ["model.max_len=8", "model.hidden_size=16", "model.inner_size=32", "model.dropout=0.1"]
