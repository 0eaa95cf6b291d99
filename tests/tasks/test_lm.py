"""fedlm: a tiny causal LM with LoRA adapters trained per client through the stateful-trainer seam."""

import dataclasses

import numpy as np
import pytest
import torch

from ffmrec.data.dataset import Dataset
from ffmrec.errors import ConfigError
from ffmrec.eval.metrics import micro_precision_recall_f1
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.engines.cohort import Cohort
from ffmrec.federated.records import check_record
from ffmrec.fm.causal_lm import ByteTokenizer, CausalLMConfig
from ffmrec.tasks.lm import LoRATextConfig, LoRATextTask, item_title

TITLES = ["", "Red Lipstick", "Blue Nail Polish | Nails", "Rose Face Cream", "Argan Hair Oil", "Mint Lip Balm",
          "Black Eyeliner", "Vanilla Body Lotion", "Green Tea Toner"]
SEQUENCES = [[1, 2, 3, 4, 5], [2, 3, 6, 7], [4, 8, 1, 2, 3, 5], [7, 6, 5]]


def tiny_dataset() -> Dataset:
    base = Dataset.from_sequences(SEQUENCES, num_items=len(TITLES) - 1)
    return dataclasses.replace(base, item_text=np.array(TITLES, dtype=object))


def tiny_model(**kw) -> CausalLMConfig:
    return CausalLMConfig(**{"vocab_size": 300, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                             "intermediate_size": 64, "max_positions": 128, **kw})


def make_task(seed=0, model=None, **task_kw) -> LoRATextTask:
    dataset = tiny_dataset()
    config = LoRATextConfig(**{"records_per_client": 2, "max_tokens": 64, "k": 10, **task_kw})
    return LoRATextTask(LeaveOneOut(dataset.sequences()), dataset.item_text, model or tiny_model(), config, seed=seed)


@pytest.fixture(scope="module")
def task():
    return make_task()


def test_only_adapters_are_shared(task):
    assert task.trainer == "stateful" and task.metric_kind == "set"
    assert task.shared_names and all(".lora_A." in n or ".lora_B." in n for n in task.shared_names)
    trainable = [n for n, p in task.model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(task.shared_names)  # nothing else trains
    assert set(task.shared_specs()) == set(task.shared_names)
    assert task.personal_names == ()


def test_train_stateful_moves_lora_and_never_the_base(task):
    base = {n: p.detach().clone() for n, p in task.model.named_parameters() if not p.requires_grad}
    shared = task.initial_shared()
    delta, personal, loss = task.train_stateful(0, 1, shared, {}, ClientConfig(local_steps=2, lr=0.5))
    assert set(delta) == set(task.shared_names) and personal == {}
    assert np.isfinite(loss) and loss > 0
    for name, d in delta.items():  # lora_B moves in step 1; lora_A (gradient 0 while B is 0) in step 2
        assert d.shape == shared[name].shape and d.dtype == shared[name].dtype
        assert d.abs().sum() > 0, f"{name} did not change"
    for name, p in task.model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, base[name]), f"base parameter {name} moved"


def test_same_seed_round_client_gives_the_same_delta():
    model = tiny_model(lora_dropout=0.2)  # dropout: the client's randomness must come from (seed, round, client)
    task, twin = make_task(model=model), make_task(model=model)  # another process building the same task
    cfg = ClientConfig(local_steps=2, lr=0.5, optimizer="adam")
    shared = task.initial_shared()
    assert all(torch.equal(shared[k], twin.initial_shared()[k]) for k in shared)
    a, _, _ = task.train_stateful(2, 3, shared, {}, cfg)
    torch.rand(5)  # global RNG state must not matter
    b, _, _ = twin.train_stateful(2, 3, shared, {}, cfg)
    c, _, _ = task.train_stateful(2, 4, shared, {}, cfg)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_prepare_samples_records_with_the_clients_generator(task):
    one, again = task.prepare(2, 5), task.prepare(2, 5)
    assert torch.equal(one["input_ids"], again["input_ids"])
    assert one["input_ids"].shape[0] == task.weight(2) == 2  # 4 training items, 2 records per round
    assert one["input_ids"].shape[1] <= 64
    for row in one["input_ids"]:  # up to one context line, then the record
        lines = ByteTokenizer().decode(row).split("\n")
        assert 1 <= len(lines) <= 2 and all(line.startswith("user liked: ") for line in lines)
        assert lines[-1][len("user liked: "):] in [item_title(t) for t in TITLES]
    assert item_title("Blue Nail Polish | Nails") == "Blue Nail Polish"
    assert item_title("Blue Nail Polish | Nails", "full") == "Blue Nail Polish | Nails"


def test_cohort_round_gives_one_record_per_client_with_exactly_the_shared_names(task):
    shared = task.initial_shared()
    clients = [0, 1, 2, 3]
    records, partials, failures = Cohort(task).train(1, clients, shared, ClientConfig(lr=0.5), want_records=True)
    assert failures == [] and partials == []
    assert sorted(r.client_id for r in records) == clients
    for r in records:
        assert set(r.tensors) == set(task.shared_names)
        assert r.weight == task.weight(r.client_id)
        check_record(r, task.shared_specs(), task.max_weight)
        assert np.isfinite(r.metrics["loss"])


