"""CL4SRec: augmentations, the NT-Xent loss by hand, the federated task and the centralized objective."""

import math

import numpy as np
import pytest
import torch
from torch.func import vmap

from ffmrec.errors import ConfigError
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.eval.ranking import EvalConfig
from ffmrec.federated.client import ClientConfig, local_update
from ffmrec.federated.engines.cohort import Cohort
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.tasks.contrastive import (
    CL4SRecObjective,
    CL4SRecTask,
    ContrastiveConfig,
    contrastive_batches,
    crop,
    info_nce,
    mask,
    reorder,
    view_pairs,
)
from ffmrec.train.trainer import TrainConfig, train

NUM_ITEMS = 40
MASK_ID = NUM_ITEMS + 1


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_split(num_users=12, seed=0):
    rng = np.random.default_rng(seed)
    return LeaveOneOut([rng.integers(1, NUM_ITEMS + 1, size=rng.integers(3, 16)) for _ in range(num_users)])


def model_config(dropout=0.2, user_embedding=True, mask_token=True):
    return SASRecConfig(max_len=10, hidden_size=16, num_heads=2, inner_size=32, dropout=dropout,
                        user_embedding=user_embedding, mask_token=mask_token)


def make_task(dropout=0.2, pairs=3, seed=0, **task_kwargs):
    cfg = model_config(dropout)
    return CL4SRecTask(random_split(seed=seed), lambda nu: SASRec(cfg, NUM_ITEMS, nu), seed=seed,
                       cfg=ContrastiveConfig(pairs=pairs, **task_kwargs))


# --- augmentations -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 17])
def test_crop_keeps_a_contiguous_subsequence_of_the_right_length(n):
    seq = torch.arange(100, 100 + n)  # distinct items: position is recoverable
    for seed in range(20):
        out = crop(seq, 0.6, gen(seed))
        assert len(out) == max(1, math.floor(0.6 * n))
        start = int(out[0]) - 100
        assert out.tolist() == seq[start:start + len(out)].tolist()


@pytest.mark.parametrize("n", [1, 3, 5, 10, 17])
def test_mask_replaces_exactly_floor_gamma_n_items(n):
    seq = torch.arange(1, n + 1)
    for seed in range(20):
        out = mask(seq, 0.3, MASK_ID, gen(seed))
        masked = out == MASK_ID
        assert int(masked.sum()) == math.floor(0.3 * n + 1e-9)
        assert torch.equal(out[~masked], seq[~masked])  # everything else untouched


@pytest.mark.parametrize("n", [1, 2, 5, 10, 17])
def test_reorder_keeps_the_multiset_and_shuffles_one_contiguous_span(n):
    seq = torch.arange(1, n + 1)
    span = math.floor(0.6 * n)
    for seed in range(20):
        out = reorder(seq, 0.6, gen(seed))
        assert sorted(out.tolist()) == seq.tolist()
        moved = (out != seq).nonzero().flatten()
        if len(moved):
            assert int(moved[-1] - moved[0]) < span  # changes lie inside one window of `span` items


def test_ratios_by_hand():
    seq = torch.arange(1, 11)  # n = 10
    assert len(crop(seq, 0.6, gen())) == 6
    assert int((mask(seq, 0.3, MASK_ID, gen()) == MASK_ID).sum()) == 3
    assert torch.equal(reorder(seq, 0.0, gen()), seq) and torch.equal(mask(seq, 0.0, MASK_ID, gen()), seq)


def test_views_are_deterministic_in_the_generator_and_differ_across_seeds():
    history = np.arange(1, 13)
    cfg = ContrastiveConfig(pairs=4)
    a = view_pairs(history, 4, cfg, MASK_ID, gen(7))
    b = view_pairs(history, 4, cfg, MASK_ID, gen(7))
    c = view_pairs(history, 4, cfg, MASK_ID, gen(8))
    assert a.shape[:2] == (2, 4) and a.shape[2] <= len(history)
    assert torch.equal(a, b)
    assert not (a.shape == c.shape and torch.equal(a, c))


def test_config_errors_name_the_field_the_value_and_the_fix():
    with pytest.raises(ConfigError, match=r"task\.crop_ratio=1\.5 .*choose"):
        ContrastiveConfig(crop_ratio=1.5)
    with pytest.raises(ConfigError, match=r"task\.temperature=0"):
        ContrastiveConfig(temperature=0)
    with pytest.raises(ConfigError, match=r"task\.pairs=0"):
        ContrastiveConfig(pairs=0)
    with pytest.raises(ConfigError, match=r"model\.mask_token=true"):
        CL4SRecTask(random_split(), lambda nu: SASRec(model_config(mask_token=False), NUM_ITEMS, nu), seed=0,
                    cfg=ContrastiveConfig())
    CL4SRecTask(random_split(), lambda nu: SASRec(model_config(mask_token=False), NUM_ITEMS, nu), seed=0,
                cfg=ContrastiveConfig(mask_ratio=0.0))  # nothing masked: no token needed


