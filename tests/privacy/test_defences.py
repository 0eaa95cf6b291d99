"""Client-side transforms (local DP noise, pseudo rows), the central-DP strategy wrapper and the accountant."""

import pytest
import torch

from ffmrec.errors import ConfigError, FFMRecError
from ffmrec.federated.config import FederatedConfig
from ffmrec.federated.strategies import FedAvg, build_strategy
from ffmrec.federated.strategies.central_dp import CentralDP
from ffmrec.federated.transforms import ClipNorm, build_transform
from ffmrec.federated.transforms.noise import Compose, GaussianNoise
from ffmrec.federated.transforms.pseudo_rows import PseudoRows
from ffmrec.privacy.accounting import epsilon_central, epsilon_local, max_participations, run_epsilon
from ffmrec.tasks.base import client_generator


def _gens(ids, rnd=1):
    return [client_generator(0, rnd, c, "transform") for c in ids]


def test_gaussian_noise_is_each_clients_own_whatever_the_chunk():
    stacked = {"a": torch.zeros(4, 3, 2), "b": torch.ones(4, 5)}
    together = GaussianNoise(0.5)(stacked, _gens([0, 1, 2, 3]))
    alone = [GaussianNoise(0.5)({k: v[i:i + 1] for k, v in stacked.items()}, _gens([i])) for i in range(4)]
    for k in stacked:
        assert torch.equal(together[k], torch.cat([a[k] for a in alone]))
    assert not torch.equal(together["a"][0], together["a"][1])  # clients draw different noise
    assert torch.equal(stacked["a"], torch.zeros(4, 3, 2))  # the input is not modified
    big = GaussianNoise(0.5)({"x": torch.zeros(1, 20000)}, _gens([7]))["x"]
    assert float(big.std()) == pytest.approx(0.5, rel=0.05)


def test_local_dp_transform_clips_then_adds_noise_scaled_to_the_bound():
    cfg = FederatedConfig(client_clip_norm=2.0, client_noise_multiplier=0.25)
    t = build_transform(cfg)
    assert isinstance(t, Compose) and isinstance(t.transforms[0], ClipNorm)
    assert t.transforms[1].std == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="client_clip_norm"):
        FederatedConfig(client_noise_multiplier=1.0)
    assert build_transform(FederatedConfig()) is None


def test_pseudo_rows_fill_untouched_rows_and_keep_the_touched_ones():
    table = torch.zeros(2, 10, 4)
    table[0, [1, 2]] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    table[1, [3]] = 2.0
    dense = {"emb": table, "bias": torch.zeros(2, 4)}
    out = PseudoRows(1.0)(dense, _gens([0, 1]))
    assert torch.equal(out["emb"][0, [1, 2]], table[0, [1, 2]]) and torch.equal(out["emb"][1, 3], table[1, 3])
    filled = (out["emb"].norm(dim=-1) > 0).sum(1)
    assert filled.tolist() == [4, 2]  # ratio 1: as many pseudo rows as real ones
    assert torch.equal(out["bias"], dense["bias"])  # not a table: untouched
    rows = out["emb"][0][(out["emb"][0].norm(dim=-1) > 0) & (table[0].norm(dim=-1) == 0)]
    assert torch.allclose(rows.norm(dim=-1), torch.ones(2))  # pseudo rows look like the real ones (norm 1, spread 0)
    everything = PseudoRows(None)(dense, _gens([0, 1]))
    assert bool((everything["emb"].norm(dim=-1) > 0).all())


def test_central_dp_without_noise_is_the_uniform_mean_of_clipped_updates():
    deltas = {"w": torch.tensor([[3.0, 4.0], [0.3, 0.4]])}  # norms 5 and 0.5
    dp = CentralDP(FedAvg(1.0), clip_norm=1.0, noise_multiplier=0.0, seed=1)
    dp.configure_round(1, None)
    agg = dp.aggregate(deltas, torch.tensor([10.0, 1.0]))
    assert torch.allclose(agg["w"], torch.tensor([(0.6 + 0.3) / 2, (0.8 + 0.4) / 2]))


def test_central_dp_noise_has_the_calibrated_scale_and_resumes_identically():
    deltas = {"w": torch.zeros(4, 50000)}
    dp = CentralDP(FedAvg(1.0), clip_norm=2.0, noise_multiplier=1.5, seed=3)
    dp.configure_round(5, None)
    first = dp.aggregate(deltas, torch.ones(4))["w"]
    assert float(first.std()) == pytest.approx(1.5 * 2.0 / 4, rel=0.03)  # std of the sum's noise / clients
    again = CentralDP(FedAvg(1.0), clip_norm=2.0, noise_multiplier=1.5)
    again.load_state_dict(dp.state_dict())
    again.configure_round(5, None)
    assert torch.equal(again.aggregate(deltas, torch.ones(4))["w"], first)
    again.configure_round(6, None)
    assert not torch.equal(again.aggregate(deltas, torch.ones(4))["w"], first)


