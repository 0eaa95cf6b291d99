"""What a new user trips over (issue 11, point 6): every case ends in one clear line, exit 2, and nothing written; the
run folder, its files and the messages say what happened."""

import json
import os
import stat
import warnings
from pathlib import Path

import pytest
import yaml
from cli_helpers import TINY_MODEL

import ffmrec.federated.server as server
from ffmrec.cli import main
from ffmrec.pipeline import pipeline
from ffmrec.recipes import load_recipe

FED = [*TINY_MODEL, "federated.clients_per_round=10", "federated.eval_every=100", "federated.chunk_size=10",
       "threads=1"]


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_exit_2(code, err):
    return code == 2 and err.startswith("ffmrec: error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- a killed federated run ended at the round it reached, before any validation --------------------------------------

def test_killed_run_ended_before_validation_tests_its_last_parameters_and_says_so(tiny_csv, tmp_path, monkeypatch,
                                                                                    capsys):
    from ffmrec.pipeline import NoValidationWarning

    out = tmp_path / "killed"
    save = server.save_checkpoint

    def killed_after_round_3(path, obj):  # kill -9 right after round 3's checkpoint
        save(path, obj)
        if obj["state"]["round"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(server, "save_checkpoint", killed_after_round_3)
    with pytest.raises(KeyboardInterrupt):
        pipeline(load_recipe("fedsasrec", str(tiny_csv), [*FED, "federated.rounds=30"]), out, progress=False)
    monkeypatch.setattr(server, "save_checkpoint", save)

    code, _, err = run_cli(["run", "fedsasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet",
                            "--set", *FED, "federated.rounds=3"], capsys)
    assert code == 0, err
    assert "ffmrec: warning: no validation ran: the test metrics are those of the last round's parameters" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_round"] == 3 and summary["rounds"] == 3 and "no validation ran" in summary["note"]
    with warnings.catch_warnings(record=True) as caught:  # the same 3 rounds uninterrupted: the same test metrics
        warnings.simplefilter("always")
        fresh = pipeline(load_recipe("fedsasrec", str(tiny_csv), [*FED, "federated.rounds=3"]), tmp_path / "fresh",
                         progress=False)
    assert not any(issubclass(w.category, NoValidationWarning) for w in caught)  # it validated its last round
    assert fresh.summary["best_round"] == 3 and "note" not in fresh.summary
    assert json.loads((out / "metrics.json").read_text()) == fresh.metrics


# --- one line and exit 2, not a traceback and exit 1 ------------------------------------------------------------------

def test_out_that_is_an_existing_file_is_one_line_exit_2(tiny_csv, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(afile), "--quiet",
                            "--set", *TINY_MODEL, "train.epochs=1"], capsys)
    assert one_line_exit_2(code, err) and "is an existing file, not a folder" in err
    assert afile.read_text() == "mine\n"


@pytest.mark.parametrize("where,message", [
    (lambda tmp: tmp / "afile" / "run", "is a file, not a folder"),
    (lambda tmp: Path("/proc/ffmrec-no-such-place/run"), "cannot create the folder"),
])
def test_out_in_an_unwritable_place_is_one_line_exit_2(where, message, tiny_csv, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine\n")
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(where(tmp_path)), "--quiet",
                            "--set", *TINY_MODEL, "train.epochs=1"], capsys)
    assert one_line_exit_2(code, err) and message in err


@pytest.mark.parametrize("setting,message", [
    ("threads=-1", "threads=-1 must be a whole number >= 1"),
    ("threads=0", "threads=0 must be a whole number >= 1"),
    ("train.lr=.nan", "train.lr=nan is not a finite number"),
    ("train.lr=.inf", "train.lr=inf is not a finite number"),
])
def test_bad_threads_and_nan_lr_are_one_line_exit_2_and_write_nothing(setting, message, tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet",
                            "--set", *TINY_MODEL, "train.epochs=1", setting], capsys)
    assert one_line_exit_2(code, err) and message in err
    assert not out.exists()


def test_a_run_that_never_started_does_not_block_the_corrected_command(tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("method: sasrec\ntrain: {lr: 0.5}\n")  # what a run failing at its start left
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet",
                            "--set", *TINY_MODEL, "train.epochs=1"], capsys)
    assert code == 0, err
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 0.001


# --- right advice -----------------------------------------------------------------------------------------------------