# --- InfoNCE -------------------------------------------------------------------------------------------------------
def test_info_nce_by_hand():
    # views a=(1,0), b=(0,1), a'=(1,0), b'=(0,1): each anchor has similarity 1 to its positive and 0 to both negatives
    e = torch.eye(2)
    assert math.isclose(float(info_nce(e, e, 1.0)), math.log(1 + 2 / math.e), rel_tol=1e-6)
    # temperature 0.5 doubles every similarity: -log(e^2 / (e^2 + 2))
    assert math.isclose(float(info_nce(e, e, 0.5)), math.log(1 + 2 / math.e ** 2), rel_tol=1e-6)
    # one pair: the positive is the only other view, whatever the vectors
    assert float(info_nce(torch.tensor([[3.0, 1.0]]), torch.tensor([[-2.0, 5.0]]))) == 0.0
    # z1 = [(1,0), (0,0)], z2 = [(2,0), (0,0)]: anchor (1,0) sees 2 (positive), 0, 0; anchor (2,0) sees 2, 0, 0;
    # the zero views see 0 everywhere: -log(1/3) each
    z1, z2 = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    expected = (2 * -math.log(math.e ** 2 / (math.e ** 2 + 2)) + 2 * math.log(3)) / 4
    assert math.isclose(float(info_nce(z1, z2)), expected, rel_tol=1e-6)


def test_info_nce_leading_dimensions_are_independent_pools():
    z1, z2 = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    per_row = torch.stack([info_nce(z1[i], z2[i], 0.7) for i in range(3)]).mean()
    torch.testing.assert_close(info_nce(z1, z2, 0.7), per_row)


# --- the mask token in SASRec --------------------------------------------------------------------------------------
def test_mask_token_is_an_input_only_item_and_padding_stays_exact():
    torch.manual_seed(0)
    m = SASRec(model_config(dropout=0.0, user_embedding=False), NUM_ITEMS).eval()
    assert m.mask_token_id == MASK_ID and m.item_emb.weight.shape[0] == NUM_ITEMS + 2
    ids = torch.tensor([[3, MASK_ID, 7]])
    scores = m.full_sort_predict({"input_ids": ids})
    assert scores.shape == (1, NUM_ITEMS + 1) and scores[0, 0] == float("-inf")
    padded = m.full_sort_predict({"input_ids": torch.tensor([[0, 0, 3, MASK_ID, 7]])})
    torch.testing.assert_close(padded, scores)
    assert SASRec(model_config(mask_token=False), NUM_ITEMS, 1).mask_token_id is None


