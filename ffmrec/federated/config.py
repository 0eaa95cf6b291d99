"""Configuration of a federated run (the server side; :class:`ClientConfig` configures the device side)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from ffmrec.errors import ConfigError
from ffmrec.federated.adversary.config import AdversaryConfig, NoiseConfig
from ffmrec.federated.client import ClientConfig
from ffmrec.federated.strategies import STRATEGIES

ENGINES = ("fast", "flower-sim", "flower-deploy")
MESSAGE_MODES = ("cohort", "per-user")


@dataclass
class SecAggConfig:
    """Flower's SecAgg+ parameters (``federated.secure_aggregation``; see :mod:`ffmrec.federated.engines.flower.secagg`)."""

    num_shares: int | None = field(default=None, metadata={"help": "Shares each device's secrets are split into (its SecAgg+ neighbourhood, an integer > 2, best odd); null = every client of the round (full SecAgg)."})
    reconstruction_threshold: float = field(default=0.5, metadata={"help": "Share of a device's shares needed to rebuild its secrets, in (0, 1]: higher resists more colluding clients, lower tolerates more dropouts."})
    clipping_range: float = field(default=8.0, metadata={"help": "Each coordinate of (weight / max weight) * update is clipped to [-clipping_range, clipping_range] before quantization (the two extra coordinates, mean loss and total weight, fit within it)."})
    quantization_range: int = field(default=2**22, metadata={"help": "Quantization levels of [-clipping_range, clipping_range]: the error per coordinate of one device is about 2 * clipping_range / quantization_range * max_weight / weight; clients_per_round * quantization_range must stay below 2^32."})

    def __post_init__(self) -> None:
        if self.num_shares is not None and self.num_shares < 3:
            raise ConfigError(f"federated.secagg.num_shares={self.num_shares} must be an integer > 2 (e.g. 5), or null "
                              "for every client of the round.")
        if not 0 < self.reconstruction_threshold <= 1:
            raise ConfigError(f"federated.secagg.reconstruction_threshold={self.reconstruction_threshold} must lie in "
                              "(0, 1], e.g. 0.5.")
        if not self.clipping_range > 0 or self.quantization_range < 2:
            raise ConfigError(f"federated.secagg.clipping_range={self.clipping_range} must be > 0 and "
                              f"quantization_range={self.quantization_range} >= 2 (e.g. 8.0 and 4194304).")