def test_negative_clients_per_round_asks_for_a_positive_count_not_lower_min_clients(tiny_csv, tmp_path, capsys):
    code, _, err = run_cli(["run", "fedsasrec", "--dataset", str(tiny_csv), "--out", str(tmp_path / "run"),
                            "--set", "federated.clients_per_round=-5"], capsys)
    assert one_line_exit_2(code, err)
    assert "federated.clients_per_round=-5 must be >= 1" in err and "lower min_clients" not in err


def test_a_folder_given_as_the_dataset_file_is_called_a_folder_not_missing(tmp_path, capsys):
    (tmp_path / "ratings.csv").mkdir()
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(tmp_path / "ratings.csv"), "--out",
                            str(tmp_path / "run")], capsys)
    assert one_line_exit_2(code, err) and "is a folder" in err and "missing" not in err


def test_unknown_key_points_to_a_command_that_lists_every_key_with_help(capsys):
    code, _, err = run_cli(["run", "sasrec", "--set", "train.epochz=3"], capsys)
    assert one_line_exit_2(code, err) and "ffmrec recipes RECIPE" in err
    code, out, _ = run_cli(["recipes", "sasrec"], capsys)
    listed = {line.split("=")[0]: line for line in out.splitlines() if "=" in line.split(" ")[0]}
    assert code == 0
    assert "train.lr" in listed and "Adam learning rate" in listed["train.lr"]
    assert "model.max_len" in listed and "data.min_rating" in listed and "eval.ks" in listed
    code, out, _ = run_cli(["recipes"], capsys)
    assert code == 0 and "ffmrec recipes RECIPE" in out


def test_redial_is_listed_as_not_for_run_and_run_says_why(tmp_path, capsys):
    (tmp_path / "redial").mkdir()
    (tmp_path / "redial" / "test_data.jsonl").write_text("{}\n")
    code, out, _ = run_cli(["datasets", "--data-dir", str(tmp_path), "--no-stats"], capsys)
    (redial,) = [line for line in out.splitlines() if line.startswith("redial")]
    assert code == 0 and "not for 'ffmrec run'" in redial
    code, _, err = run_cli(["run", "sasrec", "--dataset", "redial", "--out", str(tmp_path / "run")], capsys)
    assert one_line_exit_2(code, err) and "dialogues" in err and "is unknown" not in err


# --- the run folder ---------------------------------------------------------------------------------------------------

def test_a_stale_history_without_a_checkpoint_is_restarted_not_appended_to(tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet", "--set", *TINY_MODEL,
            "train.epochs=1"]
    assert run_cli(args, capsys)[0] == 0
    for name in ("checkpoint.pt", "best_model.pt", "metrics.json"):  # killed after its history line, before its checkpoint
        (out / name).unlink()
    assert run_cli(args, capsys)[0] == 0
    assert [json.loads(x)["epoch"] for x in (out / "history.jsonl").read_text().splitlines()] == [1]


def test_an_out_folder_holding_unrelated_files_is_refused(tiny_csv, tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"jpg")
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet",
                            "--set", *TINY_MODEL, "train.epochs=1"], capsys)
    assert one_line_exit_2(code, err) and "holiday.jpg" in err and "not an ffmrec run" in err
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]


def test_every_file_a_run_writes_has_one_permission_mode(tiny_csv, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        code, _, err = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(out), "--quiet",
                                "--set", *TINY_MODEL, "train.epochs=2", "train.eval_every=1"], capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert {"config.yaml", "history.jsonl", "checkpoint.pt", "metrics.json", "report.md"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


def test_version_comes_from_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ffmrec {version('ffmrec')}"


def test_an_interrupt_says_that_the_epoch_in_progress_is_lost(tiny_csv, tmp_path, monkeypatch, capsys):
    import ffmrec.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ffmrec.pipeline, "pipeline", interrupted)
    code, _, err = run_cli(["run", "sasrec", "--dataset", str(tiny_csv), "--out", str(tmp_path / "run"), "--quiet",
                            "--set", *TINY_MODEL, "train.epochs=1"], capsys)
    assert code == 130
    assert "checkpoints are written after every epoch or round" in err and "in progress is lost" in err


def test_readme_says_where_ffmrec_lives_the_data_root_and_what_ci_sets():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert ".venv/bin/ffmrec" in readme and "source .venv/bin/activate" in readme
    assert "./data" in readme and "FFMREC_DATA_DIR" in readme
    assert "FFMREC_OFFLINE=1" in readme and ".ci/run" in readme
    assert "ffmrec --version" in readme
