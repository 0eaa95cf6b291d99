"""``ffmrec attack RUN_DIR``: the attack suite on a recorded run, written to ``RUN/attack.json`` and ``RUN/attack.md``.

The run folder's ``config.yaml`` names the dataset (and its filtering), which gives the users' traits (the attacker's
labels and the truth it is scored against) and their raw interactions (the ceiling). The headline per trait is the
*worst* shared artifact: the one that leaks the trait most.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from ffmrec.errors import FFMRecError
from ffmrec.privacy.attacks import (
    EVALUATION,
    RAW,
    AttackConfig,
    egress_features,
    evaluation_features,
    raw_features,
    recorded_rounds,
    run_attacks,
    worst_artifact,
)
from ffmrec.privacy.traits import load_traits
from ffmrec.utils.io import atomic_write_text, write_json


def load_run_dataset(run_dir: Path):
    """The dataset a run folder was trained on (from its ``config.yaml``: ``dataset`` and ``data``)."""
    from ffmrec.data import load_dataset
    from ffmrec.data.preprocess import DataOptions

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FFMRecError(f"{run_dir} is not a run folder (no config.yaml): give the --out folder of an 'ffmrec run'.")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return load_dataset(config.get("dataset"), options=DataOptions(**(config.get("data") or {})))


def summary(results: dict[str, dict[str, dict]]) -> dict[str, float]:
    """Flat headline numbers: the ceiling's gender AUC, and per trait the worst shared artifact's figures."""
    out: dict[str, float] = {}
    raw = results.get(RAW, {})
    if "gender" in raw:
        out["gender_auc"] = raw["gender"]["auc"]
    for trait in ("gender", "age", "occupation"):
        shared = [(name, r[trait]) for name, r in results.items() if name != RAW and trait in r]
        if not shared:
            continue
        _, worst = worst_artifact(results, trait)
        out[f"{trait}_auc_worst_artifact"] = worst["auc"]
        out[f"{trait}_auc_worst_artifact_ci_low"], out[f"{trait}_auc_worst_artifact_ci_high"] = worst["auc_ci"]
        if trait != "gender":  # the artifact whose accuracy most exceeds its test users' majority rate (artifacts
            # may cover different users, e.g. the recorded rounds' and the evaluation's, with different majority rates)
            acc = max((r for _, r in shared), key=lambda r: r["accuracy"] - r["majority_rate"])
            out[f"{trait}_acc"] = acc["accuracy"]
            out[f"{trait}_majority_rate"] = acc["majority_rate"]
        else:
            out["gender_balanced_acc_worst_artifact"] = max(r["balanced_accuracy"] for _, r in shared)
        if trait in raw:
            out[f"{trait}_auc_raw"] = raw[trait]["auc"]
            if trait != "gender":
                out[f"{trait}_acc_raw"] = raw[trait]["accuracy"]
    return out


def attack_run(run_dir: str | Path, cfg: AttackConfig | None = None, dataset=None) -> dict:
    """Attack the recorded rounds of ``run_dir`` (and the raw interactions, the ceiling); write the report.

    Returns ``{"config", "rounds", "users", "summary", "results"}`` (as written to ``RUN/attack.json``).
    """
    run_dir = Path(run_dir)
    cfg = cfg or AttackConfig()
    if not recorded_rounds(run_dir):
        raise FFMRecError(f"{run_dir} has no recorded rounds (no egress/round-*.pt): run it with "
                          "--set 'federated.record_rounds=[...]' to record what the clients send.")
    dataset = dataset if dataset is not None else load_run_dataset(run_dir)
    traits = load_traits(dataset)
    artifacts = egress_features(run_dir, cfg.rounds, cfg.projection_dim, cfg.seed)
    covered = len(next(iter(artifacts.values())).users)
    artifacts.update(evaluation_features(run_dir))
    ratings = None if dataset.ratings is None else np.split(dataset.ratings, dataset.offsets[1:-1])
    artifacts[RAW] = raw_features(dataset.sequences(), dataset.num_items, ratings)
    results = run_attacks(artifacts, traits, cfg)
    doc = {"config": asdict(cfg), "rounds": cfg.rounds or recorded_rounds(run_dir), "users": traits.num_users,
           "users_recorded": covered, "summary": summary(results), "results": results}
    write_json(run_dir / "attack.json", doc)
    atomic_write_text(run_dir / "attack.md", render(doc))
    return doc


def add_evaluation_attack(run_dir: str | Path, traits=None) -> dict:
    """The report of a run attacked before the ``evaluation`` artifact existed, with that artifact attacked too
    (same config and labelled users; nothing else is redone, so it works after the recorded rounds were deleted);
    ``RUN/attack.json`` and ``attack.md`` rewritten. A report that has it already is returned as it is. ``traits``:
    the users' (default: those of the run's dataset)."""
    run_dir = Path(run_dir)
    path = run_dir / "attack.json"
    if not path.is_file():
        raise FFMRecError(f"{run_dir} has no attack report (attack.json): run 'ffmrec attack {run_dir}' first.")
    doc = json.loads(path.read_text(encoding="utf-8"))
    artifacts = evaluation_features(run_dir)
    if EVALUATION in doc["results"] or not artifacts:
        return doc
    config = doc["config"]
    cfg = AttackConfig(**{**config, "attackers": tuple(config["attackers"]), "traits": tuple(config["traits"]),
                          "rounds": None if config.get("rounds") is None else tuple(config["rounds"])})
    traits = traits if traits is not None else load_traits(load_run_dataset(run_dir))
    results = {**doc["results"], **run_attacks(artifacts, traits, cfg)}
    doc = {**doc, "summary": summary(results), "results": results}
    write_json(path, doc)
    atomic_write_text(run_dir / "attack.md", render(doc))
    return doc


def _fmt(r: dict, key: str) -> str:
    if key not in r:
        return "-"
    ci = r.get(f"{key}_ci")
    return f"{r[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def render(doc: dict) -> str:
    """The Markdown report of an attack (one row per artifact and trait)."""
    cfg = doc["config"]
    lines = [
        "# Attribute-inference attacks on what the devices shared", "",
        f"Honest-but-curious server; rounds {doc['rounds']} ({doc['users_recorded']} of {doc['users']} users took "
        f"part); attackers {', '.join(cfg['attackers'])} trained on {cfg['labelled_fraction']:.0%} labelled users "
        f"(seed {cfg['seed']}), scored on the others; 95% bootstrap intervals, permutation p-values against chance. "
        f"`{RAW}` is the ceiling: the users' own interactions, which never leave the device.", "",
        "## Headline", "", "| figure | value |", "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in doc["summary"].items()], "",
        "## Per artifact", "",
        "| artifact | trait | attacker | AUC [95% CI] | p | accuracy | balanced acc. | majority rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, per_trait in doc["results"].items():
        for trait, r in per_trait.items():
            p = r.get("auc_p", r.get("accuracy_p", float("nan")))
            lines.append(f"| {name} | {trait} | {r['attacker']} | {_fmt(r, 'auc')} | {p:.3f} | "
                         f"{_fmt(r, 'accuracy')} | {r['balanced_accuracy']:.3f} | {r['majority_rate']:.3f} |")
    return "\n".join(lines) + "\n"
