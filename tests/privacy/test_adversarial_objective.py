"""The adversarial trait-removal objective (``privacy.adversarial_weight``): the maths on hand-computed values, what
leaves the device (egress audit, recorder), weight 0 = the plain recipe, and its effect on a planted trait."""

import math

import numpy as np
import pytest
import torch
from torch.func import grad

from ffmrec.data.batching import left_pad
from ffmrec.errors import ConfigError
from ffmrec.federated.client import ClientConfig, local_update
from ffmrec.federated.observers.recorder import load_round
from ffmrec.methods import build_federated_task
from ffmrec.pipeline import pipeline
from ffmrec.privacy.adversarial import HEAD, PrivacyConfig, TraitAdversaryTask, adversarial_terms, zero_valued
from ffmrec.privacy.traits import Traits
from ffmrec.recipes import load_recipe

TINY = ["threads=1", "model.max_len=12", "model.hidden_size=16", "model.num_layers=1", "model.num_heads=1",
        "model.inner_size=32", "model.dropout=0.0", "federated.strategy=fedavg", "federated.server_lr=1.0",
        "federated.client.lr=0.5"]


def _gendered_data(root, users=160, seed=0):
    """A generic dataset whose gender is planted in the items: each user takes 5 items of their gender's pool of 30
    and 7 of a common pool of 40."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows, attrs = ["user,item,timestamp"], ["user,gender,age,occupation"]
    for u in range(users):
        gender = "M" if u % 2 else "F"
        own = np.arange(0, 30) if gender == "M" else np.arange(30, 60)
        items = list(rng.choice(own, 5, replace=False)) + list(rng.choice(np.arange(60, 100), 7, replace=False))
        rng.shuffle(items)
        rows += [f"u{u},i{i},{t}" for t, i in enumerate(items)]
        attrs.append(f"u{u},{gender},{20 + u % 30},{u % 4}")
    (root / "interactions.csv").write_text("\n".join(rows) + "\n")
    (root / "user_attributes.csv").write_text("\n".join(attrs) + "\n")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _gendered_data(tmp_path_factory.mktemp("adv") / "data")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))


# --- the maths ------------------------------------------------------------------------------------------------------
def _linear_objective(weight, form, y=0):
    """A tiny linear encoder ``z = A x`` with a task loss ``0.5 * ||z - t||^2`` and the adversarial term."""
    x = torch.tensor([1.0, 2.0])
    target = torch.tensor([0.5, -1.0])

    def objective(params):
        z = (params["A"] @ x).unsqueeze(0)
        task = 0.5 * ((z[0] - target) ** 2).sum()
        terms = adversarial_terms(z, params["W"].unsqueeze(0), torch.tensor([y]), weight, scale=3.0, form=form)
        return task + zero_valued(terms).mean()

    params = {"A": torch.eye(2), "W": torch.eye(2)}  # z = (1, 2), head logits = z
    return objective, params


def test_gradient_reversal_gives_the_shared_parameters_task_grad_minus_lambda_adversary_grad():
    objective, params = _linear_objective(weight=0.5, form="reversal")
    g = grad(objective)(params)
    p = torch.tensor([1 / (1 + math.e), math.e / (1 + math.e)])  # softmax(1, 2) = (0.2689, 0.7311)
    dlogits = p - torch.tensor([1.0, 0.0])  # CE(., y=0): (-0.7311, 0.7311)
    x, z = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])
    task_grad = torch.outer(z - torch.tensor([0.5, -1.0]), x)  # d/dA 0.5||Ax - t||^2
    adv_grad = torch.outer(dlogits, x)  # d/dA CE(W A x, y) with W = I
    assert torch.allclose(g["A"], task_grad - 0.5 * adv_grad, atol=1e-6)
    assert torch.allclose(g["A"], torch.tensor([[0.5 + 0.3655, 1.0 + 0.7311], [3.0 - 0.3655, 6.0 - 0.7311]]),
                          atol=1e-4)
    assert torch.allclose(g["W"], 3.0 * torch.outer(dlogits, z), atol=1e-6)  # the head descends its own CE
    assert float(objective(params)) == pytest.approx(0.5 * (0.25 + 9.0), abs=0)  # the value is the task's alone


def test_entropy_form_pushes_the_head_towards_uniform_and_ignores_the_label():
    objective, params = _linear_objective(weight=0.5, form="entropy")
    g = grad(objective)(params)
    p = torch.tensor([1 / (1 + math.e), math.e / (1 + math.e)])
    x, z = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])
    task_grad = torch.outer(z - torch.tensor([0.5, -1.0]), x)
    assert torch.allclose(g["A"], task_grad + 0.5 * torch.outer(p - 0.5, x), atol=1e-6)  # d/dlogits CE(., uniform)
    flipped, _ = _linear_objective(weight=0.5, form="entropy", y=1)
    assert torch.equal(grad(flipped)(params)["A"], g["A"])  # the shared gradient does not read the label
    assert not torch.equal(grad(flipped)(params)["W"], g["W"])  # the head does


def test_unknown_trait_contributes_nothing():
    z, head = torch.randn(2, 4, requires_grad=True), torch.randn(2, 3, 4)
    terms = adversarial_terms(z, head, torch.tensor([-1, 2]), 0.5, 1.0, "reversal").detach()
    assert float(terms[0]) == 0.0 and float(terms[1]) != 0.0


def test_config_errors_name_the_setting(data):
    with pytest.raises(ConfigError, match="privacy.adversarial_weight"):
        PrivacyConfig(adversarial_weight=-1)
    with pytest.raises(ConfigError, match="privacy.trait"):
        PrivacyConfig(trait="religion")
    with pytest.raises(ConfigError, match="is centralized"):
        load_recipe("sasrec", str(data), ["privacy.adversarial_weight=1"])
    plain = data.parent / "plain"
    plain.mkdir()
    (plain / "interactions.csv").write_text((data / "interactions.csv").read_text())
    with pytest.raises(ConfigError, match="privacy.adversarial_weight=1.0 needs the trait"):
        build_federated_task(load_recipe("fedsasrec", str(plain), [*TINY, "privacy.adversarial_weight=1"]))


# --- what leaves the device -----------------------------------------------------------------------------------------
def test_the_head_is_personal_and_the_shared_names_are_the_plain_recipes(data):
    plain = build_federated_task(load_recipe("fedsasrec", str(data), TINY))
    task = build_federated_task(load_recipe("fedsasrec", str(data), [*TINY, "privacy.adversarial_weight=1"]))
    assert isinstance(task, TraitAdversaryTask)
    assert task.shared_specs() == plain.shared_specs() and HEAD not in task.shared_names
    assert task.personal_names == (*plain.personal_names, HEAD)
    assert torch.equal(task.initial_personal(3)[HEAD], torch.zeros(1, 2, 16))  # C classes x hidden, from zero


def test_flipping_the_trait_changes_nothing_sent_but_the_shared_tensors(data):
    """The loss a client reports and its weight are the plain objective's; only the update reads the trait."""
    for form in ("reversal", "entropy"):
        task = build_federated_task(load_recipe("fedsasrec", str(data), [
            *TINY, "privacy.adversarial_weight=1", f"privacy.adversarial_form={form}"]))
        shared, cfg, c = task.initial_shared(), ClientConfig(lr=0.5, personal_lr=0.01), 5
        personal = task.initial_personal(c)
        personal[HEAD] = torch.randn(personal[HEAD].shape, generator=torch.Generator().manual_seed(0))  # trained
        example = task.prepare(c, 1)
        out = {y: local_update(task.objective, shared, personal, {**example, "trait": torch.tensor(y)}, cfg)
               for y in (0, 1)}
        plain_delta, _, plain_loss = local_update(task.inner.objective, shared,
                                                  {k: v for k, v in personal.items() if k != HEAD},
                                                  {k: v for k, v in example.items() if k != "trait"}, cfg)
        assert float(out[0][2]) == float(out[1][2]) == float(plain_loss)  # the reported loss
        assert not torch.equal(out[0][1][HEAD], out[1][1][HEAD])  # the head learns the label on the device
        changed = any(not torch.equal(out[0][0][k], plain_delta[k]) for k in plain_delta)
        assert changed  # the adversarial term does move the shared parameters
        same_update = all(torch.equal(out[0][0][k], out[1][0][k]) for k in plain_delta)
        assert same_update == (form == "entropy")  # entropy: one step's update is label-free given the head


