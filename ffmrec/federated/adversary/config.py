"""Configuration of robustness experiments: adversarial clients (:class:`AdversaryConfig`) and noisy histories
(:class:`NoiseConfig`), sections ``federated.adversary`` and ``federated.noise`` of a run config."""

from __future__ import annotations

from dataclasses import dataclass, field

from ffmrec.errors import ConfigError

ATTACKS = ("explicit_boosting", "target_row")


@dataclass
class AdversaryConfig:
    """Malicious clients that try to push one target item into everyone's top K (see
    :mod:`ffmrec.federated.adversary.attack`)."""

    fraction: float = field(default=0.0, metadata={"help": "Share of the clients that are malicious (seeded choice, rounded half up; 0 = no attack). 0.01 and 0.05 are the usual settings."})
    target_item: int | None = field(default=None, metadata={"help": "The item the attackers promote (an item id, 1..num_items); null = a seeded choice among the unpopular items (below the median training count)."})
    attack: str = field(default="explicit_boosting", metadata={"help": "'explicit_boosting': each malicious client trains the model's own loss with the target as the next item after sequences of popular items (PIECK's popular-item mimicry) and scales the loss by 'boost' (Bhagoji et al., ICML 2019). 'target_row': the same poisoned loss, but the attacker's step moves only the target item's embedding row, every other parameter held (the item-embedding poisoning of A-ra, Rong et al., IJCAI 2022): the encoder is never moved by an attacker (a large boost can still overflow the honest losses: see boost); needs an id embedding table (model.item_repr id or hybrid)."})
    boost: float = field(default=1.0, metadata={"help": "Factor on the malicious clients' local objective (with local SGD their update is scaled by it; 1 = no boosting: the attack then relies on its coherent direction and the largest legal weight). With FedAvg and a local lr of 1, boosts of 3 and more wreck the model instead of promoting the target; FedAdam normalizes the step and tolerates e.g. 10. With attack=target_row the encoder is never touched, but at a local lr of 1 a boost of 10 grows the target's row until honest clients' losses overflow (their updates are then rejected as non-finite)."})
    auxiliary: bool = field(default=True, metadata={"help": "Whether the attackers also train the method's auxiliary terms (e.g. LUMOS's tri-view InfoNCE over views of their fake history), as an honest device would; false = they train only the model's own next-item loss on their poisoned data, every step toward the target (a stronger attack on methods with such terms; the same attack on fedsasrec)."})
    popular_items: int = field(default=50, metadata={"help": "The attackers' fake sequences are drawn (by popularity) from this many most popular training items."})
    measure_exposure: bool = field(default=False, metadata={"help": "Report the target's exposure ER@K even without attackers (fraction=0): the no-attack baseline of a robustness experiment."})
    exposure_k: int = field(default=10, metadata={"help": "K of the exposure ER@K (the share of users, among those who never interacted with the target, whose top K unseen items contain it)."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 0.5:
            raise ConfigError(f"federated.adversary.fraction={self.fraction} must lie in [0, 0.5): a majority of "
                              "malicious clients is not a robustness setting; use e.g. 0.01 or 0.05 (0 = no attack).")
        if self.attack not in ATTACKS:
            raise ConfigError(f"federated.adversary.attack={self.attack!r} is unknown: use one of {', '.join(ATTACKS)}.")
        if not self.boost > 0:
            raise ConfigError(f"federated.adversary.boost={self.boost} must be > 0 (1 = no boosting, e.g. 10).")
        if self.popular_items < 1:
            raise ConfigError(f"federated.adversary.popular_items={self.popular_items} must be >= 1 (e.g. 50).")
        if self.target_item is not None and self.target_item < 1:
            raise ConfigError(f"federated.adversary.target_item={self.target_item} must be an item id >= 1 "
                              "(0 is padding), or null for a seeded unpopular item.")
        if self.exposure_k < 1:
            raise ConfigError(f"federated.adversary.exposure_k={self.exposure_k} must be >= 1 (e.g. 10).")

    @property
    def active(self) -> bool:
        """Whether the run needs the adversary's wrapper (attackers, or at least the exposure measurement)."""
        return self.fraction > 0 or self.measure_exposure


@dataclass
class NoiseConfig:
    """Noisy histories: a share of each client's training history replaced by random items (see
    :func:`ffmrec.federated.adversary.noise.noisy_sequences`)."""

    p: float = field(default=0.0, metadata={"help": "Share of each user's training history replaced by random items the user never interacted with: floor(p * n) of its n training items (0 = off; e.g. 0.1, 0.2, 0.3). The held-out validation and test items are never touched."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise ConfigError(f"federated.noise.p={self.p} must lie in [0, 1): it is the share of each training "
                              "history replaced by random items (e.g. 0.1).")