def test_build_strategy_wraps_any_strategy_with_central_dp():
    s = build_strategy(FederatedConfig(strategy="fedadam", central_noise_multiplier=1.0, central_clip_norm=0.5))
    assert isinstance(s, CentralDP) and type(s.inner).__name__ == "FedAdam" and not s.linear


def test_epsilon_falls_with_noise_and_sampling_and_grows_with_rounds():
    e1 = epsilon_central(1.0, 100, 1000, 100)
    assert epsilon_central(2.0, 100, 1000, 100) < e1 < epsilon_central(1.0, 100, 1000, 400)
    assert epsilon_central(1.0, 10, 1000, 100) < e1
    assert epsilon_central(1.0, 100, 1000, 100, sampling="poisson") < e1  # add/remove vs replace-one
    # a single Gaussian release of an update clipped to C, noise std 4 C: two histories move it by up to 2 C, so it is
    # the Gaussian mechanism of noise multiplier 2 (std over sensitivity); the RDP bound is within 20% of the exact
    # analytic epsilon
    from dp_accounting import get_epsilon_gaussian

    assert epsilon_local(4.0, 1) == pytest.approx(get_epsilon_gaussian(2.0, 1e-5), rel=0.2)
    # every client sampled every round (no amplification): replace-one central DP is that same mechanism per round
    assert epsilon_central(4.0, 10, 10, 1) == pytest.approx(epsilon_local(4.0, 1), rel=1e-6)
    assert epsilon_local(4.0, 10) > epsilon_local(4.0, 1) and epsilon_local(4.0, 0) == 0.0


def test_run_epsilon_reads_the_config_and_counts_participations():
    cfg = FederatedConfig(rounds=20, clients_per_round=10, client_clip_norm=1.0, client_noise_multiplier=2.0,
                          central_noise_multiplier=1.0)
    eps = run_epsilon(cfg, 50, seed=0)
    k = max_participations(50, 10, 20, 0)
    assert 4 <= k <= 20 and eps["epsilon_local"] == pytest.approx(epsilon_local(2.0, k))
    assert eps["epsilon_central"] == pytest.approx(epsilon_central(1.0, 10, 50, 20)) and eps["delta"] == 1e-5
    assert run_epsilon(FederatedConfig(), 50, 0) == {}


def test_local_dp_noise_comes_from_the_devices_secret_not_the_run_seed():
    """Two cohorts of the same task and seed send different noisy updates (the noise is not the run seed's, which the
    server knows), and a cohort restored from a device checkpoint sends exactly the same ones (exact resume)."""
    from ffmrec.federated.client import ClientConfig
    from ffmrec.federated.engines.cohort import Cohort
    from ffmrec.tasks.linear import LinearConfig, LinearTask

    def sent(cohort):
        shared = cohort.task.initial_shared()
        records, _, _ = cohort.train(1, [0, 1, 2], shared, ClientConfig(lr=0.1), want_records=True)
        return torch.stack([r.tensors["weight"] for r in records])

    transform = build_transform(FederatedConfig(client_clip_norm=1.0, client_noise_multiplier=1.0))
    task = LinearTask(LinearConfig(num_users=3))
    first, second = Cohort(task, transform=transform), Cohort(task, transform=transform)
    assert first.store.secret != second.store.secret
    assert not torch.equal(sent(first), sent(second))
    restored = Cohort(task, transform=transform)
    restored.store.load_state_dict(first.store.state_dict())
    assert torch.equal(sent(restored), sent(first))


def test_noise_seed_makes_the_local_dp_noise_and_central_dp_noise_reproducible():
    """``federated.noise_seed`` (experiments only) seeds the devices' secret: two cohorts send identical noisy updates,
    a different seed different ones; the central DP strategy takes the same seed."""
    from ffmrec.federated.client import ClientConfig
    from ffmrec.federated.engines.cohort import Cohort
    from ffmrec.tasks.linear import LinearConfig, LinearTask

    def sent(noise_seed):
        transform = build_transform(FederatedConfig(client_clip_norm=1.0, client_noise_multiplier=1.0,
                                                    noise_seed=noise_seed))
        cohort = Cohort(LinearTask(LinearConfig(num_users=3)), transform=transform)
        assert cohort.store.secret == noise_seed
        records, _, _ = cohort.train(1, [0, 1, 2], cohort.task.initial_shared(), ClientConfig(lr=0.1),
                                     want_records=True)
        return torch.stack([r.tensors["weight"] for r in records])

    assert torch.equal(sent(7), sent(7))
    assert not torch.equal(sent(7), sent(8))
    cdp = build_strategy(FederatedConfig(strategy="fedavg", central_noise_multiplier=1.0, noise_seed=7))
    assert cdp.seed == 7


class _UnequalLinear:
    """Three linear-regression clients of weights 3, 8 and 5 (so the weighted and the plain mean differ)."""

    @staticmethod
    def task(dim=10, out=3):
        from ffmrec.tasks.linear import LinearConfig, LinearTask

        class Task(LinearTask):
            def weight(self, client: int) -> int:
                return (3, 8, 5)[client]

            @property
            def max_weight(self) -> int:
                return 8

        return Task(LinearConfig(num_users=3, dim=dim, out=out))


