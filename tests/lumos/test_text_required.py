"""A text-using recipe on a dataset without item text fails in one line, exit 2, before anything is written."""

import numpy as np

from ffmrec.cli import main


def write_interactions(path, num_users=12, num_items=9):
    rng = np.random.default_rng(0)
    lines = ["user,item,timestamp"]
    for u in range(num_users):
        lines += [f"u{u},i{i},{t}" for t, i in enumerate(rng.integers(1, num_items + 1, size=5))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_text_recipes_on_a_dataset_without_item_text_fail_before_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FFMREC_CACHE_DIR", str(tmp_path / "cache"))
    data = write_interactions(tmp_path / "plain.csv")
    for method, extra in (("lumos", []), ("fedsasrec", ["--set", "model.item_repr=hybrid"])):
        out = tmp_path / f"run-{method}"
        assert main(["run", method, "--dataset", str(data), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has none" in err[0] and method in err[0]
        assert not out.exists()
