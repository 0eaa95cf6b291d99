"""Checkpoints are read with torch's weights-only unpickler: a run folder from elsewhere can never execute code."""

import pickle

import numpy as np
import pytest
import torch

from ffmrec.errors import FFMRecError
from ffmrec.utils.io import load_checkpoint, load_columns, save_checkpoint, save_columns

RAN = []


class Payload:
    def __reduce__(self):  # unpickling this object calls RAN.append("pwned")
        return (RAN.append, ("pwned",))


def test_checkpoint_with_malicious_reduce_is_refused_without_running_it(tmp_path):
    path = tmp_path / "server.pt"
    torch.save({"params": {"w": torch.zeros(2)}, "evil": Payload()}, path)
    with pytest.raises(FFMRecError, match="refused to load") as info:
        load_checkpoint(path)
    assert RAN == []
    assert str(path) in str(info.value)


def test_plain_pickle_file_is_refused_without_running_it(tmp_path):
    path = tmp_path / "best_model.pt"
    path.write_bytes(pickle.dumps({"model": Payload()}, protocol=2))
    with pytest.raises(FFMRecError):
        load_checkpoint(path)
    assert RAN == []


def test_checkpoint_of_tensors_and_plain_values_round_trips(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "state": {"epoch": 2, "best": 0.5, "valid": {"HR@10": 0.1},
                                                          "errors": ["a"], "none": None}}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["state"] == state["state"]
    assert load_checkpoint(tmp_path / "missing.pt") is None


def test_columns_round_trip_and_object_arrays_are_refused(tmp_path):
    save_columns(tmp_path / "r.npz", {"user": np.arange(4), "rank": np.array([1, 5, 2, 9])})
    cols = load_columns(tmp_path / "r.npz")
    assert cols["rank"].tolist() == [1, 5, 2, 9] and cols["user"].tolist() == [0, 1, 2, 3]
    np.savez(tmp_path / "evil.npz", rank=np.array([Payload()], dtype=object))
    with pytest.raises(ValueError):
        load_columns(tmp_path / "evil.npz")
    assert RAN == []


def test_numpy_values_in_a_checkpoint_are_stored_as_plain_values(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"state": {"best": np.float64(0.25), "round": np.int64(3),
                                                  "ranks": np.arange(3), "pair": (np.int32(1), "a")}})
    back = load_checkpoint(tmp_path / "c.pt")["state"]
    assert back["best"] == 0.25 and type(back["best"]) is float and type(back["round"]) is int
    assert torch.equal(back["ranks"], torch.arange(3)) and back["pair"] == (1, "a")
