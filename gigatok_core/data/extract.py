"""``gigatok train extract-codes``: encode an ImageFolder into a codes folder once (spec ar §6).

The official ``extract_codes_c2i.py`` with the decoder deleted: ``--ten-crop`` encodes the ten
crops of the int(S · crop_range) ADM centre crop (10 code rows per image), otherwise the centre crop
and its mirror (2). Labels are the sorted class folders. Differences, on purpose:

- codes go to shards of ``shard_size`` images (see :mod:`gigatok_core.data.codes`), not one
  ``.npy`` per image; shard k holds images [k·shard_size, (k+1)·shard_size) minus unreadable ones;
- ranks take shards k = rank, rank + W, ...; a shard is written atomically once encoded, so a
  killed run resumes with the shards not yet complete; rank 0 writes the manifest last;
- the encoder runs under autocast (bf16 on a GPU by default), the nearest-code search in fp32.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from gigatok_core import dist
from gigatok_core.data.codes import (
    CodesManifest,
    CodesTokenizer,
    ShardEntry,
    scan_shard,
    write_manifest,
    write_shard,
)
from gigatok_core.data.codes_dir import prepare_output
from gigatok_core.errors import GigatokError

log = logging.getLogger("gigatok")

Progress = Callable[[int, int], None]


@dataclass
class ExtractReport:
    """What a run did (on the main rank)."""

    manifest: CodesManifest
    encoded_shards: int = 0  # shards written by this run
    encoded_images: int = 0  # images in them
    reused_shards: int = 0  # complete shards kept from an interrupted run
    already_complete: bool = False  # the folder held this finished run: nothing was done
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable image -> reason
    seconds: float = 0.0
    check_grid: Path | None = None

    @property
    def images_per_second(self) -> float:
        return self.encoded_images / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------- the encoder
def _decoder_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    return ("decoder.", f"{model._vit_names[1]}.", "post_quant_conv.")


def _strip_decoder(model: torch.nn.Module) -> None:
    """Delete the decoder half (CNN decoder, ViT decoder, post-quant conv), as the official script."""
    for name in ("decoder", model._vit_names[1], "post_quant_conv"):
        delattr(model, name)


def resolve_tokenizer_checkpoint(path: str | Path) -> Path:
    """The weights file behind ``--checkpoint``: a file as given; for a folder, its newest exported
    tokenizer (``*.safetensors`` with gigatok metadata of kind 'tokenizer'), else the ``ema`` (or
    ``model``) weights of its latest training checkpoint (a run folder or a step folder)."""
    from gigatok_core.checkpoint import latest_checkpoint, read_weights_meta

    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise GigatokError(
            f"--checkpoint {path} does not exist", hint="pass a tokenizer checkpoint file or run folder"
        )
    exported = [
        p
        for p in sorted(path.glob("*.safetensors"))
        if (read_weights_meta(p) or {}).get("kind") == "tokenizer"
    ]
    if exported:
        return max(exported, key=lambda p: p.stat().st_mtime_ns)
    step = latest_checkpoint(path)
    for group in ("ema", "model"):  # the official extraction prefers the EMA weights
        if step is not None and (step / f"{group}.safetensors").is_file():
            return step / f"{group}.safetensors"
    raise GigatokError(
        f"--checkpoint {path} is a folder without tokenizer weights (no exported *.safetensors, no checkpoint)",
        hint="pass the checkpoint file, a training run folder, or export the run first (`gigatok train export`)",
    )


def load_encoder(
    tokenizer: str, *, checkpoint: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, CodesTokenizer]:
    """The tokenizer's encoder half (eval mode) and the record of which weights it holds.

    With weights (a checkpoint, or the preset's released file) the model is built on the meta
    device, the decoder deleted, then only the encoder is allocated and loaded strictly; the decoder
    is never built. A preset without released weights (``tiny``) gets its seeded random weights.
    """
    from gigatok_core.checkpoint import extract_state_dict, load_strict, read_checkpoint
    from gigatok_core.fileio import sha256_file
    from gigatok_core.registry import tokenizer_preset
    from gigatok_core.tokenizer import build_tokenizer, load_tokenizer

    preset = tokenizer_preset(tokenizer)
    cfg = preset.config
    ckpt = resolve_tokenizer_checkpoint(checkpoint) if checkpoint is not None else None
    record = CodesTokenizer(
        codebook_size=cfg.codebook_size,
        num_tokens=cfg.num_latent_tokens,
        preset=preset.name,
        checkpoint=str(ckpt) if ckpt else None,
        sha256=sha256_file(ckpt)
        if ckpt
        else (preset.weights_record.sha256 if preset.weights_record else None),
    )
    if ckpt is None and preset.weights is None:  # seeded random weights: built whole, then cut
        model = load_tokenizer(preset.name, device="cpu")
        _strip_decoder(model)
        return model.to(device), record
    if ckpt is None:
        from gigatok_core.hub import fetch_weights

        ckpt = fetch_weights(preset.weights)
    state_dict, _ = extract_state_dict(read_checkpoint(ckpt), source=str(ckpt))
    model = build_tokenizer(cfg, device="meta")
    prefixes = _decoder_prefixes(model)
    _strip_decoder(model)
    model = model.to_empty(device=device)
    load_strict(
        model,
        state_dict,
        source=str(ckpt),
        expected=f"tokenizer preset {preset.name!r}",
        drop=dict.fromkeys(prefixes, "decoder: extract-codes only encodes"),
    )
    return model.eval(), record


def encode_batch(model: torch.nn.Module, images: torch.Tensor, amp_dtype: torch.dtype) -> torch.Tensor:
    """Images (B, crops, 3, S, S) in [-1, 1] -> codes (B, crops, T) int64."""
    b, crops = images.shape[:2]
    x = images.flatten(0, 1).to(model.device, non_blocking=True)  # (B·crops, 3, S, S)
    with torch.inference_mode():
        with torch.autocast(model.device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            h = model.encode_latent(x)  # (B·crops, D, 1, T)
        codes = model.quantize(h.float()).codes  # nearest code in fp32: (B·crops, T)
    return codes.view(b, crops, -1).cpu()


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
    workers: int = 4,
    device: str | None = None,
    precision: str | None = None,
    overwrite: bool = False,
    check_images: int = 4,
    import_official: str | Path | None = None,
    on_progress: Progress | None = None,
) -> ExtractReport | None:
    """Encode ``data`` (an ImageFolder tree) into the codes folder ``output``; see the module doc.

    ``import_official`` converts the official per-image layout instead (``data`` then only names the
    classes). ``check_images`` images per shard go into ``check_codes.png`` (0: no grid).
    Returns the report on the main rank, None on the others.
    """
    if batch_size < 1 or shard_size < 1 or workers < 0 or check_images < 0:
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
    workers: int,
    dev: torch.device,
    precision: str,
    overwrite: bool,
    check_images: int,
    on_progress: Progress | None,
) -> ExtractReport | None:
    from gigatok_core.data.folder import ImageFolderDataset, make_loader
    from gigatok_core.data.transforms import CenterFlip, TenCrop
    from gigatok_core.registry import tokenizer_preset

    amp_dtype = dist.resolve_precision(precision, dev)
    size = tokenizer_preset(tokenizer).config.image_size
    transform = TenCrop(size, crop_range) if ten_crop else CenterFlip(size)
    crops = 10 if ten_crop else 2
    dataset = ImageFolderDataset(data, transform=transform, require_labels=True, purpose="extract-codes")
    info = dist.init_distributed(dev)
    model, record = load_encoder(tokenizer, checkpoint=checkpoint, device=dev)
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
    if info.is_main:
        try:
            done = prepare_output(output, settings, overwrite=overwrite)
        except GigatokError as err:
            problem = err
    done, problem = dist.all_gather_objects((done, problem))[0]  # every rank follows rank 0
    if problem is not None:
        raise problem
    if done:
        from gigatok_core.data.codes import read_manifest

        return ExtractReport(read_manifest(output), already_complete=True) if info.is_main else None

    start = time.perf_counter()
    n_shards = -(-len(dataset) // shard_size)
    mine = list(range(info.rank, n_shards, info.world_size))
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
                Subset(dataset, range(lo, hi)), batch_size, workers=workers, pin_memory=dev.type == "cuda"
            )
            codes, labels = [], []
            for images, y in loader:  # (B, crops, 3, S, S), (B,)
                codes.append(encode_batch(model, images, amp_dtype).numpy())
                labels.append(y.numpy())
                seen += len(y)
                if on_progress:
                    on_progress(seen, total)
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
            on_progress(seen, total)

    parts = dist.all_gather_objects((entries, skipped, written, reused))
    dist.barrier()
    if not info.is_main:
        return None
    report = _finish(output, parts, n_shards, record, crops, dataset.classes, {"data": str(data)})
    report.seconds = time.perf_counter() - start
    if check_images and report.manifest.num_images:
        del model
        report.check_grid = _grid(report.manifest, tokenizer, checkpoint, dev, check_images)
    return report


def _finish(
    output: Path,
    parts: list[Any],
    n_shards: int,
    record: CodesTokenizer,
    crops: int,
    classes: tuple[str, ...] | list[str],
    extra: dict[str, Any],
) -> ExtractReport:
    """Merge the ranks' shard entries and write the manifest (last)."""
    entries: dict[int, ShardEntry] = {}
    skipped: dict[str, str] = {}
    written: list[int] = []
    reused = 0
    for part_entries, part_skipped, part_written, part_reused in parts:
        entries.update(part_entries)
        skipped.update(part_skipped)
        written += part_written
        reused += part_reused
    if sorted(entries) != list(range(n_shards)):
        raise GigatokError(
            f"the ranks returned {len(entries)} of {n_shards} shards",
            hint="every rank must see the same --data",
        )
    if skipped:
        extra = {**extra, "skipped": sorted(skipped)}
    manifest = write_manifest(
        output,
        tokenizer=record,
        crops=crops,
        classes=classes,
        shards=[entries[k] for k in range(n_shards)],
        extra=extra,
    )
    return ExtractReport(
        manifest,
        encoded_shards=len(written),
        encoded_images=sum(entries[k].count for k in written),
        reused_shards=reused,
        skipped=skipped,
    )


def _grid(
    manifest: CodesManifest, tokenizer: str, checkpoint: str | Path | None, dev: torch.device, per_shard: int
) -> Path:
    from gigatok_core.data.check import write_check_grid

    ckpt = resolve_tokenizer_checkpoint(checkpoint) if checkpoint is not None else None
    return write_check_grid(manifest, tokenizer, checkpoint=ckpt, device=dev, per_shard=per_shard)