def _fast_round(task, fed, want_records=False):
    """Round 1 of clients 0, 1, 2 on the fast simulator through the driver's check and aggregation: the new model,
    and the round's result."""
    from ffmrec.federated.client import ClientConfig
    from ffmrec.federated.engines.fast import FastSimulator
    from ffmrec.federated.server import aggregate, check_round

    shared = {"weight": 0.1 * torch.ones_like(task.initial_shared()["weight"])}
    engine = FastSimulator(task, chunk_size=2, transform=build_transform(fed))
    strategy = build_strategy(fed)
    client = strategy.configure_round(1, ClientConfig(lr=0.1))
    result = check_round(engine.train_round(1, [0, 1, 2], shared, client, want_records), task.shared_specs(), 8)
    delta, _, _ = aggregate(result, strategy)
    return {k: strategy.apply(shared, delta)[k] - shared[k] for k in shared}, result


def _device_dp(clip, noise, **kw):
    return FederatedConfig(**{"strategy": "fedavg", "server_lr": 1.0, "clients_per_round": 3, "client_clip_norm": clip,
                              "central_clip_norm": None, "central_noise_multiplier": noise, **kw})


def test_central_dp_with_device_clipping_without_noise_is_the_plain_mean_of_the_clipped_updates():
    """Each device clips its own update and states weight 1; the server's step is the unweighted mean of the clipped
    updates (hand-clipped from the raw updates the same clients send without any defence), not the weighted mean."""
    task = _UnequalLinear.task()
    _, raw = _fast_round(task, FederatedConfig(strategy="fedavg", server_lr=1.0, clients_per_round=3), True)
    updates = [r.tensors["weight"].double() for r in sorted(raw.records, key=lambda r: r.client_id)]
    norms = [float(u.norm()) for u in updates]
    clip = sorted(norms)[1]  # the middle norm: one update is clipped, one is not, one is on the bound
    clipped = [u * min(1.0, clip / n) for u, n in zip(updates, norms)]
    plain_mean = (clipped[0] + clipped[1] + clipped[2]) / 3
    weighted = (3 * clipped[0] + 8 * clipped[1] + 5 * clipped[2]) / 16
    step, result = _fast_round(task, _device_dp(clip, 0.0, noise_seed=1), True)
    sent = sorted(result.records, key=lambda r: r.client_id)
    assert [r.weight for r in sent] == [1, 1, 1]  # the devices state weight 1
    assert [float(r.tensors["weight"].double().norm()) for r in sent] == pytest.approx(
        [min(n, clip) for n in norms], rel=1e-6)
    torch.testing.assert_close(step["weight"].double(), plain_mean, atol=1e-6, rtol=0)
    assert float((plain_mean - weighted).abs().max()) > 1e-3  # the weights really are ignored
    fused, _ = _fast_round(task, _device_dp(clip, 0.0, noise_seed=1), False)  # partial sums instead of records
    torch.testing.assert_close(fused["weight"], step["weight"], atol=1e-7, rtol=0)


def test_central_dp_with_device_clipping_adds_noise_of_std_z_c_over_the_clients():
    """The step minus the plain mean of the clipped updates is the noise on the sum over 3 clients: N(0, (z C / 3)^2)
    per coordinate (10,000 coordinates, a fixed noise seed), the same draw again with the same seed."""
    task = _UnequalLinear.task(dim=500, out=20)
    clean, _ = _fast_round(task, _device_dp(0.05, 0.0, noise_seed=4))
    noisy, _ = _fast_round(task, _device_dp(0.05, 2.0, noise_seed=4))
    noise = (noisy["weight"] - clean["weight"]).double()
    assert float(noise.std()) == pytest.approx(2.0 * 0.05 / 3, rel=0.03)
    assert abs(float(noise.mean())) < 4 * 2.0 * 0.05 / 3 / 100  # 4 standard errors of the mean
    again, _ = _fast_round(task, _device_dp(0.05, 2.0, noise_seed=4))
    assert torch.equal(again["weight"], noisy["weight"])


def test_central_dp_with_device_clipping_is_linear_checks_unit_weights_and_states_epsilon():
    from ffmrec.federated.aggregation import WeightedSum

    s = build_strategy(_device_dp(0.5, 1.0))
    assert isinstance(s, CentralDP) and s.clipping == "device" and s.linear and s.clip_norm == 0.5
    assert build_strategy(FederatedConfig(central_noise_multiplier=1.0)).clipping == "server"
    total = WeightedSum()
    total.add({"w": torch.ones(2)}, 3.0)  # a client stating weight 3
    with pytest.raises(FFMRecError, match="weight 1"):
        s.aggregate_sum(total)
    with pytest.raises(ConfigError, match="client_clip_norm"):
        FederatedConfig(central_clip_norm=None, central_noise_multiplier=1.0)
    cfg = _device_dp(0.5, 1.0, rounds=20, clients_per_round=10)
    assert run_epsilon(cfg, 50, seed=0)["epsilon_central"] == pytest.approx(epsilon_central(1.0, 10, 50, 20))
