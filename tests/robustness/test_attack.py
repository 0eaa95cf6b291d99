import numpy as np
import pytest
import torch

from ffmrec.data.batching import pad_histories
from ffmrec.errors import ConfigError
from ffmrec.federated.adversary import (
    AdversaryConfig,
    PoisonedTask,
    build_adversary,
    fake_history,
    item_counts,
    malicious_clients,
    unpopular_target,
)
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.fast import FastSimulator
from ffmrec.federated.server import check_round

SGD = ClientConfig(lr=0.5, personal_lr=0.01)


def test_malicious_clients_are_a_seeded_rounded_share():
    a = malicious_clients(943, 0.05, seed=1)
    assert len(a) == 47 and len(set(a.tolist())) == 47 and a.min() >= 0 and a.max() < 943
    assert np.array_equal(a, malicious_clients(943, 0.05, seed=1))
    assert not np.array_equal(a, malicious_clients(943, 0.05, seed=2))
    assert len(malicious_clients(943, 0.01, seed=1)) == 9 and len(malicious_clients(30, 0.0, seed=1)) == 0


def test_item_counts_skip_held_out_items_and_target_is_unpopular():
    sequences = [np.array([1, 2, 3, 9, 9]), np.array([1, 1, 4, 9, 9])]
    counts = item_counts(sequences, num_items=9)
    assert counts.tolist() == [0, 3, 1, 1, 1, 0, 0, 0, 0, 0]
    # trained counts 3, 1, 1, 1 have median 1: nothing lies below it, so any trained item may be chosen
    assert unpopular_target(counts, seed=0) in (1, 2, 3, 4)
    counts = np.array([0, 100, 50, 40, 2, 1, 1, 0])
    # trained counts 100, 50, 40, 2, 1, 1 have median 21: items 4, 5, 6; item 7 was never trained
    assert {unpopular_target(counts, seed) for seed in range(30)} == {4, 5, 6}


def test_fake_history_draws_only_popular_items_and_never_the_target():
    counts = np.array([0, 100, 50, 40, 2, 1, 1, 0])
    h = fake_history(counts, 500, popular_items=3, rng=np.random.default_rng(0), exclude=2)
    assert set(h.tolist()) <= {1, 3, 4} and len(h) == 500
    assert (h == 1).sum() > (h == 4).sum()  # drawn by popularity


def _records(task, rnd=1):
    engine = FastSimulator(task, chunk_size=32)
    clients = list(range(task.num_clients))
    result = engine.train_round(rnd, clients, task.initial_shared(), SGD, want_records=True)
    return check_round(result, task.shared_specs(), task.max_weight)


def test_malicious_records_pass_the_driver_checks_claim_the_largest_weight_and_honest_ones_are_unchanged(
        make_task, make_split):
    split = make_split(num_users=20)
    plain = _records(make_task(split))
    task = build_adversary(make_task(split), AdversaryConfig(fraction=0.2, boost=10.0), split.sequences, 40, seed=0)
    assert isinstance(task, PoisonedTask) and len(task.malicious) == 4
    checked = _records(task)
    assert not checked.failures and len(checked.records) == 20  # every crafted record conforms to the protocol
    by_id = {r.client_id: r for r in checked.records}
    for r in plain.records:
        if r.client_id in task.malicious:
            assert by_id[r.client_id].weight == task.max_weight  # a full-length fake history
        else:
            for k, v in r.tensors.items():
                torch.testing.assert_close(by_id[r.client_id].tensors[k], v, rtol=1e-5, atol=1e-6)
    norms = {c: sum(float(v.double().pow(2).sum()) for v in r.tensors.values()) ** 0.5 for c, r in by_id.items()}
    honest = np.median([n for c, n in norms.items() if c not in task.malicious])
    assert min(norms[c] for c in task.malicious) > 3 * honest  # boosted to survive averaging


def _attack_round_scores(task, split):
    """The honest users' scores over every item before and after one averaged round of the attackers alone (local lr
    0.05), and those users' test histories."""
    shared = task.initial_shared()
    engine = FastSimulator(task, chunk_size=8)
    result = engine.train_round(1, sorted(task.malicious), shared, ClientConfig(lr=0.05), want_records=True)
    poisoned = {k: shared[k] + torch.stack([r.tensors[k] for r in result.records]).mean(0) for k in shared}
    honest = np.array([c for c in range(task.num_clients) if c not in task.malicious])
    model = task.inner.build_model(len(honest))
    rows = engine.cohort.store.rows(honest)
    histories, _, _ = split.stage("test", honest)
    batch = {"input_ids": pad_histories(histories, task.inner.max_len), "users": torch.arange(len(honest))}

    def scores(params):
        model.load_state_dict({**params, **{k: v.flatten(0, 1) for k, v in rows.items()}})
        model.eval()
        with torch.no_grad():
            return model.full_sort_predict(batch)

    return scores(shared), scores(poisoned), histories


def _target_ranks(scores, target):
    return (scores > scores[:, target:target + 1]).sum(1) + 1


