"""An honest-but-curious server's attribute-inference attacks on what the devices shared.

The server follows the protocol but keeps everything it received: the recorder's files ``RUN/egress/round-NNNNN.pt``
(:class:`~ffmrec.federated.observers.Recorder`; one per recorded round: every answering client's update tensors, its
weight and its metrics). From them it builds one feature matrix per *artifact* (what a message reveals), averages a
user's features over the recorded rounds in which the user took part, and trains attackers on a labelled share of
the users (30% by default: users who told the server their traits) to predict each trait of the others. This is the
attribute-inference setting of Weinsberg et al. (RecSys 2012, "BlurMe") and of the gender attacks on federated
recommenders (e.g. Zhang et al., "Comprehensive privacy analysis on federated recommender system against attribute
inference attacks", TKDE 2023), run on ffmrec's own egress records, so it works for every engine and method.

Artifacts of a record (each a matrix users x features):

- ``touched:<table>``: which rows of an embedding table (a 2-D tensor some clients leave partly unchanged, e.g.
  ``item_emb.weight``) the update changes: the items the user interacted with;
- ``rownorm:<table>``: the norm of each row's change (how strongly each item was touched);
- ``inferred:<table>``: the items the server infers the user used: the ``weight`` rows (the record states its number
  of examples) that moved most relative to the round's median client; attacked like raw interactions;
- ``values:<table>``: the whole table's change, by a seeded sparse random projection (Achlioptas, 2003; Li et al.,
  KDD 2006) to ``projection_dim`` features;
- ``values:dense``: every other shared tensor (Transformer weights, LoRA factors, ...), projected the same way;
- ``metadata``: the record's weight (its number of examples) and metrics (its loss);
- ``all``: everything above, side by side;
- ``evaluation``: what each device reports when the model is evaluated (the columns of ``RUN/test_ranks.npz``: the
  rank of its held-out item, on a log scale, and any other per-user column the task reports). Evaluation is not
  secured in any engine, so this artifact exists under secure aggregation too; it covers every user, the recorded
  rounds only those sampled then, so it stays out of ``all``.

The *ceiling*, ``raw-interactions``, attacks the users' own interaction histories (the binary user-item matrix), which
never leave the device: no shared artifact can leak more than the data it was computed from.

Two attackers per artifact and trait: an L2 logistic regression (regularisation chosen by internal cross-validation)
and a one-hidden-layer MLP (scikit-learn). The stronger one in 3-fold cross-validation on the labelled users is the
one whose held-out scores are reported, so picking the stronger attacker does not flatter chance.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ffmrec.errors import ConfigError, FFMRecError
from ffmrec.privacy import metrics as M
from ffmrec.privacy.traits import TRAITS, Traits

RAW = "raw-interactions"
EVALUATION = "evaluation"


@dataclass
class AttackConfig:
    """How the curious server attacks a recorded run."""

    labelled_fraction: float = field(default=0.3, metadata={"help": "Share of users whose traits the attacker knows and trains on; it predicts the others'."})
    seed: int = field(default=0, metadata={"help": "Seed of the labelled split, the projections, the attackers and the resampling."})
    projection_dim: int = field(default=256, metadata={"help": "Features of each projected artifact (values:*)."})
    attackers: tuple[str, ...] = field(default=("logreg", "mlp"), metadata={"help": "Attackers tried per artifact and trait: logreg, mlp."})
    traits: tuple[str, ...] = field(default=TRAITS, metadata={"help": "Traits attacked (those the dataset has)."})
    components: int = field(default=128, metadata={"help": "Principal components of each artifact the attackers read (wider artifacts are reduced)."})
    rounds: tuple[int, ...] | None = field(default=None, metadata={"help": "Recorded rounds to use (default: all in RUN/egress)."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for the confidence intervals."})
    permutations: int = field(default=1000, metadata={"help": "Label permutations for the p-value against chance."})

    def __post_init__(self) -> None:
        if not 0.0 < self.labelled_fraction < 1.0:
            raise ConfigError(f"attack labelled_fraction={self.labelled_fraction} must lie in (0, 1), e.g. 0.3.")
        unknown = [a for a in self.attackers if a not in ("logreg", "mlp")]
        if unknown or not self.attackers:
            raise ConfigError(f"attack attackers={list(self.attackers)}: use logreg and/or mlp.")
        if min(self.projection_dim, self.components, self.bootstrap, self.permutations) < 1:
            raise ConfigError("attack projection_dim, components, bootstrap and permutations must all be >= 1.")


@dataclass
class Artifact:
    """Features of one artifact: ``features[i]`` belongs to dense user ``users[i]``."""

    users: np.ndarray  # (n,) int64
    features: np.ndarray  # (n, f) float32
    kind: str = "dense"  # "indicator" (0/1 or count rows: idf-weighted, row-normalised) or "dense" (z-scored)


# --- features from the recorder's files --------------------------------------------------------------------------
def recorded_rounds(run_dir: Path) -> list[int]:
    """The rounds the recorder saved in ``run_dir/egress`` (sorted)."""
    folder = Path(run_dir) / "egress"
    found = [re.fullmatch(r"round-(\d+)\.pt", p.name) for p in folder.glob("round-*.pt")] if folder.is_dir() else []
    return sorted(int(m.group(1)) for m in found if m)


def _tables(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Per-client 2-D tensors that are embedding tables: named so (``*emb*``: the architecture is public) or with some
    row some client left unchanged (touched sparsely). By name too, because a defence that fills every row (dense
    noise, pseudo rows) must not hide the table from the row-wise attacks: the rows a user touched may still move
    most."""
    out = []
    for name, stack in tensors.items():
        if stack.dim() == 3 and stack.shape[1] > 1:
            zero_rows = stack.flatten(2).abs().sum(-1) == 0  # (C, rows)
            if "emb" in name.rsplit(".", 1)[0] or bool(zero_rows.any()):
                out.append(name)
    return out


