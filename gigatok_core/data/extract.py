"""``gigatok train extract-codes``: encode an ImageFolder into a codes folder once (docs/recipes.md#gpt).

The official ``extract_codes_c2i.py`` with the decoder deleted: ``--ten-crop`` encodes the ten
crops of the int(S · crop_range) ADM centre crop (10 code rows per image), otherwise the centre crop
and its mirror (2). Labels are the sorted class folders. Differences, on purpose:

- codes go to shards of ``shard_size`` images (see :mod:`gigatok_core.data.codes_format`), not one
  ``.npy`` per image; shard k holds images [k·shard_size, (k+1)·shard_size) minus unreadable ones;
- ranks take shards k = rank, rank + W, ...; a shard is written atomically once encoded, so a
  killed run resumes with the shards not yet complete; rank 0 writes the manifest last;
- the encoder runs under autocast (bf16 on a GPU by default), the nearest-code search in fp32.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from gigatok_core import dist
from gigatok_core.data.codes_dir import ExtractReport, finish_codes, prepare_output
from gigatok_core.data.codes_format import CodesTokenizer, ShardEntry, scan_shard, write_shard
from gigatok_core.data.encoder import (
    encode_batch,
    load_encoder,
    resolve_tokenizer_checkpoint,
    tokenizer_architecture,
)
from gigatok_core.errors import GigatokError
from gigatok_core.utils.progress import ProgressFn
from gigatok_core.weights import relative_to

STAGE = "extract-codes"  # the progress stage: this rank's images


__all__ = ["ExtractReport", "extract_codes"]


# ---------------------------------------------------------------------------- the run
def extract_codes(
    tokenizer: str,
    output: str | Path,
    *,
    data: str | Path | None = None,
    checkpoint: str | Path | None = None,
    ten_crop: bool = False,
    crop_range: float = 1.1,
    batch_size: int = 32,
    shard_size: int = 10_000,
    workers: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    overwrite: bool = False,
    check_images: int = 4,
    import_official: str | Path | None = None,
    on_progress: ProgressFn | None = None,
    ctx: dist.DistContext | None = None,
) -> ExtractReport | None:
    """Encode ``data`` (an ImageFolder tree) into the codes folder ``output``; see the module doc.

    ``import_official`` converts the official per-image layout instead (``data`` then only names the
    classes). ``check_images`` images per shard go into ``check_codes.png`` (0: no grid).
    Returns the report on the main rank, None on the others. ``on_progress(done, total,
    stage="extract-codes")`` counts this rank's images (``stage="import-official"``: files).
    ``ctx``: the ranks (default: this process's :func:`gigatok_core.dist.get_context`).
    """
    if batch_size < 1 or shard_size < 1 or (workers or 0) < 0 or check_images < 0:
        raise GigatokError(
            "--batch-size and --shard-size must be >= 1, --workers and --check-images >= 0",
            hint=f"got batch {batch_size}, shard {shard_size}, workers {workers}, check {check_images}",
        )
    if crop_range < 1.0:
        raise GigatokError(
            f"--crop-range must be at least 1.0, got {crop_range}", hint="the official value is 1.1"
        )
    dev = dist.resolve_device(device)
    if import_official is not None:
        from gigatok_core.data.official import import_official_codes

        return import_official_codes(
            import_official,
            output,
            tokenizer=tokenizer,
            checkpoint=checkpoint,
            classes_from=data,
            shard_size=shard_size,
            overwrite=overwrite,
            check_images=check_images,
            device=dev,
            on_progress=on_progress,
        )
    if data is None:
        raise GigatokError(
            "--data is required", hint="pass the ImageFolder tree to encode (one sub-folder per class)"
        )
    return _extract(
        tokenizer,
        Path(output),
        Path(data),
        checkpoint=checkpoint,
        ten_crop=ten_crop,
        crop_range=crop_range,
        batch_size=batch_size,
        shard_size=shard_size,
        workers=workers,
        dev=dev,
        precision=precision or ("bf16" if dev.type == "cuda" else "fp32"),
        overwrite=overwrite,
        check_images=check_images,
        on_progress=on_progress,
        ctx=ctx,
    )


def _extract(
    tokenizer: str,
    output: Path,
    data: Path,
    *,
    checkpoint: str | Path | None,
    ten_crop: bool,
    crop_range: float,
    batch_size: int,
    shard_size: int,
    workers: int | None,
    dev: torch.device,
    precision: str,
    overwrite: bool,
    check_images: int,
    on_progress: ProgressFn | None,
    ctx: dist.DistContext | None,
) -> ExtractReport | None:
    from gigatok_core.data.folder import ImageFolderDataset, require_readable
    from gigatok_core.data.transforms import CenterFlip, TenCrop

    amp_dtype = dist.resolve_precision(precision, dev)
    ckpt = resolve_tokenizer_checkpoint(checkpoint) if checkpoint is not None else None
    size = tokenizer_architecture(tokenizer, ckpt)[0].image_size  # the checkpoint's own, if it says
    transform = TenCrop(size, crop_range) if ten_crop else CenterFlip(size)
    crops = 10 if ten_crop else 2
    dataset = ImageFolderDataset(data, transform=transform, require_labels=True, purpose="extract-codes")
    require_readable(dataset, command="train extract-codes")
    ctx = ctx or dist.get_context(dev)
    model, record = load_encoder(tokenizer, checkpoint=ckpt, device=dev)
    if ckpt is not None:  # found again from anywhere, also after the tree is moved
        record = dataclasses.replace(record, checkpoint_relative=relative_to(ckpt, output))
    settings: dict[str, Any] = {
        "tokenizer": record.to_dict(),
        "crops": crops,
        "ten_crop": ten_crop,
        "crop_range": crop_range if ten_crop else None,
        "image_size": size,
        "shard_size": shard_size,
        "data": str(data),
        "num_files": len(dataset),
        "classes": list(dataset.classes),
    }
    done, problem = False, None
    if ctx.is_main:
        try:
            done = prepare_output(output, settings, overwrite=overwrite)
        except GigatokError as err:
            problem = err
    done, problem = ctx.broadcast_object((done, problem))  # every rank follows rank 0
    if problem is not None:
        raise problem
    if done:
        from gigatok_core.data.codes_format import read_manifest

        return ExtractReport(read_manifest(output), already_complete=True) if ctx.is_main else None

    start = time.perf_counter()
    n_shards = -(-len(dataset) // shard_size)
    part = _encode_shards(
        model,
        dataset,
        output,
        ctx.shard(range(n_shards)),
        shard_size=shard_size,
        record=record,
        crops=crops,
        amp_dtype=amp_dtype,
        batch_size=batch_size,
        workers=workers,
        dev=dev,
        on_progress=on_progress,
    )
    parts = ctx.gather_objects(part)
    ctx.barrier()
    if not ctx.is_main:
        return None
    report = finish_codes(output, parts, n_shards, record, crops, dataset.classes, {"data": str(data)})
    report.seconds = time.perf_counter() - start
    if check_images and report.manifest.num_images:
        del model
        from gigatok_core.data.check import check_grid

        report.check_grid = check_grid(report.manifest, tokenizer, checkpoint, dev, check_images)
    return report


def _encode_shards(
    model: torch.nn.Module,
    dataset: Dataset,
    output: Path,
    shards: list[int],
    *,
    shard_size: int,
    record: CodesTokenizer,
    crops: int,
    amp_dtype: torch.dtype,
    batch_size: int,
    workers: int | None,
    dev: torch.device,
    on_progress: ProgressFn | None,
) -> tuple[dict[int, ShardEntry], dict[str, str], list[int], int]:
    """This rank's ``shards``: a complete one on disk is kept (resume), the others encoded and
    written. Returns (entries by shard, unreadable files -> why, shards written, shards kept)."""
    from gigatok_core.data.folder import make_loader

    total = sum(min(shard_size, len(dataset) - k * shard_size) for k in shards)
    entries: dict[int, ShardEntry] = {}
    skipped: dict[str, str] = {}
    written: list[int] = []
    reused = seen = 0
    for k in shards:
        lo, hi = k * shard_size, min((k + 1) * shard_size, len(dataset))
        entry = scan_shard(output, k, crops=crops, num_tokens=record.num_tokens)
        if entry is None:
            loader = make_loader(
                Subset(dataset, range(lo, hi)), batch_size, workers=workers, pin_memory=dev.type == "cuda"
            )
            codes, labels = [], []
            for images, y in loader:  # (B, crops, 3, S, S), (B,)
                codes.append(encode_batch(model, images, amp_dtype).numpy())
                labels.append(y.numpy())
                seen += len(y)
                if on_progress:
                    on_progress(seen, total, stage=STAGE)
            skipped.update(loader.skipped)
            seen += len(loader.skipped)
            codes_arr = np.concatenate(codes) if codes else np.zeros((0, crops, record.num_tokens), np.int64)
            labels_arr = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
            entry = write_shard(output, k, codes_arr, labels_arr, codebook_size=record.codebook_size)
            written.append(k)
        else:
            reused += 1
            seen += hi - lo
        entries[k] = entry
        if on_progress:
            on_progress(seen, total, stage=STAGE)
    return entries, skipped, written, reused
