"""The linear-probe loop: train a BatchNorm + linear head on frozen features, evaluate every epoch.

Official protocol (docs/recipes.md#linear-probing): per-process batch 128, lr = blr * global batch / 256 with blr 0.1,
LARS, 90 epochs with 10 of linear warm-up then half-cosine (lr set every iteration at the
fractional epoch), cross-entropy, shuffled train order with the last partial batch dropped; the
backbone left in train mode while the head trains (the GPT's dropouts stay on), eval mode to evaluate.

Online (default): each epoch decodes, augments and encodes every training image. Cached
(``cache_features``): features come from :mod:`gigatok_core.probe.cache`. Everything random is a
function of ``(seed, epoch, ...)``, so a run resumed from its per-epoch checkpoint continues exactly.
Outputs in ``RUN_DIR``: ``config.json``, ``metrics.jsonl`` (one line per epoch), ``results.json``
(final), ``checkpoints/step-{epoch:08d}/`` (head weights; optimiser, scaler, epochs done).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gigatok_core import dist
from gigatok_core.checkpoints.training import (
    TrainingCheckpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from gigatok_core.dist import DistContext
from gigatok_core.errors import GigatokError
from gigatok_core.probe.cache import cached_features, open_cache
from gigatok_core.probe.data import ProbeImages, Split, check_same_classes
from gigatok_core.probe.features import feature_spec
from gigatok_core.probe.head import LARS, ProbeHead, lr_at, scaled_lr
from gigatok_core.probe.loop import epoch_batches, evaluate, image_batches, sync_buffers, train_epoch
from gigatok_core.utils.fileio import write_json, write_text_atomic
from gigatok_core.utils.progress import ProgressFn

CHECKPOINTS = "checkpoints"  # RUN_DIR/checkpoints/step-{epoch:08d}/ (gigatok_core.checkpoints.files)


@dataclass
class ProbeConfig:
    """The probe recipe; defaults are the official ones (docs/recipes.md#linear-probing)."""

    epochs: int = 90
    warmup_epochs: float | None = None  # None: 10 of every 90 epochs (the official 10 of 90)
    batch_size: int = 128  # per process (the official LIN_BSZ per GPU)
    blr: float = 0.1
    lr: float | None = None  # absolute; None: blr * batch_size * processes / 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    trust_coefficient: float = 0.001
    augment: bool = True  # train: ADM random crop + flip; False: the val centre crop
    backbone_train_mode: bool = True  # official: the backbone's dropouts stay on while the head trains
    subset: int | None = None  # images per class in each split
    seed: int = 0
    precision: str = "fp32"  # backbone and head autocast (official GPT probe: fp16, tokenizer: fp32)
    cache_features: bool = False
    cache_draws: int = 0  # cached train features: 0 = centre crop once; K = K augmented draws
    cache_dir: str | None = None  # default RUN_DIR/features
    workers: int = 0  # DataLoader workers decoding images
    layer: int | None = None  # GPT feature block (default n_layer // 2)

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise GigatokError(f"invalid probe setting: {msg}")

        need(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        need(
            self.batch_size >= 2,
            f"batch_size must be at least 2 (BatchNorm statistics), got {self.batch_size}",
        )
        need(self.blr > 0 and (self.lr is None or self.lr > 0), "the learning rate must be positive")
        need(
            self.warmup_epochs is None or 0 <= self.warmup_epochs <= self.epochs,
            "warmup_epochs in [0, epochs]",
        )
        need(self.subset is None or self.subset >= 1, f"subset must be at least 1, got {self.subset}")
        need(self.cache_draws >= 0, f"cache_draws must be >= 0, got {self.cache_draws}")
        need(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        need(
            self.precision in ("fp32", "bf16", "fp16"),
            f"precision must be fp32, bf16 or fp16, not {self.precision!r}",
        )

    @property
    def warmup(self) -> float:
        return self.epochs * 10 / 90 if self.warmup_epochs is None else self.warmup_epochs


@dataclass
class ProbeResult:
    top1: float  # % on the val split after the last epoch (the official number)
    top5: float
    val_loss: float
    epochs: int
    best_top1: float
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


EpochCallback = Callable[[dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------
# Run folder
# ---------------------------------------------------------------------------------------------
def _run_dir_problem(output: Path, settings: dict[str, Any], *, overwrite: bool) -> GigatokError | None:
    """Why ``output`` cannot hold this probe (None when it can: new, the same run, or --overwrite)."""
    cfg_path = output / "config.json"
    if output.exists() and not output.is_dir():
        return GigatokError(f"--output {output} exists and is not a folder", hint="choose another --output")
    if overwrite or not output.exists():
        return None
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old != json.loads(json.dumps(settings, default=str)):
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            return GigatokError(
                f"{output} holds a probe run with other settings (differing: {', '.join(changed)})",
                hint="pass the same options to resume it, choose another --output, or --overwrite to restart",
            )
    elif any(output.iterdir()):
        return GigatokError(
            f"--output {output} is not empty and holds no probe run", hint="choose another --output"
        )
    return None


def _prepare_run_dir(
    output: Path, settings: dict[str, Any], ctx: DistContext, *, overwrite: bool
) -> TrainingCheckpoint | None:
    """Create RUN_DIR or check it holds this same probe; returns its latest checkpoint (resume).

    Rank 0 decides and prepares the folder; the others learn its verdict (no race on the folder).
    """
    problem = _run_dir_problem(output, settings, overwrite=overwrite) if ctx.is_main else None
    verdict = ctx.broadcast_object(None if problem is None else (problem.message, problem.hint))
    if verdict is not None:
        raise GigatokError(verdict[0], hint=verdict[1])
    if ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in ("metrics.jsonl", "results.json"):
                (output / name).unlink(missing_ok=True)
            shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
        write_json(output / "config.json", json.loads(json.dumps(settings, default=str)))
    ctx.barrier()
    if latest_checkpoint(output / CHECKPOINTS, quiet=True) is None:
        return None
    return load_checkpoint(output / CHECKPOINTS)


def _save_state(output: Path, epoch: int, head: nn.Module, opt: LARS, scaler: Any, settings: dict) -> None:
    """One checkpoint per epoch (the newest two kept): head weights, optimiser and scaler state."""
    save_checkpoint(
        output / CHECKPOINTS,
        weights={"head": head.state_dict()},
        state={"epoch": epoch, "optimizer": opt.state_dict(), "scaler": scaler.state_dict()},
        meta={"step": epoch, "kind": "probe", "config": json.loads(json.dumps(settings, default=str))},
        keep=2,
    )


def _history(output: Path, upto: int) -> list[dict[str, Any]]:
    """The metric lines of epochs <= ``upto`` (lines of epochs a kill interrupted are dropped)."""
    path = output / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= upto]


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def run_probe(
    extractor: nn.Module,
    train: Split,
    val: Split,
    cfg: ProbeConfig,
    output: str | Path,
    *,
    device: torch.device,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    on_epoch: EpochCallback | None = None,
    on_progress: ProgressFn | None = None,
    ctx: DistContext | None = None,
) -> ProbeResult | None:
    """Probe ``extractor`` (a module mapping (B,3,S,S) images to (B,D) features, see features.py).

    Returns the result on rank 0 (None elsewhere). ``on_epoch`` gets each epoch's metrics line;
    ``on_progress(done, total, stage=...)`` (:mod:`gigatok_core.utils.progress`) reports the feature
    cache shards (stages "features: train", "features: val") and each epoch's batches (stage "train",
    restarting every epoch). Resumes from ``RUN_DIR/checkpoints``.
    """
    check_same_classes(train, val)
    ctx = ctx or dist.get_context(device)
    info, world, rank = ctx, ctx.world_size, ctx.rank
    amp_dtype = dist.resolve_precision(cfg.precision, device)
    per_step = cfg.batch_size * world
    if len(train) < per_step:
        raise GigatokError(
            f"the train split has {len(train)} images, fewer than one batch ({cfg.batch_size} x {world} processes)",
            hint=f"pass --batch-size {max(1, len(train) // world)} or less, or add images",
        )
    output = Path(output)
    lr = cfg.lr if cfg.lr is not None else scaled_lr(cfg.blr, per_step)
    size, dim, num_classes = extractor.image_size, extractor.dim, len(train.classes)
    spec = feature_spec(extractor)
    settings = {
        "probe": dataclasses.asdict(cfg),
        "features": spec,
        "meta": meta or {},
        "lr": lr,
        "world_size": world,
        "train": {"root": str(train.root), "images": len(train), "digest": train.digest},
        "val": {"root": str(val.root), "images": len(val), "digest": val.digest},
        "classes": list(train.classes),
    }
    ckpt = _prepare_run_dir(output, settings, ctx, overwrite=overwrite)
    start = int(ckpt.state["epoch"]) if ckpt is not None else 0
    extractor.to(device)

    gen = torch.Generator().manual_seed(cfg.seed)
    head = ProbeHead(dim, num_classes, generator=gen).to(device)
    opt = LARS(
        head.parameters(),
        lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        trust_coefficient=cfg.trust_coefficient,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if ckpt is not None:
        head.load_state_dict(ckpt.weights["head"])
        opt.load_state_dict(ckpt.state["optimizer"])
        scaler.load_state_dict(ckpt.state["scaler"])
    history = _history(output, start)

    # Feature sources.
    train_feats = val_feats = None
    if cfg.cache_features and start < cfg.epochs:
        fingerprint = {"features": spec, "meta": meta or {}, "precision": cfg.precision, "image_size": size}
        folder = open_cache(Path(cfg.cache_dir or output / "features"), fingerprint, ctx)
        common = {
            "folder": folder,
            "seed": cfg.seed,
            "image_size": size,
            "dim": dim,
            "batch_size": cfg.batch_size,
            "device": device,
            "amp_dtype": amp_dtype,
            "workers": cfg.workers,
            "ctx": ctx,
        }
        train_feats = cached_features(
            extractor,
            train,
            name=f"train-{train.digest[:12]}",
            draws=cfg.cache_draws,
            on_progress=_stage(on_progress, "features: train"),
            **common,
        )
        val_feats = cached_features(
            extractor,
            val,
            name=f"val-{val.digest[:12]}",
            draws=0,
            on_progress=_stage(on_progress, "features: val"),
            **common,
        )[0]
        train_feats, val_feats = train_feats.to(device), val_feats.to(device)
    train_images = ProbeImages(train, size, augment=cfg.augment, seed=cfg.seed)
    train_labels = torch.tensor(train.labels, device=device)

    # The epoch seeds the global RNG (the backbone's dropout), so a resumed epoch draws the same
    # noise; the caller's RNG state is restored afterwards.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 100003 + epoch * world + rank)
            batches = epoch_batches(len(train), cfg.batch_size, ctx, cfg.seed, epoch)
            extractor.train(cfg.backbone_train_mode)
            head.train()
            if train_feats is not None:
                draw = epoch % train_feats.shape[0]
                source: Any = ((train_feats[draw, b], train_labels[b]) for b in map(torch.as_tensor, batches))
            else:
                train_images.set_draw(epoch)
                source = image_batches(train_images, batches, cfg.workers)
            steps = len(batches)
            loss_sum, seen = train_epoch(
                head,
                opt,
                scaler,
                source,
                steps=steps,
                lr=lambda t, e=epoch: lr_at(e + t, lr=lr, epochs=cfg.epochs, warmup_epochs=cfg.warmup),
                device=device,
                amp_dtype=amp_dtype,
                ctx=ctx,
                extractor=extractor if train_feats is None else None,
                on_step=None if on_progress is None else lambda k, n=steps: on_progress(k, n, stage="train"),
            )
            if not np.isfinite(loss_sum):
                raise GigatokError(
                    f"the probe loss became {loss_sum} in epoch {epoch + 1}", hint="lower --blr"
                )
            sync_buffers(head, ctx)
            top1, top5, val_loss = evaluate(
                extractor,
                head,
                val,
                val_feats,
                ctx=ctx,
                batch_size=cfg.batch_size,
                workers=cfg.workers,
                device=device,
                amp_dtype=amp_dtype,
                size=size,
            )
            totals = ctx.gather_objects((loss_sum, seen))
            row = {
                "epoch": epoch + 1,
                "top1": top1,
                "top5": top5,
                "loss": sum(t[0] for t in totals) / max(1, sum(t[1] for t in totals)),  # type: ignore[index]
                "val_loss": val_loss,
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 3),
            }
            history.append(row)
            if info.is_main:  # metrics first: a kill between the two only repeats this epoch
                write_text_atomic(output / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
                _save_state(output, epoch + 1, head, opt, scaler, settings)
            ctx.barrier()
            if on_epoch:
                on_epoch(row)
    if not history:
        raise GigatokError(f"{output} already finished {start} epochs but has no metrics.jsonl")
    last = history[-1]
    result = ProbeResult(
        top1=last["top1"],
        top5=last["top5"],
        val_loss=last["val_loss"],
        epochs=last["epoch"],
        best_top1=max(r["top1"] for r in history),
        history=history,
    )
    if info.is_main:
        write_json(
            output / "results.json",
            {
                **{k: v for k, v in result.to_dict().items() if k != "history"},
                "lr": lr,
                "features": spec,
                "meta": meta or {},
            },
        )
    return result if info.is_main else None


def _stage(on_progress: ProgressFn | None, stage: str) -> Callable[[int, int], None] | None:
    return None if on_progress is None else (lambda done, total: on_progress(done, total, stage=stage))
