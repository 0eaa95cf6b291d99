import numpy as np
import pytest

from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.tasks.sequential import SequentialTask

NUM_ITEMS = 40


def make_task(num_users=30, seed=0, user_embedding=True, dropout=0.0, max_len=10, loss="ce"):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, NUM_ITEMS + 1, size=rng.integers(3, 16)) for _ in range(num_users)]
    cfg = SASRecConfig(max_len=max_len, hidden_size=16, num_heads=2, inner_size=32, dropout=dropout,
                       user_embedding=user_embedding, loss=loss, num_negatives=8)
    return SequentialTask(LeaveOneOut(seqs), lambda nu: SASRec(cfg, NUM_ITEMS, nu), seed=seed, ks=(10,))


@pytest.fixture(name="make_task")
def make_task_fixture():
    return make_task


@pytest.fixture
def task():
    return make_task()
