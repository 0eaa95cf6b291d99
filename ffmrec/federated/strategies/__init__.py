"""Server strategies, and the name -> strategy resolver used by configs (the only registry)."""

from __future__ import annotations

from ffmrec.errors import ConfigError
from ffmrec.federated.strategies.base import FedAvg, FedProx, Strategy
from ffmrec.federated.strategies.fedadam import FedAdam
from ffmrec.federated.strategies.lora_product import LoRAProductAverage
from ffmrec.federated.strategies.robust import Krum, Median, NormBounded, TrimmedMean
from ffmrec.federated.strategies.rowwise import RowwiseFedAvg

__all__ = ["Strategy", "FedAvg", "FedProx", "FedAdam", "Median", "TrimmedMean", "Krum", "NormBounded",
           "RowwiseFedAvg", "LoRAProductAverage", "build_strategy", "STRATEGIES"]

STRATEGIES = ("fedavg", "fedprox", "fedadam", "median", "trimmed_mean", "krum", "rowwise_fedavg", "lora_product")


def build_strategy(cfg, embedding_params: tuple[str, ...] = ()) -> Strategy:
    """Strategy from a :class:`~ffmrec.federated.config.FederatedConfig` (``strategy`` name + its parameters)."""
    name = cfg.strategy
    if name == "fedavg":
        s: Strategy = FedAvg(cfg.server_lr)
    elif name == "fedprox":
        s = FedProx(cfg.proximal_mu, cfg.server_lr)
    elif name == "fedadam":
        s = FedAdam(cfg.server_lr)
    elif name == "median":
        s = Median(cfg.server_lr)
    elif name == "trimmed_mean":
        s = TrimmedMean(cfg.trim_ratio, cfg.server_lr)
    elif name == "krum":
        s = Krum(cfg.krum_malicious, cfg.krum_multi, cfg.server_lr)
    elif name == "rowwise_fedavg":
        s = RowwiseFedAvg(embedding_params, cfg.server_lr)
    elif name == "lora_product":
        s = LoRAProductAverage(cfg.server_lr)
    else:
        raise ConfigError(f"federated.strategy={name!r} is unknown: use one of {', '.join(STRATEGIES)}.")
    if cfg.max_update_norm:
        s = NormBounded(s, cfg.max_update_norm)
    if getattr(cfg, "central_noise_multiplier", None) is not None:
        from ffmrec.federated.strategies.central_dp import CentralDP

        s = CentralDP.from_config(s, cfg)
    return s
