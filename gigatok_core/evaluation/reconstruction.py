"""rFID of a tokenizer: reconstruct every image in memory, then the FID family + PSNR/SSIM/LPIPS.

The in-process version of the quantitative mode of the official ``reconstruction_ddp.py``
(docs/evaluation.md#reconstruction): ADM centre crop to the tokenizer's size, ``encode`` -> ``decode_codes``,
uint8 by the official rounding, the official PSNR/SSIM quirks (``gigatok_core.tasks.image_metrics``),
LPIPS-VGG on the unclamped reconstruction, codebook usage = distinct codes / codebook size, and
FID/sFID of the uint8 reconstructions against the ``rfid-imagenet-val`` reference.

Under torchrun each rank reconstructs a strided shard of the images in memory and computes their
Inception features; the per-image features and metrics and each rank's used-code mask are
gathered, re-ordered by image index, and rank 0 computes the statistics. The numbers do not
depend on the world size (features are per image; means are over images).

Differences from the official script: LPIPS is the mean over images (the official one averages
per-batch means, which depends on the batch size); no PNG round trip is needed (the PNG files
of the official pipeline are lossless, so the pixels are the same).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gigatok_core import dist
from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.evaluate import Evaluator, compute_metrics
from gigatok_core.evaluation.features import Features, extract_features
from gigatok_core.evaluation.inception import FEATURE_DIMS
from gigatok_core.evaluation.reference import (
    EvalStats,
    check_protocol,
    default_reference_path,
    reference_meta,
    save_statistics,
)
from gigatok_core.utils.progress import ProgressFn

PROTOCOL = "rfid-imagenet-val"


@dataclass
class RFIDReport:
    metrics: dict[
        str, Any
    ]  # fid (= rFID), sfid, is, precision, recall, psnr, ssim, lpips, codebook_usage, ...
    reference: str
    reference_built: bool
    samples_dir: str | None


@dataclass
class ShardResult:
    """What one rank computed: per-image rows (in ``indices`` order) and the codes it saw."""

    indices: np.ndarray  # (n,) image indices into the sorted file list
    recon: Features  # Inception features of the uint8 reconstructions
    orig: Features | None  # ... of the originals, when the reference is being built
    psnr: np.ndarray  # (n,)
    ssim: np.ndarray  # (n,)
    lpips: np.ndarray | None  # (n,)
    used: np.ndarray  # (codebook_size,) bool
    skipped: list[tuple[int, str]] = field(default_factory=list)  # unreadable: (index, why)


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
    ctx: dist.DistContext | None = None,
    on_progress: ProgressFn | None = None,
) -> RFIDReport | None:
    """Reconstruct the images under ``data`` with ``tokenizer`` and score them (see module doc).

    Without ``reference``, the statistics of the original images are computed in the same pass
    and cached (keyed by the file list), so the next run against the same folder reuses them.
    Returns the report on the main rank and ``None`` on the others. ``ctx``: the ranks (default:
    this process's :func:`gigatok_core.dist.get_context`); a :class:`gigatok_core.dist.HandSplit`
    splits a run by hand, its main rank's ``gather`` returning every rank's :class:`ShardResult`.
    ``on_progress(done, total, stage="reconstruct")`` counts this rank's images.
    """
    from gigatok_core.data.images import list_images
    from gigatok_core.tokenizer import load_tokenizer

    if batch_size < 1:
        raise GigatokError(f"--batch-size must be at least 1, got {batch_size}")
    if reference is not None:
        check_protocol(reference, PROTOCOL, force=force)  # before any expensive loading
    files = list_images([data])
    dev = torch.device(evaluator.device)
    dtype = dist.resolve_precision(precision, dev)
    ctx = ctx or dist.get_context(dev)
    mine = ctx.shard(list(range(len(files))))
    out_dir = Path(save_samples) if save_samples is not None else None
    if out_dir is not None:
        _claim_samples_folder(out_dir, range(len(files)), mine, ctx, overwrite=overwrite)
    ctx.barrier()  # every rank has checked every file before any writes
    model = load_tokenizer(tokenizer, checkpoint=checkpoint, device=dev, dtype=dtype)
    size = model.config.image_size

    # -- reference (read on the main rank only; every rank must know whether to build it) ------
    ref_path = (
        Path(reference)
        if reference is not None
        else default_reference_path(files, size, PROTOCOL, weights=evaluator.weights_id)
    )
    # rank 0 decides: a cache that differs between nodes must not split the ranks
    build_ref = ctx.broadcast_object(reference is None and not ref_path.is_file())

    lpips_model = None
    if lpips:
        from gigatok_core.tasks.image_metrics import build_lpips

        lpips_model = build_lpips(vgg_weights, device=dev)

    # -- this rank's images, then all of them on the main rank ----------------------------------
    part = _reconstruct_shard(
        model,
        [files[i] for i in mine],
        mine,
        evaluator=evaluator,
        lpips_model=lpips_model,
        batch_size=batch_size,
        with_orig=build_ref,
        out_dir=out_dir,
        on_progress=on_progress,
    )
    parts = ctx.gather_objects(part)  # a collective: also a barrier
    if not ctx.is_main:
        return None
    merged = _merge_all(parts, files, data)  # type: ignore[arg-type]

    # -- statistics (main rank) -----------------------------------------------------------------
    if build_ref:
        ref_stats = _build_reference(merged, ref_path, files, size, str(data), evaluator.weights_id)
    else:
        ref_stats = evaluator.load(ref_path, need_features=with_precision_recall, label="reference")
    metrics = _scores(
        merged, ref_stats, files, with_precision_recall=with_precision_recall, device=dev, ctx=ctx
    )
    if out_dir is not None:  # which source each NNNNNN.png reconstructs
        from gigatok_core.utils.fileio import write_bytes_atomic

        index = {f"{i:06d}.png": str(files[i]) for i in merged.indices.tolist()}
        write_bytes_atomic(out_dir / "samples.json", json.dumps(index, indent=1).encode())
    return RFIDReport(
        metrics=metrics,
        reference=str(ref_path),
        reference_built=build_ref,
        samples_dir=str(out_dir) if out_dir else None,
    )


def _claim_samples_folder(
    out_dir: Path, every: range, mine: list[int], ctx: dist.DistContext, *, overwrite: bool
) -> None:
    """``--save-samples``: refuse a folder holding reconstructions of these indices unless
    ``overwrite``; with it, the main rank removes an earlier (maybe larger) run's ``NNNNNN.png``."""
    if not overwrite:
        check = every if ctx.concurrent else mine  # by hand: ranks run one after another
        clash = [out_dir / f"{i:06d}.png" for i in check if (out_dir / f"{i:06d}.png").exists()]
        if clash:
            raise GigatokError(
                f"{clash[0]} (and {len(clash) - 1} more) already exist",
                hint="pass --overwrite, or choose another --save-samples folder",
            )
    elif ctx.is_main and ctx.concurrent:
        for old in out_dir.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
            old.unlink(missing_ok=True)


def _merge_all(parts: list[ShardResult], files: list[Path], data: str | Path) -> ShardResult:
    """The ranks' shards in image order, checked to cover every image once (read or skipped)."""
    merged = merge_shards(parts)
    seen = np.sort(np.concatenate([merged.indices, np.asarray([i for i, _ in merged.skipped], np.int64)]))
    if not np.array_equal(seen, np.arange(len(files))):
        raise GigatokError(
            f"the ranks returned {len(seen)} of {len(files)} images",
            hint="every rank must see the same --data folder",
        )
    if not len(merged.indices):
        raise GigatokError(f"none of the {len(files)} images under {data} could be read")
    return merged


def _build_reference(
    merged: ShardResult, path: Path, files: list[Path], size: int, data: str, weights_id: str
) -> EvalStats:
    """The reference statistics of the originals (read in the same pass), cached at ``path``."""
    assert merged.orig is not None
    meta = {
        **reference_meta(files, size, data, weights_id),
        "skipped": [str(files[i]) for i, _ in merged.skipped],
    }
    stats = EvalStats.from_features(merged.orig, protocol=PROTOCOL, meta=meta)
    save_statistics(path, stats, overwrite=True)
    return stats


def _scores(
    merged: ShardResult,
    ref_stats: EvalStats,
    files: list[Path],
    *,
    with_precision_recall: bool,
    device: torch.device,
    ctx: dist.DistContext,
) -> dict[str, Any]:
    """The FID family of the reconstructions against the reference, and the per-image metrics."""
    samples = EvalStats.from_features(merged.recon)
    # IS is taken over consecutive splits of 5000: shuffle (fixed seed) so that a val folder sorted by
    # class does not give each split only 100 classes. FID, sFID and precision/recall ignore order.
    samples.logits = samples.logits[np.random.default_rng(0).permutation(len(samples.logits))]
    metrics = compute_metrics(samples, ref_stats, with_precision_recall=with_precision_recall, device=device)
    metrics |= {
        "psnr": float(np.mean(merged.psnr)),
        "ssim": float(np.mean(merged.ssim)),
        "lpips": float(np.mean(merged.lpips)) if merged.lpips is not None else None,
        "codebook_usage": float(merged.used.sum() / merged.used.size),
        "num_images": len(merged.indices),
        "skipped": len(merged.skipped),
        "world_size": ctx.world_size,
        "protocol": PROTOCOL,
    }
    if merged.skipped:
        first, why = merged.skipped[0]
        metrics.setdefault("notes", []).append(
            f"{len(merged.skipped)} image(s) left out of both sides (first: {files[first]}: {why})"
        )
    return metrics


# ---------------------------------------------------------------------------------------------
# One rank's work, and putting the ranks back together
# ---------------------------------------------------------------------------------------------
def _reconstruct_shard(
    model: torch.nn.Module,
    files: list[Path],
    indices: list[int],
    *,
    evaluator: Evaluator,
    lpips_model: torch.nn.Module | None,
    batch_size: int,
    with_orig: bool,
    out_dir: Path | None,
    on_progress: ProgressFn | None,
) -> ShardResult:
    from gigatok_core.data.images import ImageReadError, load_image, save_png

    dev = torch.device(evaluator.device)
    size = model.config.image_size
    recon_feats: list[Features] = []
    orig_feats: list[Features] = []
    psnr: list[float] = []
    ssim: list[float] = []
    lp: list[float] = []
    used = np.zeros(model.config.codebook_size, dtype=bool)
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    for start in range(0, len(files), batch_size):
        batch_idx, images = [], []
        for i, p in zip(indices[start : start + batch_size], files[start : start + batch_size], strict=True):
            try:  # one corrupt file must not end a 50k-image run: it is left out of both sides
                images.append(load_image(p, size))
                batch_idx.append(i)
            except ImageReadError as err:
                skipped.append((i, err.message))
        if on_progress:
            on_progress(min(start + batch_size, len(files)), len(files), stage="reconstruct")
        if not images:
            continue
        kept += batch_idx
        pixels = np.stack(images)  # (B, S, S, 3) uint8
        out = _reconstruct_batch(model, pixels, dev, lpips_model)
        used[out["codes"].reshape(-1)] = True
        psnr += out["psnr"]
        ssim += out["ssim"]
        lp += out["lpips"]
        recon_feats.append(extract_features(evaluator.model, [out["recon_u8"]], device=dev))
        if with_orig:
            orig_feats.append(extract_features(evaluator.model, [pixels], device=dev))
        if out_dir is not None:
            for i, img in zip(batch_idx, out["recon_u8"], strict=True):
                save_png(out_dir / f"{i:06d}.png", img)
    return ShardResult(
        indices=np.asarray(kept, dtype=np.int64),
        recon=Features.concat(recon_feats) if recon_feats else _empty_features(),
        orig=(Features.concat(orig_feats) if orig_feats else _empty_features()) if with_orig else None,
        psnr=np.asarray(psnr, dtype=np.float64),
        ssim=np.asarray(ssim, dtype=np.float64),
        lpips=np.asarray(lp, dtype=np.float64) if lpips_model is not None else None,
        used=used,
        skipped=skipped,
    )


def _empty_features() -> Features:
    return Features(*(np.zeros((0, FEATURE_DIMS[k]), np.float32) for k in ("pool", "spatial", "logits")))


def merge_shards(parts: list[ShardResult]) -> ShardResult:
    """Concatenate the ranks' shards and put the rows back in image-index order."""
    parts = [p for p in parts if p is not None]
    idx = np.concatenate([p.indices for p in parts])
    order = np.argsort(idx, kind="stable")

    def cat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays)[order]

    def feats(key: str) -> Features | None:
        fs = [getattr(p, key) for p in parts if len(p.indices)]
        if not fs or any(f is None for f in fs):
            return None
        return Features(*(cat([getattr(f, k) for f in fs]) for k in ("pool", "spatial", "logits")))

    lp = [p.lpips for p in parts]
    return ShardResult(
        indices=idx[order],
        recon=feats("recon"),
        orig=feats("orig"),  # type: ignore[arg-type]
        psnr=cat([p.psnr for p in parts]),
        ssim=cat([p.ssim for p in parts]),
        lpips=None if any(x is None for x in lp) else cat(lp),  # type: ignore[arg-type]
        used=np.logical_or.reduce([p.used for p in parts]),
        skipped=sorted(s for p in parts for s in p.skipped),
    )


