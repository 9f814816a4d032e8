"""One probe epoch and the evaluation, shared by the run loop and the benchmark (docs/recipes.md#linear-probing).

Data order: a seeded shuffle per epoch cut into global batches, the last partial batch dropped
(``DistributedSampler`` + ``drop_last``); rank r takes its slice of every global batch. Gradients
of the head are averaged over ranks; BatchNorm running statistics are rank 0's, as DDP keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from gigatok_core.dist import DistContext, EpochSampler
from gigatok_core.errors import GigatokError
from gigatok_core.probe.data import ProbeImages, Split, collate
from gigatok_core.probe.head import topk_correct


def epoch_batches(n: int, batch: int, ctx: DistContext, seed: int, epoch: int) -> list[np.ndarray]:
    """This rank's index batches of one epoch: the seeded global order of :class:`EpochSampler`
    dealt over ranks, cut into global batches of ``batch`` per rank (the last partial one dropped)."""
    sampler = EpochSampler(n, seed=seed, rank=ctx.rank, world_size=ctx.world_size)
    sampler.set_epoch(epoch)
    mine = np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler))
    steps = len(mine) // batch
    return list(mine[: steps * batch].reshape(steps, batch))


def _all_reduce_grads(head: nn.Module, ctx: DistContext) -> None:
    if ctx.distributed:
        for p in head.parameters():
            if p.grad is not None:
                ctx.all_reduce(p.grad, "mean")


def sync_buffers(head: nn.Module, ctx: DistContext) -> None:
    """BatchNorm running statistics from rank 0 (what DDP's buffer broadcast keeps)."""
    if ctx.distributed and ctx.concurrent and torch_dist.is_initialized():
        for b in head.buffers():
            torch_dist.broadcast(b, 0)


def train_epoch(
    head: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: Any,
    source: Iterable[tuple[torch.Tensor, torch.Tensor] | None],
    *,
    steps: int,
    lr: Callable[[float], float],
    device: torch.device,
    amp_dtype: torch.dtype,
    ctx: DistContext,
    extractor: nn.Module | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[float, int]:
    """Train the head over ``source`` batches: (images, labels) with ``extractor``, else (features, labels).

    ``lr(t)``: the learning rate at fraction t of the epoch, set before every step (a skipped
    unreadable batch still advances the schedule). Returns (summed loss, samples seen).
    """
    loss_sum = torch.zeros((), device=device)  # on the device: no sync per step
    seen = 0
    for step, batch in enumerate(source):
        for group in opt.param_groups:
            group["lr"] = lr(step / steps)
        if batch is None:
            continue
        inputs, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            if extractor is not None:
                feats = extractor(inputs)  # (B, D), no grad
            else:
                keep = ~inputs.isnan().any(dim=1)  # unreadable images (NaN rows) are left out
                feats, y = inputs[keep], y[keep]
            if len(y) < 2:  # unreadable images left one sample: no batch statistics to train on
                continue
            loss = F.cross_entropy(head(feats.float()), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        _all_reduce_grads(head, ctx)
        scaler.step(opt)
        scaler.update()
        loss_sum += loss.detach() * len(y)
        seen += len(y)
        if on_step:
            on_step(step + 1)
    return float(loss_sum), seen


def image_batches(dataset: ProbeImages, batches: list[np.ndarray], workers: int):
    """Decoded, augmented image batches in the given index order (workers decode in parallel)."""
    loader = DataLoader(
        dataset,
        batch_sampler=[b.tolist() for b in batches],
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
    )
    for batch in loader:
        yield None if batch is None else (batch[0], batch[1])


@torch.no_grad()
def evaluate(
    extractor: nn.Module,
    head: nn.Module,
    val: Split,
    val_feats: torch.Tensor | None,
    *,
    ctx: DistContext,
    batch_size: int,
    workers: int,
    device: torch.device,
    amp_dtype: torch.dtype,
    size: int,
) -> tuple[float, float, float]:
    """(top-1 %, top-5 %, mean loss) on the val split; backbone and head in eval mode, ranks striding."""
    extractor.eval()
    head.eval()
    idx = np.arange(ctx.rank, len(val), ctx.world_size)
    labels = torch.tensor(val.labels, device=device)
    c1 = c5 = 0
    loss_sum, n = 0.0, 0
    if val_feats is not None:
        source: Any = ((val_feats[b], labels[b]) for b in torch.as_tensor(idx).split(batch_size))
    else:
        images = ProbeImages(val, size, augment=False)
        batches = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
        source = image_batches(images, batches, workers)
    for batch in source:
        if batch is None:
            continue
        inputs, y = batch[0].to(device), batch[1].to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            feats = extractor(inputs) if val_feats is None else inputs
            keep = ~feats.isnan().any(dim=1)
            logits = head(feats[keep].float()).float()
        y = y[keep]
        k1, k5 = topk_correct(logits, y)
        c1, c5 = c1 + k1, c5 + k5
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    parts = ctx.gather_objects((c1, c5, loss_sum, n))
    c1, c5, loss_sum, n = (sum(p[i] for p in parts) for i in range(4))  # type: ignore[index]
    if n == 0:
        raise GigatokError(f"no readable image in the val split {val.root}")
    return 100.0 * c1 / n, 100.0 * c5 / n, loss_sum / n
