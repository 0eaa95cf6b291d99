"""The LUMOS client task: views made in ``prepare`` (private, deterministic), the fused path exact, the egress audit
passing end to end in the fast engine, the ablations, the cold-item protocol and the LLM backend end to end."""

import numpy as np
import pytest
import torch
from lumos_helpers import NUM_ITEMS, knowledge

from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.base import RoundResult
from ffmrec.federated.engines.cohort import Cohort
from ffmrec.fm.views import EmbeddingViewConfig, EmbeddingViews
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe
from ffmrec.tasks.lumos import LUMOSConfig, LUMOSTask

TINY = ["model.max_len=8", "model.hidden_size=16", "model.inner_size=32", "model.dropout=0.2",
        "federated.rounds=2", "federated.clients_per_round=6", "federated.eval_every=1", "federated.server_lr=1.0",
        "federated.strategy=fedavg", "federated.client.lr=0.5", "federated.chunk_size=3", "threads=1"]


def make_task(item_repr="hybrid", seed=0, **cfg):
    know = knowledge(NUM_ITEMS)
    rng = np.random.default_rng(seed)
    split = LeaveOneOut([rng.integers(1, NUM_ITEMS + 1, size=rng.integers(4, 12)) for _ in range(10)])
    model_cfg = SASRecConfig(max_len=8, hidden_size=16, num_heads=2, inner_size=32, dropout=0.2,
                             user_embedding=True, item_repr=item_repr)
    config = LUMOSConfig(**cfg)
    views = EmbeddingViews(know, EmbeddingViewConfig(), config.kinds)
    return LUMOSTask(split, lambda nu: SASRec(model_cfg, NUM_ITEMS, nu, know.table), seed=seed, cfg=config,
                     generator=views)


def test_prepare_writes_the_history_and_each_view_of_every_set_deterministically():
    task = make_task()
    a, b, other = task.prepare(3, 2), task.prepare(3, 2), task.prepare(3, 3)
    ids = a["views"]["input_ids"]
    assert ids.shape[:2] == (4, 2)  # history, future, paraphrase, counterfactual; 2 sets
    assert torch.equal(ids, b["views"]["input_ids"]) and not torch.equal(ids, other["views"]["input_ids"])
    history = torch.as_tensor(task.histories[3][-8:])
    assert torch.equal(ids[0, 0][-len(history):], history)
    continuation = ids[1, 0][-3:]  # the future view is the history continued by items not in it
    assert not torch.isin(continuation, history).any()
    private = task.private_arrays(3, 2)
    assert torch.equal(private["prepare/views/input_ids"], ids)


@pytest.mark.parametrize("drop,rows", [("future", 3), ("paraphrase", 3), ("counterfactual", 3)])
def test_ablation_removes_one_view(drop, rows):
    task = make_task(**{drop: False})
    assert task.prepare(0, 1)["views"]["input_ids"].shape[0] == rows
    assert drop not in task.loss.rows


def test_fused_round_equals_the_per_client_round():
    from ffmrec.federated.server import aggregate
    from ffmrec.federated.strategies import FedAvg

    task = make_task()
    cfg = ClientConfig(lr=0.5, personal_lr=0.1)
    shared = task.initial_shared()
    fused, per_client = Cohort(task, chunk_size=4), Cohort(task, chunk_size=3, fused=False)
    assert fused.can_fuse(cfg, want_records=False)
    out_f = fused.train(1, range(task.num_clients), shared, cfg, want_records=False)
    records, _, failures = per_client.train(1, range(task.num_clients), shared, cfg, want_records=True)
    assert failures == [] and out_f[2] == []
    mean_f, loss_f, _ = aggregate(RoundResult(partials=out_f[1]), FedAvg())
    mean_p, loss_p, _ = aggregate(RoundResult(records=records), FedAvg())
    assert loss_f == pytest.approx(loss_p, rel=1e-5)
    for k in shared:
        torch.testing.assert_close(mean_f[k], mean_p[k], atol=1e-6, rtol=1e-4)
    assert {"text_proj.weight", "item_emb.weight"} <= set(mean_f)
    assert all(set(r.tensors) == set(task.shared_names) for r in records)


def test_the_tri_view_term_changes_the_update():
    shared = make_task().initial_shared()
    cfg = ClientConfig(lr=0.5)
    with_cl = Cohort(make_task(), chunk_size=10).train(1, range(10), shared, cfg, False)[1][0].sums
    without = Cohort(make_task(future_weight=0.0, paraphrase_weight=0.0), chunk_size=10).train(
        1, range(10), shared, cfg, False)[1][0].sums
    assert not torch.allclose(with_cl["blocks.0.qkv.weight"], without["blocks.0.qkv.weight"])


def test_lumos_runs_with_the_egress_audit_in_the_fast_engine(text_data, tmp_path):
    config = load_recipe("lumos", str(text_data), [*TINY, "federated.audit=true"])
    result = pipeline(config, tmp_path / "run", progress=False)
    lines = [line for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all('"audited": 6' in line for line in lines)
    assert 0 <= result.metrics["HR@10"] <= 1


def test_cold_item_protocol_runs_for_text_items_and_scores_only_cold_targets(text_data, tmp_path):
    from ffmrec.data import load_dataset
    from ffmrec.eval.cold import ColdItems
    from ffmrec.methods import build_federated_task

    config = load_recipe("fedsasrec", str(text_data), [*TINY, "model.item_repr=text", "eval.protocol=cold-items",
                                                       "eval.cold_fraction=0.2"])
    task = build_federated_task(config)
    assert isinstance(task.split, ColdItems)
    dataset = load_dataset(str(text_data))
    cold = set(task.split.cold.tolist())
    assert len(cold) == round(0.2 * dataset.num_items)
    assert all(not (set(h.tolist()) & cold) for h in task.histories.values())
    result = pipeline(config, tmp_path / "cold", progress=False)
    assert 0 <= result.metrics["HR@20"] <= 1


def test_llm_backend_end_to_end_with_a_tiny_random_qwen3(text_data, tmp_path):
    tiny_llm = ["task.backend=llm", "task.llm.hidden_size=32", "task.llm.num_layers=1", "task.generation.max_new_tokens=6",
                "task.views.future_length=2", "task.sets=2"]
    config = load_recipe("lumos", str(text_data), [*TINY, *tiny_llm, "federated.rounds=1", "federated.audit=true"])
    from ffmrec.methods import build_federated_task

    task = build_federated_task(config)
    sets = task.generator.generate(task.histories[0], 2, torch.Generator().manual_seed(0), client=0, server_round=1)
    history = set(task.histories[0].tolist())
    for views in sets:
        assert set(views) == {"future", "paraphrase", "counterfactual"}
        assert len(views["paraphrase"]) == len(task.histories[0])
        for kind in ("future", "counterfactual"):  # generated titles resolved to catalogue items outside the history
            items = views[kind].tolist()
            assert items and all(1 <= i <= task.model.num_items and i not in history for i in items)
    cost = task.generator.cost.per_client()
    assert cost["view_tokens_per_client"] > 0 and cost["view_ms_per_client"] > 0
    again = task.generator.generate(task.histories[0], 2, torch.Generator().manual_seed(0), client=0, server_round=1)
    assert task.generator.cost.calls == 1  # cached per client and round
    assert all(torch.equal(a[k], b[k]) for a, b in zip(sets, again) for k in a)
    result = pipeline(config, tmp_path / "llm", progress=False)
    assert 0 <= result.metrics["HR@10"] <= 1
