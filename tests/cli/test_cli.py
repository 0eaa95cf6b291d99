"""The command line: runs write the documented files, resume, and every bad input is one clear line and exit 2."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from cli_helpers import TINY_MODEL

from ffmrec.cli import main


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_documented_files(tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet",
                                 "--set", *TINY_MODEL, "train.epochs=3", "train.eval_every=1"], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"HR@10", "NDCG@10", "HR@20", "NDCG@20"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["hidden_size"] == 16 and config["train"]["epochs"] == 3 and config["dataset"] == str(tiny_csv)
    report = (out / "report.md").read_text()
    assert "NDCG@10" in report and "validation_curve.png" in report
    assert (out / "validation_curve.png").stat().st_size > 1000
    # the same command on the same folder resumes: nothing left to train, the same metrics
    code, _, _ = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet",
                          "--set", *TINY_MODEL, "train.epochs=3", "train.eval_every=1"], capsys)
    assert code == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


def test_recipes_and_datasets_listing(capsys):
    code, out, _ = run_cli(["recipes"], capsys)
    assert code == 0 and "sasrec" in out and "fedsasrec" in out


BAD = [
    (["run", "nosuchrecipe"], "unknown recipe 'nosuchrecipe'"),
    (["run", "sasrec", "--dataset", "nosuchdata"], "dataset='nosuchdata' is unknown"),
    (["run", "sasrec", "--set", "train.epochz=3"], "unknown config key 'train.epochz'"),
    (["run", "sasrec", "--set", "nosection.x=3"], "unknown config key 'nosection.x'"),
    (["run", "sasrec", "--set", "train.epochs=three"], "train.epochs='three' is not an integer"),
    (["run", "sasrec", "--set", "train.lr=fast"], "train.lr='fast' is not a number"),
    (["run", "sasrec", "--set", "eval.mask_history=maybe"], "eval.mask_history='maybe' is not a boolean"),
    (["run", "sasrec", "--set", "train.epochs"], "is not key=value"),
    (["run", "sasrec", "--set", "model.num_heads=3"], "model.num_heads=3 does not divide"),
    (["run", "fedsasrec", "--set", "federated.engine=warp"], "federated.engine='warp' is unknown"),
    (["run", "fedsasrec", "--set", "federated.strategy=magic"], "federated.strategy='magic' is unknown"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_config_is_one_line_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli([*args, "--out", str(out)] if args[0] == "run" and "--set" not in args else
                           [*args[:2], "--out", str(out), *args[2:]], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_impossible_federated_config_writes_nothing(tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["run", "fedsasrec", "--dataset", str(tiny_csv), "--out", str(out),
                            "--set", "federated.clients_per_round=5000"], capsys)
    assert code == 2 and "clients_per_round" in err
    assert not out.exists()


@pytest.mark.parametrize("content,message", [
    ("user,item\nu1,i1\n", "timestamp"),  # missing column
    ("", "empty"),
    ("user item timestamp\nu1 i1 1\n", "timestamp"),  # spaces are no separator: one column only
    ("user,item,timestamp\nu1,i1,1\nu1,i2\n", "interactions.csv"),  # truncated line
    ("user,item,timestamp\nu1,i1,yesterday\n", "timestamp"),
])
def test_bad_data_file_is_one_line_exit_2(content, message, tmp_path, capsys):
    path = tmp_path / "interactions.csv"
    path.write_text(content)
    out = tmp_path / "run"
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(path), "--out", str(out)], capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_encoding_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "interactions.csv"
    path.write_bytes(b"user,item,timestamp\nu1,caf\xe9,1\n")
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(path), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and ("UTF-8" in err or "encoding" in err)


def test_bad_recipe_yaml(tmp_path, capsys):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("method: sasrec\nmodel: [unclosed\n")
    code, _, err = run_cli(["run", str(recipe)], capsys)
    assert code == 2 and "mine.yaml" in err and "YAML" in err


def test_out_dir_with_another_config_is_refused(tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet", "--set", *TINY_MODEL]
    assert run_cli([*args, "train.epochs=1"], capsys)[0] == 0
    code, _, err = run_cli([*args, "train.epochs=2", "train.lr=0.01"], capsys)
    assert code == 2 and "different config (train.lr)" in err


def test_run_from_before_a_config_key_was_added_resumes(tiny_csv, tmp_path, capsys):
    """A key added to ffmrec after a run started (absent from its config.yaml) takes its default, as the run did."""
    out = tmp_path / "run"
    args = ["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet", "--set", *TINY_MODEL]
    assert run_cli([*args, "train.epochs=1"], capsys)[0] == 0
    stored = yaml.safe_load((out / "config.yaml").read_text())
    del stored["model"]["item_repr"], stored["eval"]["protocol"]
    (out / "config.yaml").write_text(yaml.safe_dump(stored))
    code, _, err = run_cli([*args, "train.epochs=2"], capsys)
    assert code == 0, err
    assert [json.loads(line)["epoch"] for line in (out / "history.jsonl").read_text().splitlines()] == [1, 2]


def test_entry_point_prints_no_traceback(tmp_path):
    env = {**os.environ, "FFMREC_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "ffmrec.cli", "run", "sasrec", "--set", "train.lr=x"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("ffmrec: error:") and "Traceback" not in proc.stderr


def test_a_run_can_be_extended_by_more_epochs(tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet", "--set", *TINY_MODEL,
            "train.patience=0"]
    assert run_cli([*args, "train.epochs=2"], capsys)[0] == 0
    assert run_cli([*args, "train.epochs=4"], capsys)[0] == 0
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 4
    fresh = tmp_path / "fresh"
    assert run_cli([*[a if a != str(out) else str(fresh) for a in args], "train.epochs=4"], capsys)[0] == 0
    assert json.loads((fresh / "metrics.json").read_text()) == json.loads((out / "metrics.json").read_text())


def test_local_sasrec_run_then_recommend_is_refused_in_one_line(tiny_csv, tmp_path, capsys):
    """local-sasrec keeps no model (one per user, dropped after ranking): recommend says so, exit 2."""
    out = tmp_path / "local"
    args = ["run", "local-sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet", "--set", *TINY_MODEL,
            "task.epochs=[1]", "task.lr=[0.5]"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert "NDCG@10" in json.loads((out / "metrics.json").read_text())
    code, _, err = run_cli(["recommend", str(out), "--user", "u1"], capsys)
    assert code == 2 and "keeps none of them" in err and len(err.strip().splitlines()) == 1