def test_egress_audit_and_recorder_see_exactly_the_plain_shared_tensors(data, tmp_path):
    run = [*TINY, "federated.rounds=2", "federated.clients_per_round=40", "federated.eval_every=2",
           "federated.chunk_size=20", "federated.audit=true", "federated.record_rounds=[2]"]
    sent = {}
    for name, extra in (("plain", []), ("adv", ["privacy.adversarial_weight=1"])):
        pipeline(load_recipe("fedsasrec", str(data), [*run, *extra]), tmp_path / name, progress=False)  # audited
        sent[name] = load_round(tmp_path / name, 2)
    assert {k: v.shape for k, v in sent["adv"]["tensors"].items()} == \
        {k: v.shape for k, v in sent["plain"]["tensors"].items()}
    assert set(sent["adv"]) == set(sent["plain"]) and set(sent["adv"]["metrics"]) == set(sent["plain"]["metrics"])
    assert torch.equal(sent["adv"]["weights"], sent["plain"]["weights"])  # the trait moves no metadata
    engine = torch.load(tmp_path / "adv" / "server.pt", weights_only=True)["engine"]
    assert HEAD in engine["table"]  # the head stayed in the device store


def test_weight_zero_is_bit_identical_to_the_plain_recipe(data, tmp_path):
    run = [*TINY, "federated.rounds=3", "federated.clients_per_round=40", "federated.eval_every=3",
           "federated.chunk_size=20"]
    a = pipeline(load_recipe("fedsasrec", str(data), run), tmp_path / "a", progress=False)
    b = pipeline(load_recipe("fedsasrec", str(data), [*run, "privacy.adversarial_weight=0"]), tmp_path / "b",
                 progress=False)
    pa = torch.load(tmp_path / "a" / "server.pt", weights_only=True)["params"]
    pb = torch.load(tmp_path / "b" / "server.pt", weights_only=True)["params"]
    assert all(torch.equal(pa[k], pb[k]) for k in pa) and a.metrics == b.metrics


