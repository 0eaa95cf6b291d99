"""End to end on real data (MovieLens-100K, short runs): 3 seeds of sasrec and fedsasrec, compared with mean ± std and
a paired p-value; explained recommendations from each; TensorBoard events; the README's Python example."""

import re
from pathlib import Path

import pytest
from api_helpers import TINY_MODEL, require_ml100k

import ffmrec
from ffmrec.cli import main
from ffmrec.utils.tracking import close_writers, read_scalars

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    require_ml100k()
    root = tmp_path_factory.mktemp("ml100k")
    sasrec = ffmrec.run("sasrec", dataset="ml-100k", overrides={**TINY_MODEL, "train.epochs": 2}, out=root / "sasrec",
                        seeds=3)
    fed = ffmrec.run("fedsasrec", dataset="ml-100k", out=root / "fedsasrec", seeds=3, tensorboard=True,
                     overrides={**TINY_MODEL, "federated.rounds": 2, "federated.eval_every": 1})
    close_writers()
    return {"sasrec": sasrec, "fedsasrec": fed}


def test_seeds_write_their_mean_and_std(seeds):
    for result in seeds.values():
        assert [r.out_dir.name for r in result.runs] == ["seed-42", "seed-43", "seed-44"]
        values = [r.metrics["NDCG@10"] for r in result.runs]
        assert result.metrics["NDCG@10"] == pytest.approx(sum(values) / 3)
        assert result.summary["std"]["NDCG@10"] > 0  # different seeds, different models
        assert (result.out_dir / "seeds.json").exists()


def test_compare_sasrec_and_fedsasrec_gives_mean_std_and_a_p_value(seeds, tmp_path, capsys):
    figure = tmp_path / "curves.png"
    assert main(["compare", str(seeds["sasrec"].out_dir), str(seeds["fedsasrec"].out_dir),
                 "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fedsasrec"))
    assert re.search(r"\d\.\d{4} ± \d\.\d{4}", row)
    p = float(row.split()[-1])
    assert 0.0 <= p <= 1.0
    assert "Wilcoxon" in out and figure.stat().st_size > 1000


@pytest.mark.parametrize("method", ["sasrec", "fedsasrec"])
def test_recommend_explain_on_movielens(seeds, method, capsys):
    run_dir = seeds[method].runs[0].out_dir
    assert main(["recommend", str(run_dir), "--user", "1", "--k", "5", "--explain"]) == 0
    out = capsys.readouterr().out
    items = [line for line in out.splitlines() if re.match(r"\s+\d+\. ", line)]
    assert len(items) == 5 and all(re.search(r"\(\d{4}\)", line) for line in items)  # movie titles with years
    assert out.count("because you ") == 5 and "you rated it" in out


def test_federated_runs_track_bytes_and_failures_in_tensorboard(seeds):
    tb = read_scalars(seeds["fedsasrec"].runs[0].out_dir)
    assert [step for step, _ in tb["bytes_up"]] == [1, 2] and tb["bytes_up"][0][1] > 0
    assert [value for _, value in tb["failed"]] == [0.0, 0.0]
    assert "valid/NDCG@10" in tb


def test_readme_python_example_runs(tmp_path, monkeypatch):
    require_ml100k()
    code = re.search(r"```python\n(import ffmrec\n.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "api" / "metrics.json").exists()
