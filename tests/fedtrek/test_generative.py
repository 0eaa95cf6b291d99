"""The generative policy end to end on a tiny random Qwen3 built offline: TRL's KTOTrainer trains only the LoRA
adapters, prompts are rendered without thinking, outputs are parsed and scored honestly."""

from __future__ import annotations

import pytest
import torch

from ffmrec.data.redial_examples import RedialExamplesConfig, format_completion, load_redial_users, render_prompt
from ffmrec.eval.setmetrics import TitleIndex, query_columns, set_metrics
from ffmrec.fm.generative_policy import GenerativePolicy, GenerativePolicyConfig


@pytest.mark.slow
def test_tiny_qwen3_kto_end_to_end(tiny_redial):
    torch.set_num_threads(1)
    catalog, users = load_redial_users(tiny_redial, RedialExamplesConfig(max_tokens=700, pkg_tokens=150))
    policy = GenerativePolicy(GenerativePolicyConfig(max_length=900, max_new_tokens=24), seed=0)
    count = lambda text: len(policy.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    config = RedialExamplesConfig(max_tokens=700, pkg_tokens=150)
    train = [(u, e) for u in users for e in u.train]
    prompts = [render_prompt(e, u.history, catalog, config, count).messages for u, e in train]
    rendered = policy.render(prompts[0])
    assert rendered.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # thinking disabled
    records = policy.records(prompts, [format_completion(e.movies, catalog) for _, e in train],
                             [e.desirable for _, e in train])
    assert [r["label"] for r in records] == [e.desirable for _, e in train]
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    loss = policy.kto_train(records, steps=2, lr=1e-2, batch_size=2)
    assert loss == loss  # finite
    after = dict(policy.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)
    with pytest.raises(ValueError, match="exceeds model.max_length"):
        GenerativePolicy(GenerativePolicyConfig(max_length=20), 0).records(prompts[:1], ["- Beta (2002)"], [True])
    tests = [(u, e) for u in users for e in u.test]
    test_prompts = [render_prompt(e, u.history, catalog, config, count).messages for u, e in tests]
    index = TitleIndex((m, catalog[m].title) for m in catalog.ids)
    outputs = policy.recommend(test_prompts, index)
    cols = query_columns(outputs, outputs, [set(e.movies) for _, e in tests])
    metrics = set_metrics(cols)
    assert cols["predicted"].min() >= 1 and 0.0 <= metrics["F1"] <= 1.0  # a random model: mostly unparseable, 0