def test_a_malicious_update_lifts_the_target_in_honest_users_rankings(make_task, make_split):
    split = make_split(num_users=30)
    task = build_adversary(make_task(split), AdversaryConfig(fraction=0.1, boost=1.0), split.sequences, 40, seed=0)
    before, after, _ = _attack_round_scores(task, split)
    before, after = (float(_target_ranks(s, task.target).float().mean()) for s in (before, after))
    assert after < before / 2  # one averaged malicious step moves the target well up everyone's ranking


def test_a_target_row_attacker_moves_only_the_targets_embedding_row_and_honest_updates_are_unchanged(
        make_task, make_split):
    split = make_split(num_users=20)
    plain = {r.client_id: r.tensors for r in _records(make_task(split)).records}
    task = build_adversary(make_task(split), AdversaryConfig(fraction=0.2, boost=10.0, attack="target_row"),
                           split.sequences, 40, seed=0)
    checked = _records(task)  # vmapped over clients: the mask must be tensor arithmetic on the attacker flag
    assert not checked.failures and len(checked.records) == 20
    for r in checked.records:
        if r.client_id not in task.malicious:
            for k, v in r.tensors.items():
                torch.testing.assert_close(v, plain[r.client_id][k], rtol=1e-5, atol=1e-6)
            continue
        for k, v in r.tensors.items():
            if k != "item_emb.weight":
                assert torch.count_nonzero(v) == 0, k  # the encoder, positions and norms are held
        rows = torch.nonzero(r.tensors["item_emb.weight"].abs().sum(1)).flatten().tolist()
        assert rows == [task.target]


def test_a_target_row_attack_at_a_large_boost_lifts_the_target_and_leaves_other_items_scores_alone(
        make_task, make_split):
    split = make_split(num_users=30)
    task = build_adversary(make_task(split), AdversaryConfig(fraction=0.1, boost=50.0, attack="target_row"),
                           split.sequences, 40, seed=0)
    before, after, histories = _attack_round_scores(task, split)
    others = [i for i in range(before.shape[1]) if i != task.target]
    unaware = [u for u, h in enumerate(histories) if task.target not in h.tolist()]  # the target not in the input
    assert len(unaware) > 20
    torch.testing.assert_close(after[unaware][:, others], before[unaware][:, others])  # no other score moves

    def top10(scores):
        return float((_target_ranks(scores, task.target) <= 10).float().mean())

    assert top10(after) > top10(before) + 0.2  # (an untrained model: users' states point many ways)


def test_poisoned_task_summarizes_honest_users_only(make_task, make_split):
    split = make_split(num_users=30)
    task = build_adversary(make_task(split), AdversaryConfig(fraction=0.2), split.sequences, 40, seed=0)
    clients = np.arange(30)
    honest = np.array([c not in task.malicious for c in clients])
    columns = {"rank": np.where(honest, 1, 40), "exposure_rank": np.where(honest, 50, 1),
               "honest": honest.astype(np.int64)}
    metrics = task.summarize(columns)
    assert metrics["HR@10"] == 1.0 and metrics["ER@10"] == 0.0
    assert set(task.failed_columns(3)) == {"rank", "exposure_rank", "honest"}


def test_adversary_config_errors_name_the_parameter_and_the_fix(make_task, make_split):
    with pytest.raises(ConfigError, match=r"federated.adversary.fraction=0.6 must lie in \[0, 0.5\)"):
        AdversaryConfig(fraction=0.6)
    with pytest.raises(ConfigError, match="federated.adversary.attack='pieck' is unknown"):
        AdversaryConfig(attack="pieck")
    with pytest.raises(ConfigError, match="federated.adversary.boost=0"):
        AdversaryConfig(boost=0)
    split = make_split()
    text = make_task(split)
    text.embedding_params = ()  # a model without an id table (model.item_repr=text)
    with pytest.raises(ConfigError, match="attack=target_row moves the target's row of the id embedding table"):
        build_adversary(text, AdversaryConfig(fraction=0.1, attack="target_row"), split.sequences, 40, 0)
    with pytest.raises(ConfigError, match=r"target_item=99 is not an item of the dataset \(ids 1..40\)"):
        build_adversary(make_task(split), AdversaryConfig(fraction=0.1, target_item=99), split.sequences, 40, 0)


def test_no_adversary_leaves_the_task_alone_and_exposure_only_keeps_it_fusable(make_task, make_split):
    split = make_split()
    task = make_task(split)
    assert build_adversary(task, AdversaryConfig(), split.sequences, 40, 0) is task
    wrapped = build_adversary(make_task(split), AdversaryConfig(measure_exposure=True), split.sequences, 40, 0)
    assert isinstance(wrapped, PoisonedTask) and not wrapped.malicious and wrapped.fusable


def test_cli_config_wires_the_adversary_and_the_noise():
    from ffmrec.recipes import load_recipe

    config = load_recipe("fedsasrec", "ml-100k", ["federated.adversary.fraction=0.05", "federated.noise.p=0.2",
                                                   "federated.adversary.target_item=12"])
    assert config.federated.adversary.fraction == 0.05 and config.federated.adversary.target_item == 12
    assert config.federated.noise.p == 0.2
    with pytest.raises(ConfigError, match="federated.adversary.fraction=0.7"):
        load_recipe("fedsasrec", "ml-100k", ["federated.adversary.fraction=0.7"])
