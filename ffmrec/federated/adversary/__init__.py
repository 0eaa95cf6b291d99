"""Robustness of federated recommendation: adversarial clients (a wrapper around the client task) and noisy
histories (a transform of the data), configured by ``federated.adversary`` and ``federated.noise``."""

from ffmrec.federated.adversary.attack import (
                                               PoisonedTask,
                                               build_adversary,
                                               fake_history,
                                               item_counts,
                                               malicious_clients,
                                               unpopular_target,
)
from ffmrec.federated.adversary.config import AdversaryConfig, NoiseConfig
from ffmrec.federated.adversary.noise import noise_count, noisy_history, noisy_sequences

__all__ = ["AdversaryConfig", "NoiseConfig", "PoisonedTask", "build_adversary", "fake_history", "item_counts",
           "malicious_clients", "unpopular_target", "noise_count", "noisy_history", "noisy_sequences"]
