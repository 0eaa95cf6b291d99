"""Which clients train in a round.

Sampling is a pure function of ``(seed, server_round)``: the generator is re-seeded every round rather than advanced
from round to round, so a run resumed at round ``t`` draws exactly the clients the uninterrupted run would have drawn,
whatever was sampled (or not) before. Clients are drawn uniformly without replacement, as in FedAvg (McMahan et al.,
"Communication-Efficient Learning of Deep Networks from Decentralized Data", AISTATS 2017, a fraction ``C`` of the
``K`` clients per round).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ffmrec.errors import ConfigError
from ffmrec.utils.checks import check_int


def _check_count(clients_per_round: object, num_clients: int) -> int:
    clients_per_round = check_int(clients_per_round, "clients_per_round", 1)
    if clients_per_round > num_clients:
        raise ConfigError(f"`clients_per_round` must be at most the number of clients ({num_clients}), got "
                          f"{clients_per_round}; set clients_per_round <= {num_clients} (or use fraction=1.0 for "
                          "all clients).")
    return clients_per_round


def round_generator(seed: int, server_round: int) -> np.random.Generator:
    """A numpy Generator that depends only on ``(seed, server_round)``.

    The round is a ``spawn_key`` of the run's :class:`numpy.random.SeedSequence`, so streams of different rounds are
    independent by construction and never collide for distinct ``(seed, server_round)`` pairs.
    """
    seed = check_int(seed, "seed", 0)
    server_round = check_int(server_round, "server_round", 0)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(server_round,)))


def sample_clients(num_clients: int, clients_per_round: int, server_round: int, seed: int) -> list[int]:
    """``clients_per_round`` distinct client ids out of ``range(num_clients)``, sorted ascending.

    Uniform without replacement, drawn from :func:`round_generator` ``(seed, server_round)``: reproducible and
    independent of call history. ``clients_per_round == num_clients`` returns every client.

    Args:
        num_clients: size of the client population, ``>= 1``.
        clients_per_round: how many to draw, ``1 <= clients_per_round <= num_clients``
            (see :func:`resolve_clients_per_round` to derive it from a fraction).
        server_round: round number, ``>= 0``.
        seed: run seed, ``>= 0``.

    Returns:
        Sorted list of ``clients_per_round`` distinct ints.
    """
    num_clients = check_int(num_clients, "num_clients", 1)
    clients_per_round = _check_count(clients_per_round, num_clients)
    rng = round_generator(seed, server_round)  # validates seed and server_round even when all clients are taken
    if clients_per_round == num_clients:
        return list(range(num_clients))
    chosen = rng.choice(num_clients, size=clients_per_round, replace=False)
    return sorted(int(c) for c in chosen)


def resolve_clients_per_round(num_clients: int, clients_per_round: int | None = None,
                              fraction: float | None = None) -> int:
    """Number of clients per round from exactly one of a count or a fraction of ``num_clients``.

    A fraction is converted as ``max(1, round_half_up(fraction * num_clients))`` on the decimal value of ``fraction``
    (``0.25 * 10 = 2.5 -> 3``; ``0.01 * 10 = 0.1 -> 1``). Unlike ``int(fraction * num_clients)`` this never silently
    floors a small fraction to zero clients or a ``0.x99...`` product one client short.

    Args:
        num_clients: size of the client population, ``>= 1``.
        clients_per_round: an explicit count, ``1 <= clients_per_round <= num_clients``; or ``None``.
        fraction: a fraction ``0 < fraction <= 1``; or ``None``.

    Returns:
        The count, ``1 <= count <= num_clients``.
    """
    num_clients = check_int(num_clients, "num_clients", 1)
    if (clients_per_round is None) == (fraction is None):
        raise ConfigError(f"give exactly one of `clients_per_round` and `fraction`, got clients_per_round="
                          f"{clients_per_round!r} and fraction={fraction!r}; set one and leave the other unset.")
    if clients_per_round is not None:
        return _check_count(clients_per_round, num_clients)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) and not hasattr(fraction, "__float__"):
        raise ConfigError(f"`fraction` must be a number in (0, 1], got {fraction!r}; set it to e.g. 0.1.")
    fraction = float(fraction)
    if not 0 < fraction <= 1:  # also rejects nan
        raise ConfigError(f"`fraction` must satisfy 0 < fraction <= 1, got {fraction}; set it to the share of "
                          "clients sampled per round, e.g. 0.1, or 1.0 for all.")
    count = math.floor(Fraction(repr(fraction)) * num_clients + Fraction(1, 2))
    return min(num_clients, max(1, count))
