import numpy as np
import pytest

from ffmrec.errors import ConfigError
from ffmrec.federated.adversary import NoiseConfig, noise_count, noisy_history, noisy_sequences


def test_noise_count_is_floor_of_p_times_training_length():
    assert [noise_count(n, 0.3) for n in (0, 1, 3, 4, 10, 11)] == [0, 0, 0, 1, 3, 3]
    assert noise_count(10, 0.1) == 1 and noise_count(10, 0.2) == 2  # no float round-down below the exact product


@pytest.mark.parametrize("p", [0.1, 0.2, 0.3])
def test_noise_replaces_exactly_floor_p_n_training_items_and_never_the_held_out_ones(p):
    rng = np.random.default_rng(0)
    sequences = [rng.choice(np.arange(1, 101), size=rng.integers(3, 40), replace=False) for _ in range(50)]
    noisy = noisy_sequences(sequences, p, 100, seed=3)
    for s, t in zip(sequences, noisy):
        n = len(s) - 2
        assert len(t) == len(s)
        assert np.array_equal(t[-2:], s[-2:])  # valid and test items untouched
        changed = t[:n] != s[:n]
        assert changed.sum() == int(np.floor(p * n + 1e-9))
        assert not np.isin(t[:n][changed], s).any()  # noise items: never interacted with by this user
        assert t.min() >= 1 and t.max() <= 100


def test_noise_is_seeded_per_user():
    rng = np.random.default_rng(1)
    sequences = [rng.choice(np.arange(1, 51), size=20, replace=False) for _ in range(5)]
    a, b = noisy_sequences(sequences, 0.3, 50, seed=7), noisy_sequences(sequences, 0.3, 50, seed=7)
    c = noisy_sequences(sequences, 0.3, 50, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    # a user's noise depends on its own index only (a SuperNode holding some users corrupts them identically)
    alone = noisy_history(sequences[3], 0.3, 50, np.random.default_rng((7, 3, 0x5E0155)))
    assert np.array_equal(alone, a[3])


def test_noise_config_rejects_impossible_shares():
    with pytest.raises(ConfigError, match="federated.noise.p=1.5"):
        NoiseConfig(p=1.5)
    with pytest.raises(ConfigError, match="federated.noise.p=-0.1"):
        NoiseConfig(p=-0.1)