# --- the federated task --------------------------------------------------------------------------------------------
def test_objective_is_finite_and_differentiable_through_both_terms():
    task = make_task()
    params = {**task.initial_shared(), **task.initial_personal(0)}
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    batch = task.collate([task.prepare(0, 1)])
    loss = task.objective(params, batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    assert params["blocks.0.qkv.weight"].grad.abs().sum() > 0
    # the contrastive term alone moves the encoder
    with pytest.warns(UserWarning, match=r"task\.weight=0"):
        rec = make_task(weight=0.0).objective(params, batch)
    assert float(loss.detach()) != pytest.approx(float(rec.detach()))


def test_prepare_is_deterministic_per_seed_round_client_and_differs_across_clients():
    task = make_task()
    a, b = task.prepare(3, 5), task.prepare(3, 5)
    assert torch.equal(a["views"]["input_ids"], b["views"]["input_ids"])
    assert all(torch.equal(a["views"]["noise"][k], b["views"]["noise"][k]) for k in a["views"]["noise"])
    assert a["views"]["input_ids"].shape[:2] == (2, 3)
    other_round, other_client = task.prepare(3, 6), task.prepare(4, 5)
    assert not torch.equal(a["views"]["noise"]["emb"][..., :1, :], other_round["views"]["noise"]["emb"][..., :1, :])
    assert not torch.equal(a["views"]["noise"]["emb"][..., :1, :], other_client["views"]["noise"]["emb"][..., :1, :])
    # the next-item part is FedSASRec's (the views use their own stream)
    assert torch.equal(a["noise"]["emb"], super(CL4SRecTask, task).prepare(3, 5)["noise"]["emb"])


def test_views_are_private_arrays():
    task = make_task()
    private = task.private_arrays(2, 1)
    assert torch.equal(private["prepare/views/input_ids"], task.prepare(2, 1)["views"]["input_ids"])
    assert "prepare/views/noise/emb" in private and "history" in private


def test_local_update_under_vmap_equals_a_per_client_loop():
    task = make_task()
    shared = task.initial_shared()
    cfg = ClientConfig(lr=0.5, personal_lr=0.1, local_steps=2)
    clients = [0, 3, 5, 8]
    prepared = [task.prepare(c, 2) for c in clients]
    rows = {k: torch.stack([task.initial_personal(c)[k] for c in clients]) for k in task.personal_names}
    with torch.no_grad():
        deltas, own, losses = vmap(lambda r, e: local_update(task.objective, shared, r, e, cfg),
                                   randomness="error")(rows, task.collate(prepared))
    for i, (c, example) in enumerate(zip(clients, prepared)):  # each client alone, unpadded
        d, o, loss = local_update(task.objective, shared, task.initial_personal(c), example, cfg)
        torch.testing.assert_close(losses[i], loss, atol=1e-5, rtol=1e-5)
        for k in d:
            torch.testing.assert_close(deltas[k][i], d[k], atol=1e-5, rtol=1e-4)
        for k in o:
            torch.testing.assert_close(own[k][i], o[k], atol=1e-5, rtol=1e-4)


def test_fused_round_equals_the_per_client_round():
    """The fused path sums each client's own weighted CE + InfoNCE: the same mean update as client by client."""
    from ffmrec.federated.server import aggregate
    from ffmrec.federated.strategies import FedAvg

    task = make_task()
    assert task.fusable
    cfg = ClientConfig(lr=0.5, personal_lr=0.1)
    shared = task.initial_shared()
    fused, per_client = Cohort(task, chunk_size=4), Cohort(task, chunk_size=3, fused=False)
    assert fused.can_fuse(cfg, want_records=False) and not per_client.can_fuse(cfg, want_records=False)
    out_f = fused.train(1, range(task.num_clients), shared, cfg, want_records=False)
    records, _, failures = per_client.train(1, range(task.num_clients), shared, cfg, want_records=True)
    assert failures == [] and out_f[2] == []
    from ffmrec.federated.engines.base import RoundResult

    mean_f, loss_f, n_f = aggregate(RoundResult(partials=out_f[1]), FedAvg())
    mean_p, loss_p, n_p = aggregate(RoundResult(records=records), FedAvg())
    assert n_f == n_p == sum(task.weight(c) > 0 for c in range(task.num_clients))
    assert loss_f == pytest.approx(loss_p, rel=1e-5)
    for k in shared:
        torch.testing.assert_close(mean_f[k], mean_p[k], atol=1e-6, rtol=1e-4)
    for k in fused.store.table:  # and the same personal rows on every device
        torch.testing.assert_close(fused.store.table[k], per_client.store.table[k], atol=1e-6, rtol=1e-4)
    assert all(set(r.tensors) == set(task.shared_names) for r in records)  # views and personal rows stay home


# --- centralized ---------------------------------------------------------------------------------------------------
def test_centralized_batches_carry_one_pair_per_user_seeded_by_seed_epoch_user():
    split = random_split()
    cfg = ContrastiveConfig(pairs=1)
    make = contrastive_batches(split.train_sequences(), 10, 5, cfg, MASK_ID, seed=3)
    first = list(make(1, np.random.default_rng(0)))
    again = list(make(1, np.random.default_rng(0)))
    other_epoch = list(make(2, np.random.default_rng(0)))
    for b, c in zip(first, again):
        assert b["views"]["input_ids"].shape[:3] == (len(b["users"]), 2, 1)
        assert torch.equal(b["views"]["input_ids"], c["views"]["input_ids"])
    assert any(not torch.equal(b["views"]["input_ids"], c["views"]["input_ids"]) for b, c in zip(first, other_epoch)
               if b["views"]["input_ids"].shape == c["views"]["input_ids"].shape)


def test_centralized_training_with_in_batch_negatives(tmp_path):
    split = random_split(num_users=20)
    torch.manual_seed(0)
    model = SASRec(model_config(dropout=0.0, user_embedding=False), NUM_ITEMS)
    cfg = ContrastiveConfig(pairs=1)
    objective = CL4SRecObjective(model, cfg, in_batch_negatives=True)
    make = contrastive_batches(split.train_sequences(), model.max_len, 8, cfg, model.mask_token_id, seed=1)
    batch = next(iter(make(1, np.random.default_rng(0))))
    with torch.no_grad():  # InfoNCE over 2B > 2 views is positive
        assert float(objective(batch)) > float(model.calculate_loss(batch))
    result = train(model, split, TrainConfig(epochs=2, batch_size=8, patience=0), EvalConfig(ks=(10,)), tmp_path,
                   seed=1, progress=False, objective=objective, make_batches=make)
    assert result.epochs_run == 2 and np.isfinite(result.test["NDCG@10"])