@torch.inference_mode()
def _reconstruct_batch(
    model: torch.nn.Module, pixels: np.ndarray, dev: torch.device, lpips_model: torch.nn.Module | None
) -> dict[str, Any]:
    from gigatok_core.data.images import to_tensor, to_uint8
    from gigatok_core.tasks.image_metrics import official_psnr_ssim

    x = to_tensor(pixels).to(dev)  # (B, 3, S, S) in [-1, 1]
    dtype = next(model.parameters()).dtype
    codes = model.encode(x.to(dtype))  # (B, N)
    recon = model.decode_codes(codes).float()  # (B, 3, S, S), unclamped
    recon_u8 = to_uint8(recon)  # (B, S, S, 3)
    x_hwc = x.permute(0, 2, 3, 1).cpu().numpy()
    pairs = [official_psnr_ssim(recon_u8[j], x_hwc[j]) for j in range(len(pixels))]
    lp: list[float] = []
    if lpips_model is not None:
        from gigatok_core.tasks.image_metrics import lpips_distance

        lp = lpips_distance(lpips_model, x, recon).cpu().tolist()
    return {
        "codes": codes.cpu().numpy(),
        "recon_u8": recon_u8,
        "psnr": [p for p, _ in pairs],
        "ssim": [s for _, s in pairs],
        "lpips": lp,
    }
