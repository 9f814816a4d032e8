"""Validation loss of a class-conditional GPT on an ImageNet-style folder (docs/recipes.md#gpt).

The in-process ``val_loss_cal.py``: ADM centre crop to the tokenizer's size, no flip, codes from
the tokenizer, the GPT in eval mode (no dropout, no class dropout), labels = index of the class
sub-folder in sorted order (torchvision ``ImageFolder``). Per batch, the mean cross-entropy over
all 256 positions (input = class + first 255 tokens, targets = the 256 tokens); the reported
``val_loss`` is the unweighted mean of the batch means, as the official script reports.

World-size independence: batches are cut from the whole (sorted) dataset, batch k = images
[k·B, (k+1)·B), and rank r takes batches r, r+W, ... So the batch means, and their mean, are those
of a single process (the official DistributedSampler pads and interleaves images per rank, so its
number moves slightly with the GPU count). ``val_loss_per_token`` is the mean over all tokens of
all images (no dependence on the batch size at all).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gigatok_core import dist
from gigatok_core.ar.loss import token_losses
from gigatok_core.data.folder import image_folder
from gigatok_core.errors import GigatokError
from gigatok_core.utils.progress import ProgressFn

__all__ = ["ValLossReport", "validation_loss"]

log = logging.getLogger("gigatok")

STAGE = "val-loss batches"  # the progress stage (this rank's batches)


@dataclass
class ValLossReport:
    val_loss: float  # unweighted mean of the per-batch mean CE (official)
    val_loss_per_token: float  # mean CE over every token of every image
    num_images: int
    num_batches: int
    num_classes: int  # class folders found
    batch_size: int
    precision: str
    gpt: str
    tokenizer: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validation_loss(
    gpt: str,
    data: str | Path,
    *,
    tokenizer: str | None = None,
    gpt_checkpoint: str | Path | None = None,
    tokenizer_checkpoint: str | Path | None = None,
    precision: str | None = None,
    batch_size: int = 32,
    device: str | None = None,
    class_subset: bool = False,
    ctx: dist.DistContext | None = None,
    on_progress: ProgressFn | None = None,
) -> ValLossReport | None:
    """Validation loss of ``gpt`` on the ImageFolder ``data`` (see module doc).

    ``precision``: autocast dtype of the GPT (fp32, bf16, fp16; default bf16 on CUDA as the
    official script, fp32 on CPU); the tokenizer always encodes in fp32. Returns the report on the
    main rank, ``None`` on the others. ``ctx``: the ranks (default: this process's
    :func:`gigatok_core.dist.get_context`; a :class:`gigatok_core.dist.HandSplit` splits a run by
    hand, as in :func:`gigatok_core.evaluation.reconstruction.evaluate_reconstruction`).
    ``on_progress(done, total, stage=STAGE)`` counts this rank's batches.
    """
    from gigatok_core.ar.load import load_gpt, resolve_gpt
    from gigatok_core.ar.trained import paired_tokenizer_checkpoint
    from gigatok_core.data.images import load_image, to_tensor
    from gigatok_core.tokenizer import load_tokenizer

    if batch_size < 1:
        raise GigatokError(f"--batch-size must be at least 1, got {batch_size}")
    dev = dist.resolve_device(device)
    precision = precision or ("bf16" if dev.type == "cuda" else "fp32")
    amp_dtype = dist.resolve_precision(precision, dev)
    gpt_cfg, tok_name, _ = resolve_gpt(gpt, tokenizer, gpt_checkpoint)  # fail fast on the pairing
    if gpt_checkpoint is not None and tokenizer_checkpoint is None:  # a gigatok run knows its tokenizer
        tokenizer_checkpoint = paired_tokenizer_checkpoint(gpt_checkpoint, tokenizer)
    files, labels, classes = image_folder(data, gpt_cfg.num_classes, class_subset=class_subset)

    ctx = ctx or dist.get_context(dev)
    tok = load_tokenizer(tok_name, checkpoint=tokenizer_checkpoint, device=dev)
    model, _ = load_gpt(gpt, tokenizer=tok_name, checkpoint=gpt_checkpoint, device=dev)
    size = tok.config.image_size

    batches = list(range(0, len(files), batch_size))  # global batch starts
    mine = ctx.shard(batches)
    rows: list[tuple[int, float, float, int]] = []  # (batch start, batch mean, token-loss sum, tokens)
    for done, start in enumerate(mine, 1):
        idx = range(start, min(start + batch_size, len(files)))
        pixels = np.stack([load_image(files[i], size) for i in idx])  # (B, S, S, 3) uint8
        y = torch.tensor([labels[i] for i in idx], device=dev)
        with torch.inference_mode():
            codes = tok.encode(to_tensor(pixels).to(dev))  # (B, N)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                loss = token_losses(model, y, codes).float()  # (B, N)
        rows.append((start, float(loss.mean()), float(loss.double().sum()), loss.numel()))
        if on_progress:
            on_progress(done, len(mine), stage=STAGE)

    parts = ctx.gather_objects(rows)  # a collective: also a barrier
    if not ctx.is_main:
        return None
    merged = sorted(r for part in parts for r in part)  # type: ignore[attr-defined]
    if [r[0] for r in merged] != batches:
        raise GigatokError(
            f"the ranks returned {len(merged)} of {len(batches)} batches",
            hint="every rank must see the same --data folder",
        )
    return ValLossReport(
        val_loss=float(np.mean([r[1] for r in merged])),
        val_loss_per_token=sum(r[2] for r in merged) / sum(r[3] for r in merged),
        num_images=len(files),
        num_batches=len(batches),
        num_classes=len(classes),
        batch_size=batch_size,
        precision=precision,
        gpt=gpt,
        tokenizer=tok_name,
    )
