"""A tiny interactions file shared by the engine tests (a uniquely named module: no __init__.py in tests/)."""

import numpy as np


def write_interactions(path, num_users=24, num_items=20, seed=3):
    rng = np.random.default_rng(seed)
    rows = ["user,item,timestamp"]
    for u in range(num_users):
        for t, i in enumerate(rng.integers(1, num_items + 1, size=rng.integers(4, 10))):
            rows.append(f"{u},{i},{t}")
    path.write_text("\n".join(rows) + "\n")
    return path