def test_set_evaluation_in_unit_interval(task):
    cohort = Cohort(task)
    for stage in ("valid", "test"):
        columns = cohort.evaluate(stage, task.initial_shared(), np.arange(task.num_clients))
        assert all(len(v) == task.num_clients for v in columns.values())
        assert np.all(columns["predicted"] == 10) and np.all(columns["hits"] <= columns["relevant"])
        assert np.all((columns["hit"] == 1) == (columns["hits"] > 0))
        assert np.all((columns["rr"] >= 0.1) == (columns["hit"] == 1))  # first relevant token within the top 10
        metrics = task.summarize(columns)
        assert set(metrics) == {"Precision", "Recall", "F1", "MRR", "Hits@10"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
    failed = task.summarize(task.failed_columns(3))
    assert all(v == 0.0 for v in failed.values())


def test_micro_precision_recall_f1_by_hand():
    # 2 of 10 and 0 of 10 predictions relevant; 4 + 6 relevant tokens; the failed user keeps its 10 in the denominator
    p, r, f1 = micro_precision_recall_f1(np.array([2, 0]), np.array([10, 10]), np.array([4, 6]))
    assert p == pytest.approx(0.1) and r == pytest.approx(0.2) and f1 == pytest.approx(2 * 0.1 * 0.2 / 0.3)
    assert micro_precision_recall_f1(np.array([0]), np.array([10]), np.array([0])) == (0.0, 0.0, 0.0)


def test_gpt2_architecture_trains_too():
    task = make_task(model=tiny_model(architecture="gpt2"))
    assert all("c_attn.lora_" in n for n in task.shared_names)
    delta, _, _ = task.train_stateful(1, 1, task.initial_shared(), {}, ClientConfig(local_steps=1, lr=0.5))
    assert set(delta) == set(task.shared_names)


def test_config_errors_name_the_parameter():
    with pytest.raises(ConfigError, match="model.vocab_size"):
        CausalLMConfig(vocab_size=100)
    with pytest.raises(ConfigError, match="model.architecture"):
        CausalLMConfig(architecture="llama")
    with pytest.raises(ConfigError, match="model.path"):
        CausalLMConfig(path="/nonexistent/model")
    with pytest.raises(ConfigError, match="task.text"):
        LoRATextConfig(text="body")
    with pytest.raises(ConfigError, match="task.max_tokens"):
        make_task(model=tiny_model(max_positions=32), max_tokens=64)


def test_fedlm_recipe_and_method():
    from ffmrec.methods import build_lm_task, resolve_method
    from ffmrec.recipes import load_recipe

    config = load_recipe("fedlm")
    assert config.method == "fedlm" and resolve_method("fedlm").setting == "federated"
    assert isinstance(config.model, CausalLMConfig) and isinstance(config.task, LoRATextConfig)
    no_text = Dataset.from_sequences(SEQUENCES)
    with pytest.raises(ConfigError, match="item text"):
        build_lm_task(config, no_text, LeaveOneOut(no_text.sequences()))


def test_driver_loop_runs_fedlm_with_the_egress_audit(tmp_path):
    from ffmrec.federated.config import FederatedConfig
    from ffmrec.federated.run import run_federated
    from ffmrec.methods import config_class

    task = make_task()
    fed = FederatedConfig(rounds=2, clients_per_round=3, strategy="fedavg", server_lr=1.0, eval_every=1, audit=True,
                          client=ClientConfig(local_steps=2, lr=0.05, optimizer="adam"))
    config = config_class("fedlm")(method="fedlm", federated=fed, seed=0)
    result = run_federated(config, task, tmp_path, progress=False)
    assert result.rounds_run == 2 and result.failures == 0
    assert set(result.test) == {"Precision", "Recall", "F1", "MRR", "Hits@10"}
    assert all(0.0 <= v <= 1.0 for v in result.test.values())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fedlm_gives_the_same_model_in_the_fast_and_flower_simulation_engines(tmp_path, monkeypatch):
    """The stateful trainer behind the same seam in both engines: same adapters, same set metrics."""
    from ffmrec.pipeline import pipeline
    from ffmrec.recipes import load_recipe

    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    rows = ["user,item,timestamp"] + [f"{u},{i},{t}" for u in range(12)
                                      for t, i in enumerate(rng.integers(1, 15, size=6))]
    (tmp_path / "interactions.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "item_text.csv").write_text("item,text\n" + "".join(f"{i},movie number {i}\n" for i in range(1, 15)))
    runs = {}
    for engine in ("fast", "flower-sim"):
        config = load_recipe("fedlm", str(tmp_path / "interactions.csv"), [
            "federated.rounds=2", "federated.clients_per_round=5", "federated.eval_every=2",
            "federated.eval_users=null", "federated.num_supernodes=2", f"federated.engine={engine}"])
        runs[engine] = pipeline(config, tmp_path / engine, progress=False)
    assert runs["fast"].metrics == pytest.approx(runs["flower-sim"].metrics, abs=1e-9)
    a = torch.load(tmp_path / "fast" / "server.pt", weights_only=False)["params"]
    b = torch.load(tmp_path / "flower-sim" / "server.pt", weights_only=False)["params"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
