"""The cold-item protocol: can a model recommend items it never saw in training?

A seeded ``fraction`` of the catalogue (default 10%) is held out of every training sequence: those *cold* items are
removed from every user's sequence except at its very end, where a user's last item stays as the test target. The
leave-one-out split is then taken on these sequences (last item = test, second-to-last = validation, the rest =
training), so no cold item appears in any training sequence, validation target or model input, and the test scores
only the users whose target is a cold item (others' test targets are warm and not scored). Validation targets are
warm items (the best round or epoch is chosen on warm items, as it would be in deployment). Users left with fewer
than 3 items are dropped. Cold items are not in the catalogue at training time: the methods pass them to the model
(``SASRec(unseen_items=...)``), whose training softmax leaves them out (else the full-catalogue cross-entropy would
push them down as negatives); at test time every item is scored. An id-only model has never trained a cold item's
embedding; a text or hybrid model (``model.item_repr``) scores it through its text. LUMOS's views never contain a
cold item either (:class:`ffmrec.fm.views.ItemKnowledge` ``excluded``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ffmrec.errors import ConfigError
from ffmrec.eval.protocol import LeaveOneOut

PROTOCOLS = ("loo", "cold-items")


def cold_item_ids(num_items: int, fraction: float, seed: int) -> np.ndarray:
    """``round(fraction * num_items)`` (at least 1) distinct item ids from ``1..num_items``, sorted, drawn from
    ``seed`` alone (the same set for every method and engine)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"eval.cold_fraction={fraction} must lie in (0, 1), e.g. 0.1.")
    count = max(1, int(round(fraction * num_items)))
    rng = np.random.default_rng((seed, 0xC01D))
    return np.sort(rng.choice(np.arange(1, num_items + 1), count, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class ColdItems(LeaveOneOut):
    """A leave-one-out split of sequences from which the cold items were removed (see the module docstring)."""

    cold: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted cold item ids
    kept_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # original user id of each row

    @classmethod
    def from_sequences(cls, sequences: list[np.ndarray], num_items: int, fraction: float = 0.1,
                       seed: int = 0) -> ColdItems:
        cold = cold_item_ids(num_items, fraction, seed)
        kept, users = [], []
        for u, seq in enumerate(sequences):
            seq = np.asarray(seq, dtype=np.int64)
            body = seq[:-1][~np.isin(seq[:-1], cold)]
            filtered = np.concatenate([body, seq[-1:]])
            if len(filtered) >= 3:
                kept.append(filtered)
                users.append(u)
        if not kept:
            raise ConfigError("eval.protocol=cold-items left no user with 3 items: use a larger dataset or a smaller "
                              "eval.cold_fraction.")
        return cls(kept, cold, np.asarray(users, dtype=np.int64))

    def is_cold(self, items: np.ndarray) -> np.ndarray:
        return np.isin(np.asarray(items), self.cold)

    def scored(self, stage: str, users: np.ndarray | None = None) -> np.ndarray:
        """Which of ``users`` (default all) are scored at ``stage``: all at validation, cold targets at test."""
        users = np.arange(self.num_users) if users is None else np.asarray(users)
        if stage == "valid":
            return np.ones(len(users), dtype=bool)
        return self.is_cold(np.array([int(self.sequences[int(u)][-1]) for u in users], dtype=np.int64))

    def stage(self, stage: str, users: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """As :meth:`LeaveOneOut.stage`; with ``users=None`` only the users scored at ``stage`` (every user at
        validation, the cold-target users at test), so that a centralized evaluation scores exactly those."""
        if users is None:
            users = np.flatnonzero(self.scored(stage))
        return super().stage(stage, users)


def make_split(sequences: list[np.ndarray], num_items: int, eval_cfg, seed: int) -> LeaveOneOut:
    """The split ``eval.protocol`` asks for: leave-one-out, or leave-one-out after holding out the cold items."""
    if eval_cfg.protocol == "cold-items":
        return ColdItems.from_sequences(sequences, num_items, eval_cfg.cold_fraction, seed)
    return LeaveOneOut(sequences)
