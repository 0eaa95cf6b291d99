"""The tri-view InfoNCE term by hand, and the objective's fused sum against the per-client one."""

import math

import pytest
import torch

from ffmrec.errors import ConfigError
from ffmrec.tasks.lumos import LUMOSConfig, tri_view_loss


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


A = t([[1.0, 0.0], [0.0, 1.0]])  # two anchors (S = 2 view sets)
F = t([[1.0, 0.0], [0.0, 1.0]])  # futures equal to their anchors
P = t([[0.6, 0.8], [0.8, 0.6]])
C = t([[-1.0, 0.0], [0.0, -1.0]])


def test_future_only_with_counterfactual_matches_the_hand_computed_value():
    # anchor 0: positive f0 (s=1), negatives c0 (s=-1), f1 (s=0), c1 (s=0); anchor 1 is symmetric
    expected = -math.log(math.e / (math.e + math.exp(-1) + 1 + 1))
    got = tri_view_loss(A, F, None, C, temperature=1.0, future_weight=1.0)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_two_positives_are_kept_apart_and_weighted():
    tau, wf, wp = 0.5, 0.3, 0.7
    e = lambda s: math.exp(s / tau)  # noqa: E731
    # anchor 0 = (1, 0): s(f0)=1, s(p0)=0.6, s(c0)=-1, s(f1)=0, s(p1)=0.8, s(c1)=0
    neg0 = e(-1) + e(0) + e(0.8) + e(0)
    lf0 = -math.log(e(1) / (e(1) + neg0))
    lp0 = -math.log(e(0.6) / (e(0.6) + neg0))
    # anchor 1 = (0, 1): s(f1)=1, s(p1)=0.6, s(c1)=-1, s(f0)=0, s(p0)=0.8, s(c0)=0
    lf1, lp1 = lf0, lp0  # the same numbers by symmetry
    expected = wf * (lf0 + lf1) / 2 + wp * (lp0 + lp1) / 2
    got = tri_view_loss(A, F, P, C, tau, future_weight=wf, paraphrase_weight=wp)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_counterfactual_weight_scales_its_term_in_the_denominator():
    beta = 3.0
    expected = -math.log(math.e / (math.e + beta * math.exp(-1) + 1 + beta * 1))
    got = tri_view_loss(A, F, None, C, temperature=1.0, counterfactual_weight=beta)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_without_counterfactual_the_other_sets_are_the_only_negatives():
    expected = -math.log(math.e / (math.e + 1))  # anchor 0: f0 (s=1) against f1 (s=0)
    assert float(tri_view_loss(A, F, None, None, 1.0)) == pytest.approx(expected, rel=1e-12)


def test_unreduced_gives_one_value_per_pool_and_their_mean_is_the_reduced_loss():
    z = torch.randn(3, 4, 2, 5, dtype=torch.float64)  # 3 pools, 4 kinds, S=2, d=5
    per_pool = tri_view_loss(z[:, 0], z[:, 1], z[:, 2], z[:, 3], 0.7, 0.2, 0.4, reduce=False)
    assert per_pool.shape == (3,)
    for b in range(3):
        one = tri_view_loss(z[b, 0], z[b, 1], z[b, 2], z[b, 3], 0.7, 0.2, 0.4)
        assert float(per_pool[b]) == pytest.approx(float(one), rel=1e-12)
    assert float(per_pool.mean()) == pytest.approx(float(tri_view_loss(z[:, 0], z[:, 1], z[:, 2], z[:, 3], 0.7, 0.2,
                                                                          0.4)), rel=1e-12)


def test_config_rejects_settings_without_positives_or_negatives():
    with pytest.raises(ConfigError, match="no positive"):
        LUMOSConfig(future=False, paraphrase=False)
    with pytest.raises(ConfigError, match="task.sets=1"):
        LUMOSConfig(sets=1, counterfactual=False)
    with pytest.raises(ConfigError, match="task.backend='gpt'"):
        LUMOSConfig(backend="gpt")
