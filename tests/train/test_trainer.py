import json

import numpy as np
import torch

from ffmrec.data.batching import next_item_batch, num_examples
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.eval.ranking import EvalConfig
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.train.trainer import TrainConfig, train


def split(num_users=30, num_items=20, seed=0):
    rng = np.random.default_rng(seed)
    return LeaveOneOut([rng.integers(1, num_items + 1, size=rng.integers(4, 12)) for _ in range(num_users)])


def model():
    torch.manual_seed(0)
    return SASRec(SASRecConfig(max_len=8, hidden_size=16, inner_size=32, dropout=0.0), num_items=20)


def test_early_stopping_on_validation_ndcg(tmp_path):
    # a learning rate too small to change any score: the first evaluation stays the best, patience 2 stops at epoch 3
    result = train(model(), split(), TrainConfig(epochs=50, lr=1e-12, patience=2, batch_size=8), EvalConfig(ks=(10,)),
                   tmp_path, seed=1, progress=False)
    assert result.epochs_run == 3 and result.best_epoch == 1
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3


def test_training_improves_validation_and_test_uses_best_model(tmp_path):
    s = split()
    result = train(model(), s, TrainConfig(epochs=15, lr=0.01, patience=0, batch_size=8), EvalConfig(ks=(10,)),
                   tmp_path, seed=1, progress=False)
    history = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history[-1]["loss"] < history[0]["loss"]
    assert result.best_valid["NDCG@10"] == max(h["valid/NDCG@10"] for h in history)
    assert result.best_epoch == 1 + int(np.argmax([h["valid/NDCG@10"] for h in history]))


def test_next_item_batch_by_hand():
    b = next_item_batch([np.array([5, 6, 7, 8]), np.array([3, 4])], np.array([0, 1]), max_len=2)
    assert b["input_ids"].tolist() == [[6, 7], [0, 3]]
    assert b["targets"].tolist() == [[7, 8], [0, 4]]
    assert num_examples(np.array([5, 6, 7, 8]), max_len=2) == 2 and num_examples(np.array([1]), max_len=5) == 0
