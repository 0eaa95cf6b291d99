"""The leave-one-out protocol every ffmrec model is scored with.

For each user's chronological sequence: the last item is the test target, the second-to-last the validation target,
and everything before is training data. Validation ranks the validation target given the training history; test ranks
the test target given the training history plus the validation item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffmrec.errors import ConfigError

STAGES = ("valid", "test")


@dataclass(frozen=True)
class LeaveOneOut:
    """A leave-one-out split of per-user sequences (users with fewer than 3 items are not allowed)."""

    sequences: list[np.ndarray]

    def __post_init__(self) -> None:
        short = [u for u, s in enumerate(self.sequences) if len(s) < 3]
        if short:
            raise ConfigError(
                f"{len(short)} users have fewer than 3 interactions (first: user index {short[0]}); leave-one-out needs "
                "3: set data.min_sequence_length >= 3."
            )

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    def train_sequence(self, user: int) -> np.ndarray:
        return self.sequences[user][:-2]

    def train_sequences(self) -> list[np.ndarray]:
        return [s[:-2] for s in self.sequences]

    def history_and_target(self, stage: str, user: int) -> tuple[np.ndarray, int]:
        """What the model sees and what it must find for one user at ``stage``."""
        s = self.sequences[user]
        if stage == "valid":
            return s[:-2], int(s[-2])
        if stage == "test":
            return s[:-1], int(s[-1])
        raise ConfigError(f"stage={stage!r} is unknown: use one of {STAGES}.")

    def stage(self, stage: str, users: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Histories, targets and user indices of every user (or of ``users``) at ``stage``."""
        users = np.arange(self.num_users) if users is None else np.asarray(users)
        pairs = [self.history_and_target(stage, int(u)) for u in users]
        return [h for h, _ in pairs], np.array([t for _, t in pairs], dtype=np.int64), users
