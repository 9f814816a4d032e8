from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gigatok_core.errors import GigatokError
from gigatok_core.tasks.image_metrics import (
    build_lpips,
    lpips_distance,
    official_psnr_ssim,
    standard_psnr_ssim,
)


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    orig = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    noisy = np.clip(orig.astype(int) + rng.integers(-8, 9, orig.shape), 0, 255).astype(np.uint8)
    return orig, noisy


def test_official_psnr_uses_float_input_and_unit_range() -> None:
    orig, recon = _pair()
    x = orig.astype(np.float32) / 127.5 - 1.0
    psnr, ssim = official_psnr_ssim(recon, x)
    gt = (x + 1) / 2
    mse = np.mean((recon / 255.0 - gt) ** 2)
    assert psnr == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-6)
    # the official SSIM's data_range=2.0 inflates SSIM relative to the standard definition
    _, ssim_std = standard_psnr_ssim(recon, orig)
    assert ssim > ssim_std


def test_standard_psnr_matches_closed_form() -> None:
    orig, recon = _pair(1)
    mse = np.mean((orig.astype(np.float64) - recon) ** 2)
    psnr, ssim = standard_psnr_ssim(recon, orig)
    assert psnr == pytest.approx(10 * np.log10(255.0**2 / mse), rel=1e-9)
    assert 0 < ssim < 1
    assert standard_psnr_ssim(recon, recon) == (float("inf"), pytest.approx(1.0))


@pytest.fixture(scope="module")
def random_vgg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchvision.models import vgg16

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(vgg16(weights=None).state_dict(), path)
    return path


def test_lpips_loads_vgg_from_file_and_measures(random_vgg: Path) -> None:
    model = build_lpips(random_vgg)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = x + 0.3 * torch.randn_like(x)
    d_same = lpips_distance(model, x, x)
    d_diff = lpips_distance(model, x, y)
    assert d_same.shape == (2,) and torch.allclose(d_same, torch.zeros(2), atol=1e-6)
    assert (d_diff > 1e-4).all()
    assert model.net.slice1[0].weight.data_ptr() != 0 and not model.net.slice1[0].weight.requires_grad


def test_lpips_refuses_a_non_vgg_file(tmp_path: Path) -> None:
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(GigatokError, match="not a torchvision VGG16"):
        build_lpips(tmp_path / "bad.pth")