def _inferred_rows(norms: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """The rows each client most likely used: its ``weight`` rows (its number of examples, which the record states)
    that moved most relative to how much that row moves for the round's typical client (the median). Even when every
    row changes (a full softmax moves all output rows), the rows of a user's own items move most. When the weights
    say nothing (all equal: hidden metadata), the rows that moved at least twice as much as the median's."""
    ratio = norms / norms.median(dim=0).values.clamp(min=1e-12)  # (C, rows)
    stated = bool((weights != weights[0]).any())
    out = torch.zeros_like(ratio)
    for c in range(len(ratio)):
        k = int(weights[c]) if stated else int((ratio[c] >= 2.0).sum())
        k = int(min(max(k, 1), ratio.shape[1]))
        out[c, ratio[c].topk(k).indices] = 1.0
    return out.numpy()


class _Projection:
    """A seeded sparse random projection ``R^p -> R^dim`` (entries +-sqrt(s/dim) with probability 1/(2s), s = sqrt(p)),
    built once per input width."""

    def __init__(self, dim: int, seed: int):
        self.dim, self.seed, self.matrices = dim, seed, {}

    def __call__(self, key: str, x: torch.Tensor) -> np.ndarray:
        p = x.shape[1]
        if p <= self.dim:
            return x.double().numpy()
        if key not in self.matrices:
            g = torch.Generator().manual_seed(self.seed + p)
            s = max(1.0, p ** 0.5)
            nnz = max(self.dim, int(p * self.dim / s))
            rows = torch.randint(0, p, (nnz,), generator=g)
            cols = torch.randint(0, self.dim, (nnz,), generator=g)
            signs = (torch.randint(0, 2, (nnz,), generator=g) * 2 - 1).double() * (s / self.dim) ** 0.5
            self.matrices[key] = torch.sparse_coo_tensor(torch.stack([rows, cols]), signs, (p, self.dim),
                                                         check_invariants=True).coalesce()
        return torch.sparse.mm(self.matrices[key].t(), x.double().t()).t().numpy()


def egress_features(run_dir: Path, rounds=None, projection_dim: int = 256, seed: int = 0) -> dict[str, Artifact]:
    """The artifacts (module docstring) of the recorded rounds of ``run_dir``, each user's features averaged over the
    rounds it appears in. Raises :class:`~ffmrec.errors.FFMRecError` when nothing was recorded."""
    run_dir = Path(run_dir)
    available = recorded_rounds(run_dir)
    rounds = available if rounds is None else [int(r) for r in rounds]
    if not available:
        raise FFMRecError(f"{run_dir} has no recorded rounds (no {run_dir / 'egress'}/round-*.pt): run it with "
                          "--set 'federated.record_rounds=[...]' to record what the clients send.")
    missing = sorted(set(rounds) - set(available))
    if missing:
        raise FFMRecError(f"{run_dir} has no recording of round(s) {missing}: recorded rounds are {available}.")
    project = _Projection(projection_dim, seed)
    sums: dict[str, dict[int, np.ndarray]] = {}
    counts: dict[int, int] = {}
    kinds: dict[str, str] = {}
    for rnd in rounds:
        data = torch.load(run_dir / "egress" / f"round-{rnd:05d}.pt", weights_only=True)
        users = data["client_ids"].numpy()
        tensors = {k: v.float() for k, v in data["tensors"].items()}
        tables = _tables(tensors)
        parts: dict[str, np.ndarray] = {}
        for name in tables:
            stack = tensors[name].flatten(2)  # (C, rows, width)
            norms = stack.norm(dim=-1).double()
            parts[f"touched:{name}"] = (norms > 0).double().numpy()
            parts[f"rownorm:{name}"] = norms.numpy()
            parts[f"inferred:{name}"] = _inferred_rows(norms, data["weights"])
            kinds[f"inferred:{name}"] = "indicator"
            parts[f"values:{name}"] = project(name, stack.flatten(1))
            kinds[f"touched:{name}"] = "indicator"  # rownorm stays "dense": every row may be touched (a full softmax)
        dense = [tensors[k].flatten(1) for k in sorted(tensors) if k not in tables]
        if dense:
            parts["values:dense"] = project("dense", torch.cat(dense, dim=1))
        meta = [data["weights"].double().unsqueeze(1)] + [v.double().unsqueeze(1) for _, v in sorted(data["metrics"].items())]
        parts["metadata"] = torch.nan_to_num(torch.cat(meta, dim=1)).numpy()
        for name, x in parts.items():
            acc = sums.setdefault(name, {})
            for i, u in enumerate(users.tolist()):
                acc[u] = acc[u] + x[i] if u in acc else x[i].copy()
        for u in users.tolist():
            counts[u] = counts.get(u, 0) + 1
    users = np.array(sorted(counts), dtype=np.int64)
    n = np.array([counts[u] for u in users], dtype=np.float64)[:, None]
    out = {name: Artifact(users, (np.stack([acc[u] for u in users]) / n).astype(np.float32), kinds.get(name, "dense"))
           for name, acc in sums.items()}
    out["all"] = Artifact(users, np.concatenate([_standardize(a) for a in out.values()], axis=1).astype(np.float32))
    return out


def evaluation_features(run_dir: Path) -> dict[str, Artifact]:
    """``{"evaluation": Artifact}`` from the per-user columns the devices reported at the test evaluation
    (``run_dir/test_ranks.npz``; ranks as ``log(1 + rank)``), or ``{}`` when the run has none."""
    from ffmrec.utils.io import load_columns

    path = Path(run_dir) / "test_ranks.npz"
    if not path.is_file():
        return {}
    columns = load_columns(path)
    users = columns.pop("user").astype(np.int64)
    parts = [np.log1p(np.maximum(v.astype(np.float64), 0.0)) if name == "rank" else v.astype(np.float64)
             for name, v in sorted(columns.items()) if v.ndim == 1 and np.issubdtype(v.dtype, np.number)]
    if not parts:
        return {}
    return {EVALUATION: Artifact(users, np.stack(parts, axis=1).astype(np.float32))}


def raw_features(sequences, num_items: int, ratings=None) -> Artifact:
    """The ceiling's features: each user's user-item row (items ``1..num_items``), 1 per interacted item, or its
    rating where ``ratings`` (aligned with ``sequences``) are given: everything the device holds."""
    x = np.zeros((len(sequences), num_items), dtype=np.float32)
    for u, seq in enumerate(sequences):
        x[u, np.asarray(seq, dtype=np.int64) - 1] = 1.0 if ratings is None else np.asarray(ratings[u], np.float32)
    return Artifact(np.arange(len(sequences), dtype=np.int64), x, "indicator")


def _standardize(a: Artifact) -> np.ndarray:
    """Indicator and count rows idf-weighted and scaled to unit norm (a user's items weigh alike whatever their
    count), dense columns z-scored; constant columns dropped."""
    x = a.features.astype(np.float64)
    sd = x.std(axis=0)
    keep = sd > 1e-12
    x = x[:, keep]
    if a.kind == "indicator":  # tf-idf (Sparck Jones, 1972): rare items say more about a user than popular ones
        idf = np.log((1.0 + len(x)) / (1.0 + (x > 0).sum(axis=0))) + 1.0  # smoothed: a column everyone has still counts
        x = x * idf
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x - x.mean(axis=0)
    return (x - x.mean(axis=0)) / sd[keep]


def _reduce(x: np.ndarray, components: int, seed: int) -> np.ndarray:
    """The first ``components`` principal components of every user's features (unsupervised: the server may fit it
    on everything it received), not whitened; ``x`` itself when it is narrower."""
    if x.shape[1] <= components:
        return x
    from sklearn.decomposition import PCA

    k = min(components, x.shape[0] - 1)
    return PCA(k, svd_solver="randomized", random_state=seed).fit_transform(x)


# --- attackers --------------------------------------------------------------------------------------------------
def _attacker(kind: str, seed: int):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.neural_network import MLPClassifier

    if kind == "logreg":
        return LogisticRegressionCV(Cs=[1e-2, 1e-1, 1.0, 10.0, 100.0], l1_ratios=(0.0,), cv=3, max_iter=500,
                                    scoring="neg_log_loss", use_legacy_attributes=False)
    return MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-1, max_iter=200, random_state=seed)