@dataclass
class FederatedConfig:
    """Rounds, client sampling, the strategy and the engine that runs the client updates."""

    engine: str = field(default="fast", metadata={"help": "'fast' (ffmrec's vectorised in-process simulator), 'flower-sim' (Flower's simulation engine) or 'flower-deploy' (Flower's deployment engine: a SuperLink and num_supernodes SuperNodes as processes on this machine, TLS and SuperNode authentication on)."})
    rounds: int = field(default=100, metadata={"help": "Federated rounds."})
    clients_per_round: int | None = field(default=256, metadata={"help": "Exact number of clients sampled per round (seeded); null to use 'fraction'."})
    fraction: float | None = field(default=None, metadata={"help": "Share of clients per round, rounded half up (used only when clients_per_round is null)."})
    strategy: str = field(default="fedadam", metadata={"help": "fedavg, fedprox, fedadam, median, trimmed_mean, krum, rowwise_fedavg or lora_product (LoRA adapters averaged as products B·A)."})
    server_lr: float = field(default=0.001, metadata={"help": "Server learning rate (1.0 is plain FedAvg; FedAdam's step size)."})
    proximal_mu: float = field(default=0.01, metadata={"help": "FedProx's mu (strategy=fedprox)."})
    trim_ratio: float = field(default=0.1, metadata={"help": "Share trimmed at each end (strategy=trimmed_mean)."})
    krum_malicious: int = field(default=1, metadata={"help": "Assumed malicious clients f (strategy=krum)."})
    krum_multi: int = field(default=1, metadata={"help": "Clients averaged by multi-Krum (strategy=krum)."})
    max_update_norm: float | None = field(default=None, metadata={"help": "Bound each client's whole update to this L2 norm before aggregating (null = off)."})
    min_clients: int = field(default=1, metadata={"help": "A round updates the model only if at least this many clients succeed."})
    eval_every: int = field(default=10, metadata={"help": "Validate every this many rounds (and after the last)."})
    eval_users: int | None = field(default=None, metadata={"help": "Validate on this many seeded-sampled users (null = all); the final test always uses all."})
    chunk_size: int = field(default=128, metadata={"help": "Fast simulator: clients computed together in one vectorised step."})
    client_timeout: float = field(default=300.0, metadata={"help": "Flower engines: seconds to wait for a client's reply before counting it failed."})
    num_supernodes: int = field(default=8, metadata={"help": "Flower engines: SuperNodes; users are spread over them (user u on node u mod n)."})
    deploy_timeout: float = field(default=3600.0, metadata={"help": "Flower deployment: seconds the whole run may take before it is stopped."})
    message_mode: str = field(default="cohort", metadata={"help": "Flower engines: 'cohort' (one message per SuperNode per round carrying its sampled users; the node trains them vectorised) or 'per-user' (one message per user: one device per SuperNode, the real cross-device case)."})
    max_client_weight: int | None = field(default=None, metadata={"help": "Largest weight (examples) a client may claim; a record above it is rejected (null = the task's own bound, e.g. model.max_len for sequences)."})
    client_clip_norm: float | None = field(default=None, metadata={"help": "Client-side transform: each client clips its whole update to this L2 norm before sending (null = off)."})
    client_noise_multiplier: float | None = field(default=None, metadata={"help": "Local DP: each client adds Gaussian noise of std client_noise_multiplier * client_clip_norm to every coordinate of its clipped update before sending (null = off; needs client_clip_norm)."})
    pseudo_item_ratio: float | None = field(default=None, metadata={"help": "Hide which embedding rows a client touched: fill this many times as many untouched rows with look-alike random rows (pseudo-items); 0 = every untouched row (dense update); null = off."})
    noise_seed: int | None = field(default=None, metadata={"help": "Experiments only: seeds the devices' secret (local DP noise, pseudo rows) and the central DP noise, so a defended run is reproducible. Anyone who knows it (the server reads the config) can regenerate and subtract the noise: leave it null (drawn from the operating system) for real privacy."})
    hide_metadata: bool = field(default=False, metadata={"help": "Client-side: every record claims weight 1 (uniform averaging: the weight no longer reveals the history length) and reports its loss as NaN (not reported)."})
    central_noise_multiplier: float | None = field(default=None, metadata={"help": "Central DP (DP-FedAvg): each update is clipped to L2 norm C (central_clip_norm, by the server; or client_clip_norm, by the device, when central_clip_norm is null), the server adds Gaussian noise of std central_noise_multiplier * C to the sum of the clipped updates and divides by the number of clients, each counted once (null = off)."})
    central_clip_norm: float | None = field(default=1.0, metadata={"help": "Central DP: L2 bound C of each client's whole update, applied by the server; null = each device clips its own update to client_clip_norm and states weight 1, and the server only adds the noise to the sum (needed with secure_aggregation)."})
    record_rounds: list[int] = field(default_factory=list, metadata={"help": "Rounds whose per-client records are saved to RUN/egress/ for offline attacks (e.g. [1, 100])."})
    audit: bool = field(default=False, metadata={"help": "Egress audit: fail the run if a client sends anything but the declared shared tensors (no raw data, personal rows or prepared views)."})
    secure_aggregation: bool = field(default=False, metadata={"help": "Flower engines (flower-sim, flower-deploy), per-user mode, one user per SuperNode: Flower's SecAgg+ (masked, quantized updates; the server learns only the round's weighted mean update, mean loss and total weight, never a client's update or weight). Needs a linear strategy (fedavg, fedprox, fedadam) and no audit or max_update_norm; central DP only with device-side clipping (client_clip_norm set, central_clip_norm=null); record_rounds then saves what the server received (masked vectors, public keys)."})
    secagg: SecAggConfig = field(default_factory=SecAggConfig, metadata={"help": "SecAgg+ parameters (secure_aggregation=true)."})
    client: ClientConfig = field(default_factory=ClientConfig, metadata={"help": "Local training on each device."})
    adversary: AdversaryConfig = field(default_factory=AdversaryConfig, metadata={"help": "Robustness: malicious clients promoting a target item (fraction=0: none)."})
    noise: NoiseConfig = field(default_factory=NoiseConfig, metadata={"help": "Robustness: a share of each client's training history replaced by random items (p=0: none)."})

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"federated.engine={self.engine!r} is unknown: use one of {', '.join(ENGINES)}.")
        if self.message_mode not in MESSAGE_MODES:
            raise ConfigError(f"federated.message_mode={self.message_mode!r} is unknown: use 'cohort' or 'per-user'.")
        if self.max_client_weight is not None and self.max_client_weight < 1:
            raise ConfigError(f"federated.max_client_weight={self.max_client_weight} must be >= 1 (or null).")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"federated.strategy={self.strategy!r} is unknown: use one of {', '.join(STRATEGIES)}.")
        if self.rounds < 1 or self.eval_every < 1 or self.chunk_size < 1 or self.min_clients < 1:
            raise ConfigError("federated.rounds, eval_every, chunk_size and min_clients must all be >= 1.")
        if (self.clients_per_round is None) == (self.fraction is None):
            raise ConfigError(
                "set exactly one of federated.clients_per_round and federated.fraction "
                "(e.g. --set federated.clients_per_round=256 or --set federated.clients_per_round=null federated.fraction=0.1)."
            )
        if self.clients_per_round is not None and self.clients_per_round < 1:
            raise ConfigError(f"federated.clients_per_round={self.clients_per_round} must be >= 1 (e.g. 64), or null "
                              "with federated.fraction set (e.g. federated.fraction=0.1).")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"federated.fraction={self.fraction} must lie in (0, 1], e.g. federated.fraction=0.1.")
        if self.clients_per_round is not None and self.clients_per_round < self.min_clients:
            raise ConfigError(
                f"federated.clients_per_round={self.clients_per_round} is below federated.min_clients={self.min_clients}: "
                "no round could ever succeed; lower min_clients or raise clients_per_round."
            )
        if self.client_noise_multiplier is not None and (self.client_noise_multiplier <= 0 or self.client_clip_norm is None):
            raise ConfigError(f"federated.client_noise_multiplier={self.client_noise_multiplier} needs a value > 0 and "
                              "federated.client_clip_norm set (the noise is scaled to the clipping bound).")
        if self.pseudo_item_ratio is not None and self.pseudo_item_ratio < 0:
            raise ConfigError(f"federated.pseudo_item_ratio={self.pseudo_item_ratio} must be >= 0 (0 = dense) or null.")
        if not isinstance(self.hide_metadata, bool):
            raise ConfigError(f"federated.hide_metadata={self.hide_metadata!r} must be true or false.")
        if self.central_noise_multiplier is not None and (self.central_noise_multiplier < 0 or (
                self.central_clip_norm is not None and not self.central_clip_norm > 0)):
            raise ConfigError(f"federated.central_noise_multiplier={self.central_noise_multiplier} must be >= 0 and "
                              f"federated.central_clip_norm={self.central_clip_norm} > 0 (or null: the devices clip).")
        device_clipped = self.central_noise_multiplier is not None and self.central_clip_norm is None
        if device_clipped and self.client_clip_norm is None:
            raise ConfigError("federated.central_clip_norm=null (central DP with device-side clipping) needs "
                              "federated.client_clip_norm set (e.g. 1.0): the devices' bound is the noise's scale.")
        if self.secure_aggregation:
            from ffmrec.federated.engines.flower.secagg import check_config

            check_config(self)
        if self.adversary.fraction > 0 and self.adversary.boost != 1 and self.client.optimizer == "adam":
            warnings.warn("federated.adversary.boost has no effect with federated.client.optimizer=adam (Adam's steps do "
                          "not scale with the loss): the attackers send unboosted updates.", stacklevel=2)
