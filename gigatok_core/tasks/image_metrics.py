"""Per-image reconstruction metrics: PSNR, SSIM and LPIPS, two ways.

*Official* reproduces the GigaTok reconstruction script (docs/evaluation.md#reconstruction), quirks included:
PSNR of the uint8 reconstruction (/255) against the *unquantised* input mapped to [0, 1], and SSIM
with ``data_range=2.0`` on [0, 1] images (which inflates it). LPIPS-VGG is computed on the
unclamped float reconstruction.

*Standard* is what a reader expects: PSNR and SSIM (Wang et al. 2004: Gaussian window, sigma 1.5)
between the two uint8 images with a data range of 255.

PSNR and SSIM use scikit-image, the library the official script calls, so the numbers match.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gigatok_core.errors import GigatokError


def official_psnr_ssim(recon_uint8: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """One image. ``recon_uint8``: (H, W, 3) uint8; ``x``: (H, W, 3) float input in [-1, 1]."""
    restored = recon_uint8.astype(np.float64) / 255.0
    gt = ((x.astype(np.float32) + 1.0) / 2.0).astype(np.float32)
    with np.errstate(divide="ignore"):  # identical images: PSNR is +inf
        psnr = peak_signal_noise_ratio(
            restored, gt, data_range=1.0
        )  # what skimage infers from restored's float dtype
    ssim = structural_similarity(restored, gt, channel_axis=-1, data_range=2.0)
    return float(psnr), float(ssim)


def standard_psnr_ssim(recon_uint8: np.ndarray, orig_uint8: np.ndarray) -> tuple[float, float]:
    """One image, both (H, W, 3) uint8: PSNR (range 255) and Gaussian-window SSIM."""
    with np.errstate(divide="ignore"):  # identical images: PSNR is +inf
        psnr = peak_signal_noise_ratio(orig_uint8, recon_uint8, data_range=255)
    ssim = structural_similarity(
        orig_uint8,
        recon_uint8,
        channel_axis=-1,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    return float(psnr), float(ssim)


# ---------------------------------------------------------------------------------------------
# LPIPS (Zhang et al. 2018, https://arxiv.org/abs/1801.03924), VGG variant, v0.1 linear heads
# ---------------------------------------------------------------------------------------------
# torchvision vgg16.features indices -> the lpips package's slices (relu1_2 ... relu5_3).
_SLICES = ((1, range(0, 4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)), (5, range(23, 30)))


def _vgg_to_lpips_keys(vgg_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for slice_idx, indices in _SLICES:
        for i in indices:
            for kind in ("weight", "bias"):
                key = f"features.{i}.{kind}"
                if key in vgg_sd:
                    out[f"slice{slice_idx}.{i}.{kind}"] = vgg_sd[key]
    return out


def build_lpips(
    vgg_weights: str | Path | None = None, device: torch.device | str = "cpu", *, random: bool = False
) -> torch.nn.Module:
    """LPIPS-VGG in eval mode with frozen weights.

    The linear heads ship inside the ``lpips`` wheel; the VGG16 backbone is torchvision's
    ``vgg16-397923af.pth`` from our cache (or ``vgg_weights``), never fetched by torchvision.
    ``random=True`` keeps a seeded random VGG16 (smoke runs of the ``tiny`` preset, offline).
    """
    import lpips

    from gigatok_core.checkpoints.files import read_checkpoint

    if random:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.filterwarnings("ignore", category=UserWarning)
            torch.manual_seed(0)
            model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        return model.eval().requires_grad_(False).to(device)
    if vgg_weights is None:
        from gigatok_core.hub import fetch_weights

        vgg_weights = fetch_weights("vgg16-397923af.pth", or_option="--vgg-weights FILE")
    ckpt = read_checkpoint(vgg_weights)
    vgg_sd = next((v for k in ("state_dict", "model") if isinstance(v := ckpt.get(k), dict)), ckpt)
    with (
        warnings.catch_warnings()
    ):  # lpips builds tv.vgg16(pretrained=False): torchvision's 0.13 deprecations
        warnings.filterwarnings(
            "ignore", message=r".*(pretrained|weight enum).*deprecated", category=UserWarning
        )
        model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    mapped = _vgg_to_lpips_keys(vgg_sd)
    expected = model.net.state_dict()
    if set(mapped) != set(expected) or any(mapped[k].shape != expected[k].shape for k in expected):
        raise GigatokError(
            f"{vgg_weights} is not a torchvision VGG16 checkpoint",
            hint="pass the vgg16-397923af.pth file (torchvision's VGG16 weights)",
        )
    model.net.load_state_dict(mapped)
    return model.eval().requires_grad_(False).to(device)


@torch.inference_mode()
def lpips_distance(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image LPIPS between two (B, 3, H, W) batches in [-1, 1] -> (B,)."""
    return model(x.float(), y.float(), normalize=False).flatten()
