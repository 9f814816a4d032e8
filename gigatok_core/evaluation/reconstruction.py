"""rFID of a tokenizer: reconstruct every image in memory, then the FID family + PSNR/SSIM/LPIPS.

The in-process version of the quantitative mode of the official ``reconstruction_ddp.py``
(spec tokenizer §9): ADM centre crop to the tokenizer's size, ``encode`` -> ``decode_codes``,
uint8 by the official rounding, the official PSNR/SSIM quirks (``gigatok_core.image_metrics``),
LPIPS-VGG on the unclamped reconstruction, codebook usage = distinct codes / codebook size, and
FID/sFID of the uint8 reconstructions against the ``rfid-imagenet-val`` reference.

Differences from the official script: LPIPS is the mean over images (the official one averages
per-batch means, which depends on the batch size); no PNG round trip is needed (the PNG files
of the official pipeline are lossless, so the pixels are the same).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.evaluate import Evaluator, compute_metrics
from gigatok_core.evaluation.features import Features, extract_features
from gigatok_core.evaluation.reference import (
    EvalStats,
    check_protocol,
    default_reference_path,
    reference_meta,
    save_statistics,
)

PROTOCOL = "rfid-imagenet-val"


@dataclass
class RFIDReport:
    metrics: dict[str, Any]  # fid (= rFID), sfid, is, precision, recall, psnr, ssim, lpips, codebook_usage, ...
    reference: str
    reference_built: bool
    samples_dir: str | None


def evaluate_reconstruction(
    tokenizer: str,
    data: str | Path,
    *,
    evaluator: Evaluator,
    checkpoint: str | Path | None = None,
    reference: str | Path | None = None,
    precision: str = "fp32",
    batch_size: int = 32,
    save_samples: str | Path | None = None,
    overwrite: bool = False,
    lpips: bool = True,
    vgg_weights: str | Path | None = None,
    force: bool = False,
    with_precision_recall: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> RFIDReport:
    """Reconstruct the images under ``data`` with ``tokenizer`` and score them (see module doc).

    Without ``reference``, the statistics of the original images are computed in the same pass
    and cached (keyed by the file list), so the next run against the same folder reuses them.
    """
    from gigatok_core import dist
    from gigatok_core.images import list_images
    from gigatok_core.tokenizer import load_tokenizer

    if batch_size < 1:
        raise GigatokError(f"--batch-size must be at least 1, got {batch_size}")
    if reference is not None:
        check_protocol(reference, PROTOCOL, force=force)  # before any expensive loading
    files = list_images([data])
    # -- samples folder ------------------------------------------------------------------------
    out_dir = Path(save_samples) if save_samples is not None else None
    if out_dir is not None:
        clash = [out_dir / f"{i:06d}.png" for i in range(len(files)) if (out_dir / f"{i:06d}.png").exists()]
        if clash and not overwrite:
            raise GigatokError(f"{clash[0]} (and {len(clash) - 1} more) already exist",
                               hint="pass --overwrite, or choose another --save-samples folder")

    dev = torch.device(evaluator.device)
    model = load_tokenizer(tokenizer, checkpoint=checkpoint, device=dev, dtype=dist.resolve_precision(precision, dev))
    size = model.config.image_size

    # -- reference ------------------------------------------------------------------------------
    ref_stats: EvalStats | None = None
    if reference is not None:
        ref_path = Path(reference)
        ref_stats = evaluator.load(ref_path, need_features=with_precision_recall, label="reference")
    else:
        ref_path = default_reference_path(files, size, PROTOCOL)
        if ref_path.is_file():
            ref_stats = evaluator.load(ref_path, need_features=with_precision_recall, label="reference")
    build_ref = ref_stats is None

    lpips_model = None
    if lpips:
        from gigatok_core.image_metrics import build_lpips

        lpips_model = build_lpips(vgg_weights, device=dev)

    # -- one pass over the images ---------------------------------------------------------------
    recon_feats: list[Features] = []
    orig_feats: list[Features] = []
    psnr: list[float] = []
    ssim: list[float] = []
    lp: list[float] = []
    used = np.zeros(model.config.codebook_size, dtype=bool)
    for start in range(0, len(files), batch_size):
        batch_files = files[start : start + batch_size]
        pixels = np.stack([_load(p, size) for p in batch_files])  # (B, S, S, 3) uint8
        out = _reconstruct_batch(model, pixels, dev, lpips_model)
        used[out["codes"].reshape(-1)] = True
        psnr += out["psnr"]
        ssim += out["ssim"]
        lp += out["lpips"]
        recon_feats.append(extract_features(evaluator.model, [out["recon_u8"]], device=dev))
        if build_ref:
            orig_feats.append(extract_features(evaluator.model, [pixels], device=dev))
        if out_dir is not None:
            from gigatok_core.images import save_png

            for j, img in enumerate(out["recon_u8"]):
                save_png(out_dir / f"{start + j:06d}.png", img)
        if on_progress:
            on_progress(min(start + batch_size, len(files)), len(files))

    if build_ref:
        ref_stats = EvalStats.from_features(Features.concat(orig_feats), protocol=PROTOCOL,
                                            meta=reference_meta(files, size, str(data)))
        save_statistics(ref_path, ref_stats, overwrite=True)
    assert ref_stats is not None
    samples = EvalStats.from_features(Features.concat(recon_feats))
    metrics = compute_metrics(samples, ref_stats, with_precision_recall=with_precision_recall, device=dev)
    metrics |= {
        "psnr": float(np.mean(psnr)),
        "ssim": float(np.mean(ssim)),
        "lpips": float(np.mean(lp)) if lp else None,
        "codebook_usage": float(used.sum() / used.size),
        "num_images": len(files),
        "protocol": PROTOCOL,
    }
    return RFIDReport(metrics=metrics, reference=str(ref_path), reference_built=build_ref,
                      samples_dir=str(out_dir) if out_dir else None)


def _load(path: Path, size: int) -> np.ndarray:
    from gigatok_core.images import load_image

    return load_image(path, size)


@torch.inference_mode()
def _reconstruct_batch(model: torch.nn.Module, pixels: np.ndarray, dev: torch.device,
                       lpips_model: torch.nn.Module | None) -> dict[str, Any]:
    from gigatok_core.image_metrics import official_psnr_ssim
    from gigatok_core.images import to_tensor, to_uint8

    x = to_tensor(pixels).to(dev)  # (B, 3, S, S) in [-1, 1]
    codes = model.encode(x)  # (B, N)
    recon = model.decode_codes(codes).float()  # (B, 3, S, S), unclamped
    recon_u8 = to_uint8(recon)  # (B, S, S, 3)
    x_hwc = x.permute(0, 2, 3, 1).cpu().numpy()
    pairs = [official_psnr_ssim(recon_u8[j], x_hwc[j]) for j in range(len(pixels))]
    lp: list[float] = []
    if lpips_model is not None:
        from gigatok_core.image_metrics import lpips_distance

        lp = lpips_distance(lpips_model, x, recon).cpu().tolist()
    return {"codes": codes.cpu().numpy(), "recon_u8": recon_u8, "psnr": [p for p, _ in pairs],
            "ssim": [s for _, s in pairs], "lpips": lp}
