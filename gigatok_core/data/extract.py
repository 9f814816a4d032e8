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
from torch.utils.data import Subset

from gigatok_core import dist
from gigatok_core.config.requests import ExtractCodesRequest
from gigatok_core.data.codes_dir import ExtractReport, finish_codes, prepare_output
from gigatok_core.data.codes_format import ShardEntry, scan_shard, write_shard
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


__all__ = ["ExtractCodesRequest", "ExtractReport", "extract_codes"]


# ---------------------------------------------------------------------------- the run
def extract_codes(
    request: ExtractCodesRequest,
    *,
    on_progress: ProgressFn | None = None,
    ctx: dist.DistContext | None = None,
) -> ExtractReport | None:
    """Encode ``request.data`` (an ImageFolder tree) into the codes folder ``request.output``; see the
    module doc and :class:`~gigatok_core.config.requests.ExtractCodesRequest`.

    Returns the report on the main rank, None on the others. ``on_progress(done, total,
    stage="extract-codes")`` counts this rank's images (``stage="import-official"``: files).
    ``ctx``: the ranks (default: this process's :func:`gigatok_core.dist.get_context`).
    """
    r = request
    dev = dist.resolve_device(r.device)
    if r.import_official is not None:
        from gigatok_core.data.official import import_official_codes

        return import_official_codes(
            r.import_official,
            r.output,
            tokenizer=r.tokenizer,
            checkpoint=r.checkpoint,
            classes_from=r.data,
            shard_size=r.shard_size,
            overwrite=r.overwrite,
            check_images=r.check_images,
            device=dev,
            on_progress=on_progress,
        )
    assert r.data is not None  # the request refuses neither data nor import_official
    return _extract(r, Path(r.output), Path(r.data), dev, on_progress, ctx)


def _extract(
    r: ExtractCodesRequest,
    output: Path,
    data: Path,
    dev: torch.device,
    on_progress: ProgressFn | None,
    ctx: dist.DistContext | None,
) -> ExtractReport | None:
    from gigatok_core.data.folder import ImageFolderDataset, require_readable
    from gigatok_core.data.transforms import CenterFlip, TenCrop

    checkpoint, ten_crop, crop_range, shard_size = r.checkpoint, r.ten_crop, r.crop_range, r.shard_size
    amp_dtype = dist.resolve_precision(r.precision or ("bf16" if dev.type == "cuda" else "fp32"), dev)
    ckpt = resolve_tokenizer_checkpoint(checkpoint) if checkpoint is not None else None
    size = tokenizer_architecture(r.tokenizer, ckpt)[0].image_size  # the checkpoint's own, if it says
    transform = TenCrop(size, crop_range) if ten_crop else CenterFlip(size)
    crops = 10 if ten_crop else 2
    dataset = ImageFolderDataset(data, transform=transform, require_labels=True, purpose="extract-codes")
    require_readable(dataset, command="train extract-codes")
    ctx = ctx or dist.get_context(dev)
    model, record = load_encoder(r.tokenizer, checkpoint=ckpt, device=dev)
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
    overwrite = r.overwrite
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
    entries, skipped, written, reused = _encode_shards(
        r, output, dataset, ctx.shard(range(n_shards)), (model, amp_dtype), record, crops, dev, on_progress
    )
    parts = ctx.gather_objects((entries, skipped, written, reused))
    ctx.barrier()
    if not ctx.is_main:
        return None
    report = finish_codes(output, parts, n_shards, record, crops, dataset.classes, {"data": str(data)})
    report.seconds = time.perf_counter() - start
    if r.check_images and report.manifest.num_images:
        del model
        from gigatok_core.data.check import check_grid

        report.check_grid = check_grid(report.manifest, r.tokenizer, checkpoint, dev, r.check_images)
    return report


def _encode_shards(
    r: ExtractCodesRequest,
    output: Path,
    dataset: Any,
    mine: list[int],
    encoder: tuple[torch.nn.Module, torch.dtype],
    record: Any,
    crops: int,
    dev: torch.device,
    on_progress: ProgressFn | None,
) -> tuple[dict[int, ShardEntry], dict[str, str], list[int], int]:
    """This rank's shards: each one already complete is kept, the others encoded (``encoder``: the
    model and its autocast dtype) and written.

    Returns (entries by shard, skipped files -> reason, shards written, shards kept)."""
    from gigatok_core.data.folder import make_loader

    model, amp_dtype = encoder
    shard_size = r.shard_size
    total = sum(min(shard_size, len(dataset) - k * shard_size) for k in mine)
    entries: dict[int, ShardEntry] = {}
    skipped: dict[str, str] = {}
    written: list[int] = []
    reused = seen = 0
    for k in mine:
        lo, hi = k * shard_size, min((k + 1) * shard_size, len(dataset))
        entry = scan_shard(output, k, crops=crops, num_tokens=record.num_tokens)
        if entry is None:
            loader = make_loader(
                Subset(dataset, range(lo, hi)), r.batch_size, workers=r.workers, pin_memory=dev.type == "cuda"
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