def test_fused_round_equals_the_per_client_round(data):
    from ffmrec.federated.engines.cohort import Cohort

    task = build_federated_task(load_recipe("fedsasrec", str(data), [*TINY, "privacy.adversarial_weight=1"]))
    shared, cfg, ids = task.initial_shared(), ClientConfig(lr=0.5, personal_lr=0.01), np.arange(12)
    fused, per_client = Cohort(task, chunk_size=6), Cohort(task, chunk_size=6, fused=False)
    _, partials, _ = fused.train(1, ids, shared, cfg, want_records=False)
    records, _, _ = per_client.train(1, ids, shared, cfg, want_records=True)
    total = {k: sum(p.sums[k] for p in partials) for k in shared}
    expected = {k: sum(r.weight * r.tensors[k] for r in records) for k in shared}
    assert all(torch.allclose(total[k], expected[k], atol=1e-5) for k in shared)
    assert torch.allclose(fused.store.table[HEAD], per_client.store.table[HEAD], atol=1e-6)


@pytest.mark.parametrize("form", ["entropy", "reversal"])
def test_flipping_every_label_changes_no_record_in_any_round(data, form):
    """The module docstring's no-leak argument, checked exactly: with every label flipped, every client sends the same
    records in every round (its head ends up with the class rows swapped)."""
    from ffmrec.federated.engines.cohort import Cohort

    config = load_recipe("fedsasrec", str(data), [*TINY, "privacy.adversarial_weight=1",
                                                  f"privacy.adversarial_form={form}"])
    task = build_federated_task(config)
    labels = np.array([task.labels[c] for c in range(task.num_clients)])
    flipped = TraitAdversaryTask(task.inner, 1 - labels, 2, config.privacy)
    cfg, ids = ClientConfig(lr=0.5, personal_lr=0.01), np.arange(16)
    a, b = Cohort(task, ids, chunk_size=8, fused=False), Cohort(flipped, ids, chunk_size=8, fused=False)
    shared = task.initial_shared()
    for rnd in (1, 2, 3):
        ra, _, _ = a.train(rnd, ids, shared, cfg, want_records=True)
        rb, _, _ = b.train(rnd, ids, shared, cfg, want_records=True)
        for x, y in zip(ra, rb):
            assert x.client_id == y.client_id and x.metrics == y.metrics and x.weight == y.weight
            assert all(torch.allclose(x.tensors[k], y.tensors[k], atol=1e-6) for k in x.tensors)
        shared = {k: shared[k] + sum(r.tensors[k] for r in ra) / len(ra) for k in shared}  # FedAvg, unweighted
    assert float(a.store.table[HEAD].abs().max()) > 0  # the heads did learn,
    assert torch.allclose(a.store.table[HEAD], b.store.table[HEAD][:, :, [1, 0]], atol=1e-6)  # each its own label


