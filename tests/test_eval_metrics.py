"""FID/sFID, Inception Score and precision/recall against closed forms and hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gigatok_core.evaluation.metrics import (
    GaussianStats,
    frechet_distance,
    inception_score,
    manifold_radii,
    precision_recall,
)


# ---------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------
def test_frechet_diagonal_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # 1 + 6.25 + 4 + 1 + 0
    got = frechet_distance(GaussianStats(mu1, np.diag(v1)), GaussianStats(mu2, np.diag(v2)))
    assert got == pytest.approx(expected, rel=1e-10)
    assert expected == pytest.approx(12.25)


def test_frechet_identical_is_zero_and_symmetric() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(150, 5)) * 1.5 + 0.3
    sa, sb = GaussianStats.from_features(a), GaussianStats.from_features(b)
    assert frechet_distance(sa, sa) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(sa, sb) == pytest.approx(frechet_distance(sb, sa), rel=1e-8)
    assert frechet_distance(sa, sb) > 0.1


def test_statistics_are_float64_mean_and_unbiased_cov() -> None:
    feats = np.array([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0]], dtype=np.float32)
    st = GaussianStats.from_features(feats)
    assert st.mu.dtype == st.sigma.dtype == np.float64
    np.testing.assert_allclose(st.mu, [3.0, 2.0])
    np.testing.assert_allclose(st.sigma, [[4.0, 2.0], [2.0, 4.0]])  # N-1 normalisation


def test_singular_covariances_use_eps_retry() -> None:
    # rank-deficient covariances: the root of the product is fine or retried, never NaN
    s = np.zeros((3, 3))
    s[0, 0] = 1.0
    got = frechet_distance(GaussianStats(np.zeros(3), s), GaussianStats(np.ones(3), s))
    assert np.isfinite(got) and got == pytest.approx(3.0, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Inception Score
# ---------------------------------------------------------------------------------------------
def test_inception_score_hand_checked() -> None:
    big = 50.0  # softmax of (big, 0) is one-hot to float precision
    confident_distinct = np.array([[big, 0.0], [0.0, big]])
    assert inception_score(confident_distinct) == pytest.approx(2.0, rel=1e-6)  # exp(log 2)
    uniform = np.zeros((4, 2))
    assert inception_score(uniform) == pytest.approx(1.0)
    # p = (0.75, 0.25) and (0.25, 0.75): marginal (0.5, 0.5), KL = 0.75 log 1.5 + 0.25 log 0.5
    logits = np.log(np.array([[0.75, 0.25], [0.25, 0.75]]))
    expected = np.exp(0.75 * np.log(1.5) + 0.25 * np.log(0.5))
    assert inception_score(logits) == pytest.approx(expected, rel=1e-6)


def test_inception_score_sequential_splits() -> None:
    big = 50.0
    logits = np.array([[big, 0.0], [big, 0.0], [0.0, big], [0.0, big]])
    # split 2: each half is one class only -> IS 1; whole set -> IS 2
    assert inception_score(logits, split_size=2) == pytest.approx(1.0, rel=1e-6)
    assert inception_score(logits, split_size=4) == pytest.approx(2.0, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Precision / recall
# ---------------------------------------------------------------------------------------------
def test_radii_are_squared_third_neighbour() -> None:
    pts = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    r = manifold_radii(pts, k=3)
    # point 0: distances 0,1,3,6,10 -> 3rd neighbour at 6 -> 36; point 10: 0,4,7,9 -> 9 -> 81
    np.testing.assert_allclose(r.numpy(), [36.0, 25.0, 9.0, 25.0, 81.0])


def test_precision_recall_hand_checked() -> None:
    ref = np.array([[0.0], [1.0], [2.0], [3.0]])  # radii: 9, 4, 4, 9
    samples = np.array([[0.5], [1.5], [100.0], [101.0], [102.0], [103.0]])
    # samples 0.5 and 1.5 lie inside reference balls; 100..103 do not -> precision 2/6
    # sample radii: 0.5 -> 3rd nbr 101 (100.5^2), 1.5 -> 102 (100.5^2) cover all ref points -> recall 1
    p, r = precision_recall(ref, samples)
    assert p == pytest.approx(2 / 6)
    assert r == pytest.approx(1.0)
    p2, r2 = precision_recall(samples[2:], samples[2:])
    assert (p2, r2) == (1.0, 1.0)


def test_precision_recall_block_independent() -> None:
    rng = np.random.default_rng(3)
    ref, smp = rng.normal(size=(40, 8)), rng.normal(size=(30, 8)) + 0.7
    assert precision_recall(ref, smp, block=7) == precision_recall(ref, smp, block=10_000)


def test_boundary_point_counts_as_inside() -> None:
    ref = np.array([[0.0], [2.0], [4.0], [6.0]])  # radius of 0 is 36 (distance to 6)
    samples = np.array([[-6.0], [50.0], [51.0], [52.0]])  # -6 is exactly on the ball of 0
    p, _ = precision_recall(ref, samples)
    assert p == pytest.approx(0.25)
