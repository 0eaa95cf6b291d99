"""Privacy budgets of ffmrec's differential-privacy defences, from a real accountant (Google's ``dp_accounting``).

- Central DP (:class:`~ffmrec.federated.strategies.central_dp.CentralDP`, whether the server or the devices clip,
  with or without secure aggregation: the same mechanism): each round adds ``N(0, (z C)^2 I)`` to the sum of the
  sampled clients' updates clipped to L2 norm ``C``. With ``clients_per_round`` drawn without replacement from ``N``
  (ffmrec's sampler) the round is ``SampledWithoutReplacementDpEvent`` under replace-one neighbours, where one
  client's clipped update replaced by another moves the sum by up to ``2 C``: the Gaussian event's noise multiplier
  (noise std over L2 sensitivity) is ``z / 2``. With Poisson sampling of rate ``q`` it is ``PoissonSampledDpEvent``
  under add/remove neighbours (sensitivity ``C``, multiplier ``z``). The RDP accountant (Mironov, CSF 2017;
  subsampled Gaussian: Mironov, Talwar & Zhang, 2019; Wang, Balle & Kasiviswanathan, AISTATS 2019, Thm 27) composes
  ``rounds`` of them; epsilon is reported for ``delta = 1e-5``. The amplification assumes that who was sampled is not
  published.
- Local DP (clip + :class:`~ffmrec.federated.transforms.noise.GaussianNoise` on the device): the server sees every
  message, so there is no amplification by sampling; a client's message is a Gaussian mechanism of its clipped update,
  whose value on two histories of the client differs by up to ``2 C`` (multiplier ``z / 2``); a client's budget is the
  composition over the rounds it took part in, and the run's epsilon is that of the client who took part most often
  (counted from the seeded sampler).
"""

from __future__ import annotations

import numpy as np

from ffmrec.errors import ConfigError

DELTA = 1e-5
ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [128, 256, 512, 1024])


def _check(noise_multiplier: float, delta: float) -> None:
    if not noise_multiplier > 0:
        raise ConfigError(f"noise_multiplier={noise_multiplier} must be > 0 for a finite epsilon.")
    if not 0 < delta < 1:
        raise ConfigError(f"delta={delta} must lie in (0, 1), e.g. 1e-5.")


def epsilon_central(noise_multiplier: float, clients_per_round: int, num_clients: int, rounds: int,
                    delta: float = DELTA, sampling: str = "fixed") -> float:
    """Epsilon of central DP-FedAvg after ``rounds`` rounds, noise std ``noise_multiplier * C`` on the sum of updates
    clipped to ``C`` (RDP accountant; ``sampling`` "fixed": exactly ``clients_per_round`` without replacement,
    replace-one neighbours; "poisson": each client with probability ``clients_per_round / N``, add/remove)."""
    import dp_accounting
    from dp_accounting import rdp

    _check(noise_multiplier, delta)
    if not 0 < clients_per_round <= num_clients or rounds < 1:
        raise ConfigError(f"clients_per_round={clients_per_round} must lie in [1, {num_clients}], rounds={rounds} >= 1.")
    if sampling == "fixed":  # replace-one: the sum moves by up to 2C
        gaussian = dp_accounting.GaussianDpEvent(noise_multiplier / 2)
        event = dp_accounting.SampledWithoutReplacementDpEvent(num_clients, clients_per_round, gaussian)
        relation = dp_accounting.NeighboringRelation.REPLACE_ONE
    elif sampling == "poisson":  # add/remove: the sum moves by up to C
        event = dp_accounting.PoissonSampledDpEvent(clients_per_round / num_clients,
                                                    dp_accounting.GaussianDpEvent(noise_multiplier))
        relation = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    else:
        raise ConfigError(f"sampling={sampling!r} is unknown: use 'fixed' or 'poisson'.")
    accountant = rdp.RdpAccountant(list(ORDERS), relation)
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(delta))


def epsilon_local(noise_multiplier: float, participations: int, delta: float = DELTA) -> float:
    """Epsilon of a client whose update, clipped to ``C``, was released with Gaussian noise of std
    ``noise_multiplier * C`` ``participations`` times (no amplification: the server sees every message; two histories
    of the client move its update by up to ``2 C``); 0 for a client that never took part."""
    import dp_accounting
    from dp_accounting import rdp

    _check(noise_multiplier, delta)
    if participations <= 0:
        return 0.0
    accountant = rdp.RdpAccountant(list(ORDERS))
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier / 2),
                                                         int(participations)))
    return float(accountant.get_epsilon(delta))


def max_participations(num_clients: int, clients_per_round: int, rounds: int, seed: int) -> int:
    """The most rounds any client took part in under ffmrec's seeded sampler."""
    from ffmrec.federated.sampling import sample_clients

    counts = np.zeros(num_clients, dtype=np.int64)
    for rnd in range(1, rounds + 1):
        counts[np.asarray(sample_clients(num_clients, clients_per_round, rnd, seed))] += 1
    return int(counts.max())


def run_epsilon(fed, num_clients: int, seed: int, rounds: int | None = None, delta: float = DELTA) -> dict[str, float]:
    """The budgets a run's :class:`~ffmrec.federated.config.FederatedConfig` spends (empty without DP):
    ``epsilon_central`` and/or ``epsilon_local`` at ``delta``. Central DP is the same Gaussian mechanism whoever clips
    (the server at ``central_clip_norm``, or the devices at ``client_clip_norm`` with ``central_clip_norm=null``, as
    with secure aggregation): its epsilon depends on the noise multiplier and the sampling only."""
    from ffmrec.federated.sampling import resolve_clients_per_round

    if not getattr(fed, "central_noise_multiplier", None) and not getattr(fed, "client_noise_multiplier", None):
        return {}
    rounds = fed.rounds if rounds is None else rounds
    per_round = resolve_clients_per_round(num_clients, fed.clients_per_round, fed.fraction)
    out: dict[str, float] = {}
    if getattr(fed, "central_noise_multiplier", None):
        out["epsilon_central"] = epsilon_central(fed.central_noise_multiplier, per_round, num_clients, rounds, delta)
    if getattr(fed, "client_noise_multiplier", None):
        out["epsilon_local"] = epsilon_local(fed.client_noise_multiplier,
                                             max_participations(num_clients, per_round, rounds, seed), delta)
    if out:
        out["delta"] = delta
    return out
