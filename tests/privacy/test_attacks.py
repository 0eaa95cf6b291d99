"""The attack suite on synthetic recordings (a leaky and a clean artifact) and through ``ffmrec attack``."""

import numpy as np
import pytest
import torch

from ffmrec.cli import main
from ffmrec.errors import FFMRecError
from ffmrec.privacy.attacks import (
    EVALUATION,
    RAW,
    AttackConfig,
    egress_features,
    evaluation_features,
    raw_features,
    recorded_rounds,
    run_attacks,
)
from ffmrec.privacy.report import add_evaluation_attack, render, summary
from ffmrec.privacy.traits import Traits
from ffmrec.utils.io import save_checkpoint, save_columns, write_json

USERS, ITEMS = 160, 30


def _record(run_dir, rnd, users, gender, rng):
    """One recorded round: an item table whose touched rows depend on gender, and a dense tensor of pure noise."""
    table = torch.zeros(len(users), ITEMS + 1, 4)
    for i, u in enumerate(users):
        pool = np.arange(1, 16) if gender[u] else np.arange(15, ITEMS + 1)  # men and women prefer other items
        table[i, rng.choice(pool, 5, replace=False)] = torch.randn(5, 4, generator=torch.Generator().manual_seed(int(u)))
    save_checkpoint(run_dir / "egress" / f"round-{rnd:05d}.pt", {
        "client_ids": torch.as_tensor(users, dtype=torch.long),
        "weights": torch.full((len(users),), 5, dtype=torch.long),
        "metrics": {"loss": torch.rand(len(users))},
        "tensors": {"item_emb.weight": table, "w": torch.randn(len(users), 8, 3)},
    })


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    gender = rng.integers(0, 2, USERS)
    order = rng.permutation(USERS)
    _record(run_dir, 3, np.sort(order[:100]), gender, rng)
    _record(run_dir, 4, np.sort(order[60:]), gender, rng)  # users 60..99 of the order appear twice
    traits = Traits({"gender": gender, "age": rng.integers(0, 3, USERS)})
    return run_dir, traits


def test_features_cover_every_recorded_user_once_per_artifact(recorded):
    run_dir, _ = recorded
    assert recorded_rounds(run_dir) == [3, 4]
    arts = egress_features(run_dir, projection_dim=16)
    assert set(arts) >= {"touched:item_emb.weight", "rownorm:item_emb.weight", "values:item_emb.weight",
                         "values:dense", "metadata", "all"}
    for art in arts.values():
        assert art.users.tolist() == list(range(USERS)) and len(art.features) == USERS
    assert arts["touched:item_emb.weight"].features.shape == (USERS, ITEMS + 1)
    assert arts["values:dense"].features.shape == (USERS, 16)
    # the server infers the items a user used: its `weight` (5) rows that moved most, here exactly the touched rows
    inferred, touched = arts["inferred:item_emb.weight"].features, arts["touched:item_emb.weight"].features
    assert np.array_equal(inferred, touched) and set(inferred.sum(1).tolist()) == {5.0}



def test_dense_noise_on_every_row_does_not_hide_an_embedding_table_from_the_row_attacks(tmp_path):
    """Local-DP-style noise on every row leaves no row unchanged; the table is still an embedding table (by name),
    and the rows a user touched, which move most, are still inferred."""
    gen = torch.Generator().manual_seed(0)
    users = np.arange(6)
    table = torch.randn(len(users), ITEMS + 1, 4, generator=gen) * 0.01  # noise on every row
    sizes = [3, 4, 5, 3, 4, 5]  # each user's number of examples, which its record states
    starts = np.cumsum([1] + sizes[:-1])
    touched = [np.arange(a, a + n) for a, n in zip(starts, sizes)]  # each row touched by one user
    for i, rows in enumerate(touched):
        table[i, rows] += 1.0
    save_checkpoint(tmp_path / "egress" / "round-00001.pt", {
        "client_ids": torch.as_tensor(users, dtype=torch.long), "weights": torch.as_tensor(sizes),
        "metrics": {}, "tensors": {"item_emb.weight": table, "w": torch.randn(6, 8, 3, generator=gen) * 0.01}})
    arts = egress_features(tmp_path, projection_dim=16)
    assert "inferred:item_emb.weight" in arts and "inferred:w" not in arts  # w: no name, no untouched row
    inferred = arts["inferred:item_emb.weight"].features
    assert [np.flatnonzero(row).tolist() for row in inferred] == [rows.tolist() for rows in touched]