def _scores(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(n, len(classes))`` class probabilities in the order of ``classes`` (0 for a class the model never saw)."""
    proba = model.predict_proba(x)
    out = np.zeros((len(x), len(classes)))
    index = {int(c): j for j, c in enumerate(classes)}
    for j, c in enumerate(model.classes_):
        out[:, index[int(c)]] = proba[:, j]
    return out


def _fit_predict(kind: str, x_train, y_train, x_test, classes, seed: int) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # a small labelled set: iteration-limit and rare-class warnings are expected; the metrics say how it went
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class")
        model = _attacker(kind, seed).fit(x_train, y_train)
    return _scores(model, x_test, classes)


def _quality(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    return M.roc_auc(y == classes[1], proba[:, 1]) if len(classes) == 2 else M.macro_auc(y, proba, classes)


def _choose_attacker(kinds, x, y, classes, seed: int) -> str:
    """The attacker with the best 3-fold cross-validated AUC on the labelled users."""
    if len(kinds) == 1:
        return kinds[0]
    folds = np.random.default_rng(seed).permutation(len(y)) % 3
    best, best_score = kinds[0], -np.inf
    for kind in kinds:
        scores = []
        for f in range(3):
            tr, va = folds != f, folds == f
            if len(np.unique(y[tr])) < 2 or len(np.unique(y[va])) < 2:
                continue
            scores.append(_quality(y[va], _fit_predict(kind, x[tr], y[tr], x[va], classes, seed), classes))
        score = float(np.nanmean(scores)) if scores else -np.inf
        if score > best_score:
            best, best_score = kind, score
    return best


def _binary_prediction(scores: np.ndarray, prevalence: float) -> np.ndarray:
    """Predict class 1 for the ``prevalence`` share of highest scores (the labelled users' base rate)."""
    return (scores >= np.quantile(scores, 1.0 - prevalence)).astype(np.int64) if len(scores) else scores


def attack_trait(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, cfg: AttackConfig) -> dict:
    """Train on rows ``train``, predict rows ``test``; returns the trait's metrics with intervals and p-value."""
    classes = np.unique(y[train])
    if len(classes) < 2:
        raise FFMRecError("the labelled users all share one class of this trait: raise labelled_fraction.")
    kind = _choose_attacker(list(cfg.attackers), x[train], y[train], classes, cfg.seed)
    proba = _fit_predict(kind, x[train], y[train], x[test], classes, cfg.seed)
    yt = y[test]
    out: dict = {"attacker": kind, "test_users": int(len(test)), "majority_rate": M.majority_rate(yt)}
    if len(classes) == 2:
        pos = (yt == classes[1]).astype(np.int64)
        score = proba[:, 1]
        pred = _binary_prediction(score, float(np.mean(y[train] == classes[1])))
        out["auc"] = M.roc_auc(pos, score)
        out["auc_ci"] = M.bootstrap_ci(M.roc_auc, pos, score, cfg.bootstrap, seed=cfg.seed)
        out["auc_p"] = M.permutation_pvalue(M.roc_auc, pos, score, cfg.permutations, seed=cfg.seed)
        out["balanced_accuracy"] = M.balanced_accuracy(pos, pred)
        out["accuracy"] = M.accuracy(pos, pred)
    else:
        pred = classes[proba.argmax(1)]
        out["auc"] = M.macro_auc(yt, proba, classes)
        out["auc_ci"] = M.bootstrap_ci(lambda a, b: M.macro_auc(a, b, classes), yt, proba,
                                       max(1, cfg.bootstrap // 5), seed=cfg.seed)
        out["accuracy"] = M.accuracy(yt, pred)
        out["accuracy_ci"] = M.bootstrap_ci(M.accuracy, yt, pred, cfg.bootstrap, seed=cfg.seed)
        out["accuracy_p"] = M.permutation_pvalue(M.accuracy, yt, pred, cfg.permutations, seed=cfg.seed)
        out["balanced_accuracy"] = M.balanced_accuracy(yt, pred)
    out["auc_ci"] = list(out["auc_ci"])
    if "accuracy_ci" in out:
        out["accuracy_ci"] = list(out["accuracy_ci"])
    return out


def labelled_users(num_users: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded boolean mask of the users whose traits the attacker knows."""
    rng = np.random.default_rng((seed, 0x7A175))
    mask = np.zeros(num_users, dtype=bool)
    mask[rng.choice(num_users, int(round(fraction * num_users)), replace=False)] = True
    return mask


def run_attacks(artifacts: dict[str, Artifact], traits: Traits, cfg: AttackConfig) -> dict[str, dict[str, dict]]:
    """``results[artifact][trait]`` for every artifact and every trait the dataset has (:func:`attack_trait`)."""
    labelled = labelled_users(traits.num_users, cfg.labelled_fraction, cfg.seed)
    results: dict[str, dict[str, dict]] = {}
    for name, art in artifacts.items():
        x = _reduce(_standardize(art), cfg.components, cfg.seed)
        if x.shape[1] == 0:
            continue  # every user sent the same value: nothing to learn from (a constant artifact)
        results[name] = {}
        for trait in cfg.traits:
            if trait not in traits.labels:
                continue
            y = traits.labels[trait][art.users]
            known = y >= 0
            train = np.flatnonzero(known & labelled[art.users])
            test = np.flatnonzero(known & ~labelled[art.users])
            if len(train) < 6 or len(test) < 6:
                continue
            results[name][trait] = attack_trait(x, y, train, test, cfg)
    return results


def worst_artifact(results: dict[str, dict[str, dict]], trait: str = "gender", key: str = "auc") -> tuple[str, dict]:
    """The shared artifact (not the raw-interaction ceiling) that leaks ``trait`` most, by ``key``."""
    shared = [(name, r[trait]) for name, r in results.items() if name != RAW and trait in r]
    if not shared:
        raise FFMRecError(f"no shared artifact was attacked for {trait!r}.")
    return max(shared, key=lambda item: item[1][key])
