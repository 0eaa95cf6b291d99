import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffmrec.config import dump_yaml, to_dict
from ffmrec.errors import ConfigError
from ffmrec.methods import from_dict_run_config
from ffmrec.recipes import load_recipe, recipe_paths


def test_shipped_recipes_resolve_and_round_trip():
    assert {"sasrec", "fedsasrec"} <= set(recipe_paths())
    for name in recipe_paths():
        cfg = load_recipe(name)
        assert from_dict_run_config(to_dict(cfg)) == cfg


def test_dataset_overrides_apply():
    assert load_recipe("sasrec", "beauty").model.max_len == 50
    assert load_recipe("sasrec", "ml-1m").model.max_len == 200
    assert load_recipe("sasrec", None, ["dataset=ml-1m"]).model.max_len == 200
    # an explicit --set wins over the dataset's override
    assert load_recipe("sasrec", "ml-1m", ["model.max_len=100"]).model.max_len == 100


def test_overrides_are_typed():
    cfg = load_recipe("fedsasrec", None, ["federated.client.lr=0.5", "eval.ks=[5,10]", "federated.max_update_norm=2",
                                          "federated.clients_per_round=null", "federated.fraction=0.25",
                                          "eval.mask_history=false"])
    assert cfg.federated.client.lr == 0.5 and cfg.eval.ks == (5, 10)
    assert cfg.federated.max_update_norm == 2.0 and cfg.federated.clients_per_round is None
    assert cfg.federated.fraction == 0.25 and cfg.eval.mask_history is False


@pytest.mark.parametrize("override,message", [
    ("federated.clients_per_round=null", "exactly one of"),
    ("federated.client.optimizer=lbfgs", "client.optimizer"),
    ("federated.client.lr=-1", "client.lr"),
    ("eval.ks=[0]", "eval.ks"),
    ("train.patience=-1", "train.patience"),
    ("method=bert4rec", "method='bert4rec'"),
])
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe("fedsasrec" if override.startswith("federated") else "sasrec", None, [override])


@given(st.integers(1, 10_000), st.floats(1e-6, 1.0), st.booleans())
def test_yaml_round_trip(epochs, lr, mask):
    cfg = load_recipe("sasrec", None, [f"train.epochs={epochs}", f"train.lr={lr!r}", f"eval.mask_history={str(mask).lower()}"])
    import yaml

    assert from_dict_run_config(yaml.safe_load(dump_yaml(to_dict(cfg)))) == cfg
