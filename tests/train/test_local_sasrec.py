"""local-sasrec: a model per user, trained on that user's history only, ranked by the shared evaluator."""

import json

import numpy as np
import pytest

from ffmrec.errors import ConfigError
from ffmrec.eval.metrics import ranking_metrics
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.tasks.sequential import SequentialTask
from ffmrec.train.local_only import LocalOnlyConfig, run_local_only, train_cohort

NUM_ITEMS = 30


def make_task(seqs, seed=0):
    cfg = SASRecConfig(max_len=8, hidden_size=16, num_heads=2, inner_size=32, dropout=0.3)
    return SequentialTask(LeaveOneOut(seqs), lambda nu: SASRec(cfg, NUM_ITEMS, nu), seed=seed, ks=(10,))


def sequences(num_users=10, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, NUM_ITEMS + 1, size=rng.integers(4, 14)) for _ in range(num_users)]


CFG = LocalOnlyConfig(epochs=(1, 3), lr=(0.5,), cohort_size=4)


def ranks_by_cohorts(task, cohorts):
    out = {}
    for cohort in cohorts:
        for key, cols in train_cohort(task, cohort, CFG).items():
            for stage, ranks in cols.items():
                out.setdefault((key, stage), []).append(ranks)
    return {k: np.concatenate(v) for k, v in out.items()}


def test_cohort_size_does_not_change_ranks():
    task = make_task(sequences())
    users = np.arange(10)
    by_two = ranks_by_cohorts(task, np.array_split(users, 5))
    by_five = ranks_by_cohorts(task, np.array_split(users, 2))
    assert by_two.keys() == by_five.keys()
    for key in by_two:
        np.testing.assert_array_equal(by_two[key], by_five[key])


def test_a_users_ranks_do_not_depend_on_other_users_data():
    seqs = sequences()
    other = [s.copy() for s in seqs]
    other[3] = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])  # another user's history, changed
    base = train_cohort(make_task(seqs), np.arange(10), CFG)
    changed = train_cohort(make_task(other), np.arange(10), CFG)
    keep = np.arange(10) != 3
    for key in base:
        for stage in ("valid", "test"):
            np.testing.assert_array_equal(base[key][stage][keep], changed[key][stage][keep])
    # the models are trained (not left at their initialisation): more epochs change the ranks
    trained = train_cohort(make_task(seqs), np.arange(10), LocalOnlyConfig(epochs=(1, 20), lr=(1.0,)))
    assert not np.array_equal(trained[(1.0, 1)]["valid"], trained[(1.0, 20)]["valid"])


def test_metrics_come_from_the_shared_evaluator_and_selection_uses_validation(tmp_path):
    task = make_task(sequences(12))
    cfg = LocalOnlyConfig(epochs=(1, 4), lr=(0.1, 1.0), cohort_size=5)
    res = run_local_only(task, cfg, tmp_path, ks=(10,), progress=False)
    ranked = train_cohort(task, np.arange(12), cfg)
    valid = {key: ranking_metrics(cols["valid"], (10,))["NDCG@10"] for key, cols in ranked.items()}
    best = max(cfg.candidates(), key=lambda key: (valid[key], -cfg.candidates().index(key)))
    assert res.best == {"lr": best[0], "epochs": best[1]}
    assert res.test == ranking_metrics(ranked[best]["test"], (10,))
    lines = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [(line["lr"], line["epoch"]) for line in lines] == cfg.candidates()
    assert (tmp_path / "test_ranks.npz").exists() and len(list((tmp_path / "cohorts").iterdir())) == 3
    again = run_local_only(task, cfg, tmp_path, ks=(10,), progress=False)  # resumes from the saved cohorts
    assert again.test == res.test


@pytest.mark.parametrize("bad,message", [({"epochs": ()}, "task.epochs"), ({"lr": (0.0,)}, "task.lr"),
                                         ({"cohort_size": 0}, "task.cohort_size"), ({"optimizer": "lbfgs"}, "optimizer")])
def test_bad_config_names_the_key(bad, message):
    with pytest.raises(ConfigError, match=message):
        LocalOnlyConfig(**bad)
