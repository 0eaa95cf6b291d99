import numpy as np
import pytest

from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.tasks.sequential import SequentialTask

NUM_ITEMS = 40


def make_split(num_users=30, seed=0, num_items=NUM_ITEMS):
    rng = np.random.default_rng(seed)
    return LeaveOneOut([rng.integers(1, num_items + 1, size=rng.integers(4, 16)) for _ in range(num_users)])


def make_task(split=None, seed=0, max_len=10, num_items=NUM_ITEMS, dropout=0.0):
    split = split if split is not None else make_split(seed=seed, num_items=num_items)
    cfg = SASRecConfig(max_len=max_len, hidden_size=16, num_heads=2, inner_size=32, dropout=dropout,
                       user_embedding=True)
    return SequentialTask(split, lambda nu: SASRec(cfg, num_items, nu), seed=seed, ks=(10, 20))


@pytest.fixture(name="make_task")
def make_task_fixture():
    return make_task


@pytest.fixture(name="make_split")
def make_split_fixture():
    return make_split