# --- the effect on a planted trait ------------------------------------------------------------------------------------
def _gender(config) -> np.ndarray:
    from ffmrec.data import load_dataset
    from ffmrec.privacy.traits import load_traits

    return load_traits(load_dataset(config.dataset, options=config.data)).labels["gender"]


def _representation_auc(run_dir, config) -> float:
    """CV AUC of a standardized logistic attacker on each user's shared sequence vector (final round, personal rows
    zeroed) for the gender the data planted."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    task = build_federated_task(config)
    inner = getattr(task, "inner", task)
    model = inner.build_model(1)
    state = dict(torch.load(run_dir / "server.pt", weights_only=True)["params"])
    state.update({k: torch.zeros_like(v) for k, v in model.named_parameters() if k in inner.personal_names})
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        ids = left_pad([torch.as_tensor(inner.histories[u][-inner.max_len:]) for u in range(inner.num_clients)])
        z = model.encode_sequence({"input_ids": ids, "users": torch.zeros(len(ids), dtype=torch.long)}).numpy()
    y = _gender(config)
    attacker = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return roc_auc_score(y, cross_val_predict(attacker, z, y, cv=5, method="predict_proba")[:, 1])


@pytest.mark.slow
def test_the_objective_lowers_a_linear_attack_but_shuffled_labels_train_the_same_model(data, tmp_path, monkeypatch):
    """A linear attacker on the shared representation does worse with the objective on; trained on labels shuffled
    across users, the objective yields the same shared model (the no-leak argument's other side: a purely local
    adversary cannot single out the trait, it shrinks each user's representation)."""
    run = [*TINY, "federated.rounds=30", "federated.clients_per_round=80", "federated.eval_every=30",
           "federated.chunk_size=80"]
    plain_cfg = load_recipe("fedsasrec", str(data), run)
    adv_cfg = load_recipe("fedsasrec", str(data), [*run, "privacy.adversarial_weight=1"])
    pipeline(plain_cfg, tmp_path / "plain", progress=False)
    pipeline(adv_cfg, tmp_path / "adv", progress=False)
    undefended = _representation_auc(tmp_path / "plain", plain_cfg)
    defended = _representation_auc(tmp_path / "adv", adv_cfg)
    assert undefended > 0.68  # the planted trait is in the shared representation
    assert defended < undefended - 0.1

    import ffmrec.privacy.traits as traits_module

    real = traits_module.load_traits

    def shuffled(dataset):
        t = real(dataset)
        return Traits({k: np.random.default_rng(1).permutation(v) for k, v in t.labels.items()}, t.classes)

    monkeypatch.setattr(traits_module, "load_traits", shuffled)
    pipeline(adv_cfg, tmp_path / "control", progress=False)
    monkeypatch.setattr(traits_module, "load_traits", real)
    real_params = torch.load(tmp_path / "adv" / "server.pt", weights_only=True)["params"]
    control_params = torch.load(tmp_path / "control" / "server.pt", weights_only=True)["params"]
    assert all(torch.allclose(real_params[k], control_params[k], atol=1e-5) for k in real_params)  # not trait-specific


def test_composes_with_lumos_fused_equals_per_client_and_the_trait_moves_no_record():
    """LUMOS (tri-view InfoNCE over on-device views) with the adversarial term: the fused path is exact, the head stays
    personal and flipping every label changes no record."""
    from ffmrec.eval.protocol import LeaveOneOut
    from ffmrec.federated.engines.cohort import Cohort
    from ffmrec.fm.text import nearest_neighbours
    from ffmrec.fm.views import EmbeddingViewConfig, EmbeddingViews, ItemKnowledge
    from ffmrec.models.sasrec import SASRec, SASRecConfig
    from ffmrec.tasks.lumos import LUMOSConfig, LUMOSTask

    items = 30
    table = torch.randn(items + 1, 8, generator=torch.Generator().manual_seed(0))
    table = table / table.norm(dim=1, keepdim=True)
    table[0] = 0
    know = ItemKnowledge(table, *nearest_neighbours(table, 6))
    rng = np.random.default_rng(0)
    split = LeaveOneOut([rng.integers(1, items + 1, size=rng.integers(4, 12)) for _ in range(10)])
    model_cfg = SASRecConfig(max_len=8, hidden_size=16, num_heads=2, inner_size=32, dropout=0.2, user_embedding=True)
    lumos = LUMOSConfig()
    inner = LUMOSTask(split, lambda nu: SASRec(model_cfg, items, nu), seed=0, cfg=lumos,
                      generator=EmbeddingViews(know, EmbeddingViewConfig(), lumos.kinds))
    labels = np.arange(10) % 2
    cfg_priv = PrivacyConfig(adversarial_weight=1.0)
    task, flipped = TraitAdversaryTask(inner, labels, 2, cfg_priv), TraitAdversaryTask(inner, 1 - labels, 2, cfg_priv)
    assert task.shared_names == inner.shared_names and task.fusable
    cfg, ids, shared = ClientConfig(lr=0.5, personal_lr=0.01), np.arange(10), task.initial_shared()
    fused = Cohort(task, chunk_size=5)
    _, partials, _ = fused.train(1, ids, shared, cfg, want_records=False)
    a, b = Cohort(task, chunk_size=5, fused=False), Cohort(flipped, chunk_size=5, fused=False)
    ra, _, _ = a.train(1, ids, shared, cfg, want_records=True)
    rb, _, _ = b.train(1, ids, shared, cfg, want_records=True)
    total = {k: sum(p.sums[k] for p in partials) for k in shared}
    assert all(torch.allclose(total[k], sum(r.weight * r.tensors[k] for r in ra), atol=1e-5) for k in shared)
    for x, y in zip(ra, rb):
        assert set(x.tensors) == set(inner.shared_names) and x.metrics == y.metrics
        assert all(torch.allclose(x.tensors[k], y.tensors[k], atol=1e-6) for k in x.tensors)
    assert torch.allclose(fused.store.table[HEAD], a.store.table[HEAD], atol=1e-6)


def test_poisoning_on_top_of_the_adversarial_objective_still_measures_the_targets_exposure(data):
    """Both wrappers at once (the trait adversary inside, the attackers outside): the target's exposure is ranked by
    the task that evaluates, and the attackers' crafted histories reach the inner task's clients."""
    task = build_federated_task(load_recipe("fedsasrec", str(data), [
        *TINY, "privacy.adversarial_weight=1", "federated.adversary.fraction=0.1", "federated.adversary.target_item=3"]))
    assert isinstance(task.inner, TraitAdversaryTask)
    assert task.unwrapped.exposure_item == 3 and task.unwrapped is task.inner.inner
    shared = task.initial_shared()
    clients = np.array(sorted(task.histories)[:6])
    personal = {k: torch.cat([task.initial_personal(int(c))[k] for c in clients]) for k in task.personal_names}
    columns = task.evaluate("valid", shared, personal, clients)
    assert "exposure_rank" in columns and len(columns["exposure_rank"]) == len(clients)
    assert columns["honest"].tolist() == [int(int(c) not in task.malicious) for c in clients]
    attacker = min(task.malicious)
    assert 3 in task.prepare(attacker, 1)["targets"].tolist()  # the crafted objective promotes the target