def test_attacks_find_the_leaky_artifact_and_not_the_noise(recorded):
    run_dir, traits = recorded
    arts = egress_features(run_dir, projection_dim=16)
    cfg = AttackConfig(bootstrap=100, permutations=100, traits=("gender", "age"))
    res = run_attacks({k: arts[k] for k in ("touched:item_emb.weight", "values:dense")}, traits, cfg)
    leaky, clean = res["touched:item_emb.weight"]["gender"], res["values:dense"]["gender"]
    assert leaky["auc"] > 0.9 and leaky["auc_p"] < 0.02 and leaky["auc_ci"][0] > 0.8
    assert abs(clean["auc"] - 0.5) < 0.15 and clean["auc_ci"][0] < 0.5 < clean["auc_ci"][1]
    assert leaky["attacker"] in ("logreg", "mlp") and leaky["test_users"] == USERS - round(0.3 * USERS)
    assert abs(res["values:dense"]["age"]["accuracy"] - res["values:dense"]["age"]["majority_rate"]) < 0.15
    s = summary({**res, RAW: res["touched:item_emb.weight"]})
    assert s["gender_auc_worst_artifact"] == leaky["auc"] and s["gender_auc"] == leaky["auc"]
    assert "| touched:item_emb.weight | gender |" in render({"config": {"attackers": ["logreg"], "labelled_fraction": 0.3,
                                                                       "seed": 0}, "rounds": [3, 4], "users": USERS,
                                                            "users_recorded": USERS, "summary": s, "results": res})


def test_the_ranks_devices_report_at_evaluation_are_attacked_too_even_after_the_recordings_are_gone(recorded,
                                                                                                   tmp_path):
    """A report made before the ``evaluation`` artifact gains it (the egress deleted meanwhile): ranks that depend on
    gender become the worst artifact of the headline."""
    run_dir, traits = recorded
    gender = traits.labels["gender"]
    ranks = np.where(gender == 1, 3, 300) + np.arange(USERS) % 7  # women's held-out items rank far higher
    save_columns(tmp_path / "test_ranks.npz", {"user": np.arange(USERS), "rank": ranks})
    art = evaluation_features(tmp_path)[EVALUATION]
    assert art.users.tolist() == list(range(USERS)) and np.allclose(art.features[:, 0], np.log1p(ranks))
    cfg = AttackConfig(bootstrap=50, permutations=50, traits=("gender",))
    res = run_attacks({"values:dense": egress_features(run_dir, projection_dim=16)["values:dense"]}, traits, cfg)
    write_json(tmp_path / "attack.json", {"config": {**cfg.__dict__}, "rounds": [3, 4], "users": USERS,
                                          "users_recorded": USERS, "summary": summary(res), "results": res})
    doc = add_evaluation_attack(tmp_path, traits)
    assert set(doc["results"]) == {"values:dense", EVALUATION}
    assert doc["results"]["values:dense"] == res["values:dense"]  # nothing else redone
    assert doc["summary"]["gender_auc_worst_artifact"] == doc["results"][EVALUATION]["gender"]["auc"] > 0.95
    assert "| evaluation | gender |" in (tmp_path / "attack.md").read_text()
    assert add_evaluation_attack(tmp_path, traits) == doc  # already there: unchanged
    assert evaluation_features(tmp_path / "missing") == {}


def test_raw_features_hold_ratings_or_ones():
    art = raw_features([np.array([1, 3]), np.array([2])], 3, ratings=[np.array([5.0, 2.0]), np.array([4.0])])
    assert art.features.tolist() == [[5, 0, 2], [0, 4, 0]] and art.kind == "indicator"
    assert raw_features([np.array([2])], 3).features.tolist() == [[0, 1, 0]]


def test_a_run_without_recordings_fails_clearly(tmp_path, capsys):
    with pytest.raises(FFMRecError, match="no recorded rounds"):
        egress_features(tmp_path)
    (tmp_path / "config.yaml").write_text("method: fedsasrec\ndataset: ml-100k\n")
    assert main(["attack", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ffmrec: error:") and "record_rounds" in err[0]


def test_the_age_headline_is_the_artifact_most_above_its_own_majority_rate():
    """Artifacts cover different users (recorded rounds, evaluation): the headline compares each accuracy with its own
    test users' majority rate, not raw accuracies."""
    def r(auc, acc, majority):
        return {"auc": auc, "auc_ci": [auc - 0.05, auc + 0.05], "accuracy": acc, "majority_rate": majority,
                "balanced_accuracy": 0.5}
    results = {"values:dense": {"gender": r(0.55, 0.6, 0.7), "age": r(0.6, 0.33, 0.30)},
               EVALUATION: {"gender": r(0.50, 0.7, 0.7), "age": r(0.5, 0.35, 0.35)}}
    s = summary(results)
    assert (s["age_acc"], s["age_majority_rate"]) == (0.33, 0.30)  # +0.03 beats the evaluation's 0.35 at chance
    assert s["gender_auc_worst_artifact"] == 0.55 and s["age_auc_worst_artifact"] == 0.6
