"""FID, sFID, Inception Score and improved precision/recall, computed as ADM's evaluator does.

Reference: ``evaluations/evaluator.py`` of https://github.com/openai/guided-diffusion (the copy
GigaTok and LlamaGen run; docs/evaluation.md#generation). Statistics are float64; matrix square roots use
``scipy.linalg.sqrtm``; precision/recall follow Kynkäänniemi et al. 2019
(https://arxiv.org/abs/1904.06991) with ADM's ``ManifoldEstimator`` semantics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy
import scipy.linalg
import torch

from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.inception import FEATURE_DIMS

SQRTM_EPS = 1e-6  # added to both covariances' diagonal when the product's root is not finite
IS_SPLIT_SIZE = 5000
PR_K = 3  # neighbourhood size of the manifold radii
PR_BLOCK = 10_000  # rows / columns per distance block


# ---------------------------------------------------------------------------------------------
# Gaussian statistics and the Fréchet distance (FID: https://arxiv.org/abs/1706.08500)
# ---------------------------------------------------------------------------------------------
@dataclass
class GaussianStats:
    """Mean (D,) and covariance (D, D) of a feature set, both float64."""

    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def from_features(cls, feats: np.ndarray) -> GaussianStats:
        """``mean`` and ``np.cov(rowvar=False)`` (N-1 normalisation) in float64."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2:
            raise ValueError(f"need (N, D) features, got shape {feats.shape}")
        if len(feats) < 2:
            raise GigatokError(
                f"statistics need at least 2 images, got {len(feats)}",
                hint="FID is only meaningful over thousands of images (50k in the paper)",
            )
        return cls(mu=feats.mean(axis=0), sigma=np.cov(feats, rowvar=False))


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm(a, disp=False)[0]``; SciPy >= 1.16 deprecated ``disp`` (same root)."""
    major, minor = (int(p) for p in scipy.__version__.split(".")[:2])
    if (major, minor) < (1, 16):
        return scipy.linalg.sqrtm(a, disp=False)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = scipy.linalg.sqrtm(a)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(first: GaussianStats, second: GaussianStats, eps: float = SQRTM_EPS) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)), ADM's ``FIDStatistics.frechet_distance``.

    ADM calls it as ``sample_stats.frechet_distance(ref_stats)``: pass the samples first to get its
    rounding (the value is symmetric up to that).

    A non-finite root is retried with ``eps * I`` added to both covariances; a complex root whose
    diagonal has an imaginary part above 1e-3 raises, otherwise its real part is used.
    """
    mu1, mu2 = np.atleast_1d(first.mu).astype(np.float64), np.atleast_1d(second.mu).astype(np.float64)
    s1, s2 = np.atleast_2d(first.sigma).astype(np.float64), np.atleast_2d(second.sigma).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise GigatokError(
            f"the two sides' statistics have different dimensions ({mu1.shape[0]} vs {mu2.shape[0]})",
            hint=f"both must come from the FID Inception ({FEATURE_DIMS['pool']} pool features, "
            f"{FEATURE_DIMS['spatial']} spatial ones)",
        )
    diff = mu1 - mu2
    covmean = _sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"fid calculation produces singular product; adding {eps} to diagonal of cov estimates",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = np.eye(s1.shape[0]) * eps
        covmean = _sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ---------------------------------------------------------------------------------------------
# Inception Score (https://arxiv.org/abs/1606.03498)
# ---------------------------------------------------------------------------------------------
def inception_score(logits: np.ndarray, split_size: int = IS_SPLIT_SIZE) -> float:
    """Mean over sequential splits of ``exp(E_x KL(p(y|x) || p(y)))``, softmax taken in float32."""
    logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    preds = torch.softmax(logits, dim=1).numpy()  # (N, 1008) float32, as TF's softmax
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i : i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------
# Improved precision / recall (ADM's ManifoldEstimator)
# ---------------------------------------------------------------------------------------------
def _sq_dists(u: torch.Tensor, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """max(|u|^2 - 2 u.v + |v|^2, 0) computed in ``dtype``, returned as float32."""
    u, v = u.to(dtype), v.to(dtype)
    nu = (u * u).sum(1, keepdim=True)  # (N, 1)
    nv = (v * v).sum(1, keepdim=True).t()  # (1, M)
    return torch.clamp(nu - 2 * (u @ v.t()) + nv, min=0).float()


def pairwise_sq_distances(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Squared distances (N, M): float16 first, float32 when the half result is not finite (ADM).

    Half matmuls need CUDA on older PyTorch; where they fail we use float32 directly.
    """
    try:
        d = _sq_dists(u, v, torch.float16)
        if torch.isfinite(d).all():
            return d
    except RuntimeError:
        pass
    return _sq_dists(u, v, torch.float32)


def manifold_radii(feats: torch.Tensor, k: int = PR_K, block: int = PR_BLOCK) -> torch.Tensor:
    """(N,) float32: squared distance of each point to its k-th neighbour in its own set.

    Index k of the sorted row (index 0 is the point itself), rows computed ``block`` at a time.
    """
    n = len(feats)
    if n <= k:
        raise ValueError(f"precision/recall needs more than {k} points per set, got {n}")
    radii = torch.empty(n, dtype=torch.float32, device=feats.device)
    for b in range(0, n, block):
        rows = feats[b : b + block]
        dist = torch.cat(
            [pairwise_sq_distances(rows, feats[c : c + block]) for c in range(0, n, block)], dim=1
        )
        radii[b : b + block] = torch.kthvalue(dist, k + 1, dim=1).values
    return radii


def precision_recall(
    ref: np.ndarray | torch.Tensor,
    samples: np.ndarray | torch.Tensor,
    k: int = PR_K,
    block: int = PR_BLOCK,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """(precision, recall): the fraction of samples inside some reference ball, and vice versa.

    A point is inside a ball when its squared distance to the centre is ``<=`` the centre's radius.
    """
    f_ref = torch.as_tensor(np.asarray(ref, dtype=np.float32), device=device)
    f_smp = torch.as_tensor(np.asarray(samples, dtype=np.float32), device=device)
    r_ref, r_smp = manifold_radii(f_ref, k, block), manifold_radii(f_smp, k, block)
    ref_in = torch.zeros(len(f_ref), dtype=torch.bool, device=device)  # ref inside a sample ball
    smp_in = torch.zeros(len(f_smp), dtype=torch.bool, device=device)  # sample inside a ref ball
    for b in range(0, len(f_ref), block):
        for c in range(0, len(f_smp), block):
            dist = pairwise_sq_distances(f_ref[b : b + block], f_smp[c : c + block])  # (n_ref, n_smp)
            ref_in[b : b + block] |= (dist <= r_smp[None, c : c + block]).any(dim=1)
            smp_in[c : c + block] |= (dist <= r_ref[b : b + block, None]).any(dim=0)
    return float(smp_in.double().mean()), float(ref_in.double().mean())
