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
from gigatok_core.config.probe import ProbeConfig
from gigatok_core.dist import DistContext
from gigatok_core.errors import GigatokError
from gigatok_core.probe.cache import cached_splits
from gigatok_core.probe.data import ProbeImages, Split, check_same_classes
from gigatok_core.probe.features import feature_spec
from gigatok_core.probe.head import LARS, ProbeHead, lr_at, scaled_lr
from gigatok_core.probe.loop import epoch_batches, evaluate, image_batches, sync_buffers, train_epoch
from gigatok_core.runs.folder import RunFolder
from gigatok_core.utils.fileio import write_json, write_text_atomic
from gigatok_core.utils.progress import ProgressFn

CHECKPOINTS = "checkpoints"  # RUN_DIR/checkpoints/step-{epoch:08d}/ (gigatok_core.checkpoints.files)


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
def _run_settings(
    extractor: nn.Module,
    train: Split,
    val: Split,
    cfg: ProbeConfig,
    meta: dict[str, Any],
    *,
    lr: float,
    world: int,
) -> dict[str, Any]:
    """What RUN_DIR/config.json records: a rerun with the same settings resumes, others are refused."""
    return {
        "probe": dataclasses.asdict(cfg),
        "features": feature_spec(extractor),
        "meta": meta,
        "lr": lr,
        "world_size": world,
        "train": {"root": str(train.root), "images": len(train), "digest": train.digest},
        "val": {"root": str(val.root), "images": len(val), "digest": val.digest},
        "classes": list(train.classes),
    }


def probe_folder(output: str | Path, settings: dict[str, Any] | None = None) -> RunFolder:
    """The folder of a probe run with ``settings`` (see :class:`RunFolder`); the feature cache
    (``features/``) keeps its own fingerprint and survives ``--overwrite``."""
    return RunFolder(
        output,
        "probe run",
        settings,
        settings_file="config.json",
        outputs=("metrics.jsonl", "results.json", CHECKPOINTS),
    )


def _prepare_run_dir(
    output: Path, settings: dict[str, Any], ctx: DistContext, *, overwrite: bool
) -> TrainingCheckpoint | None:
    """Create RUN_DIR or check it holds this same probe; returns its latest checkpoint (resume).

    Rank 0 decides and prepares the folder; the others learn its verdict (no race on the folder).
    """
    folder = probe_folder(output, settings)
    problem = None
    if ctx.is_main:
        try:
            folder.check(overwrite=overwrite)
        except GigatokError as err:
            problem = err
    verdict = ctx.broadcast_object(None if problem is None else (problem.message, problem.hint))
    if verdict is not None:
        raise GigatokError(verdict[0], hint=verdict[1])
    if ctx.is_main:
        folder.claim(overwrite=overwrite)
    ctx.barrier()
    if latest_checkpoint(output / CHECKPOINTS, quiet=True) is None:
        return None
    return load_checkpoint(output / CHECKPOINTS)


def _history(output: Path, upto: int) -> list[dict[str, Any]]:
    """The metric lines of epochs <= ``upto`` (lines of epochs a kill interrupted are dropped)."""
    path = output / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= upto]


# ---------------------------------------------------------------------------------------------
# The head's state: what a checkpoint holds
# ---------------------------------------------------------------------------------------------
@dataclass
class _HeadState:
    """The trained state: the head, its LARS optimiser and the fp16 loss scaler."""

    head: ProbeHead
    opt: LARS
    scaler: torch.amp.GradScaler

    @classmethod
    def create(
        cls,
        dim: int,
        num_classes: int,
        cfg: ProbeConfig,
        lr: float,
        device: torch.device,
        amp_dtype: torch.dtype,
        ckpt: TrainingCheckpoint | None,
    ) -> _HeadState:
        """A fresh head (seeded by ``cfg.seed``), or the one ``ckpt`` saved."""
        head = ProbeHead(dim, num_classes, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
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
        return cls(head, opt, scaler)

    def save(self, output: Path, epoch: int, settings: dict[str, Any]) -> None:
        """One checkpoint per epoch (the newest two kept): head weights, optimiser and scaler state."""
        save_checkpoint(
            output / CHECKPOINTS,
            weights={"head": self.head.state_dict()},
            state={"epoch": epoch, "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict()},
            meta={"step": epoch, "kind": "probe", "config": json.loads(json.dumps(settings, default=str))},
            keep=2,
        )


# ---------------------------------------------------------------------------------------------
# One epoch: train the head, then evaluate
# ---------------------------------------------------------------------------------------------
@dataclass
class _Epochs:
    """What every epoch of a run shares; :meth:`run` trains one epoch and evaluates it."""

    extractor: nn.Module
    train: Split
    val: Split
    cfg: ProbeConfig
    lr: float
    device: torch.device
    amp_dtype: torch.dtype
    ctx: DistContext
    state: _HeadState
    feats: tuple[torch.Tensor, torch.Tensor] | None  # cached (train draws, val) features, or online

    def __post_init__(self) -> None:
        self.images = ProbeImages(
            self.train, self.extractor.image_size, augment=self.cfg.augment, seed=self.cfg.seed
        )
        self.labels = torch.tensor(self.train.labels, device=self.device)

    def _source(self, epoch: int, batches: list[np.ndarray]) -> Any:
        """This epoch's (inputs, labels) batches: cached features of draw ``epoch mod K``, or images."""
        if self.feats is not None:
            train_feats = self.feats[0]
            draw = epoch % train_feats.shape[0]
            return ((train_feats[draw, b], self.labels[b]) for b in map(torch.as_tensor, batches))
        self.images.set_draw(epoch)
        return image_batches(self.images, batches, self.cfg.workers)

    def run(self, epoch: int, on_progress: ProgressFn | None = None) -> dict[str, Any]:
        """Train epoch ``epoch`` (0-based) and evaluate: its metrics line."""
        cfg, ctx, state, t0 = self.cfg, self.ctx, self.state, time.perf_counter()
        torch.manual_seed(cfg.seed * 100003 + epoch * ctx.world_size + ctx.rank)  # the backbone's dropout
        batches = epoch_batches(len(self.train), cfg.batch_size, ctx, cfg.seed, epoch)
        self.extractor.train(cfg.backbone_train_mode)
        state.head.train()
        steps = len(batches)
        loss_sum, seen = train_epoch(
            state.head,
            state.opt,
            state.scaler,
            self._source(epoch, batches),
            steps=steps,
            lr=lambda t: lr_at(epoch + t, lr=self.lr, epochs=cfg.epochs, warmup_epochs=cfg.warmup),
            device=self.device,
            amp_dtype=self.amp_dtype,
            ctx=ctx,
            extractor=self.extractor if self.feats is None else None,
            on_step=None if on_progress is None else lambda k: on_progress(k, steps, stage="train"),
        )
        if not np.isfinite(loss_sum):
            raise GigatokError(f"the probe loss became {loss_sum} in epoch {epoch + 1}", hint="lower --blr")
        sync_buffers(state.head, ctx)
        top1, top5, val_loss = evaluate(
            self.extractor,
            state.head,
            self.val,
            None if self.feats is None else self.feats[1],
            ctx=ctx,
            batch_size=cfg.batch_size,
            workers=cfg.workers,
            device=self.device,
            amp_dtype=self.amp_dtype,
            size=self.extractor.image_size,
        )
        totals = ctx.gather_objects((loss_sum, seen))
        return {
            "epoch": epoch + 1,
            "top1": top1,
            "top5": top5,
            "loss": sum(t[0] for t in totals) / max(1, sum(t[1] for t in totals)),  # type: ignore[index]
            "val_loss": val_loss,
            "lr": state.opt.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - t0, 3),
        }


# ---------------------------------------------------------------------------------------------
# The run
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
    amp_dtype = dist.resolve_precision(cfg.precision, device)
    per_step, meta = cfg.batch_size * ctx.world_size, meta or {}
    if len(train) < per_step:
        raise GigatokError(
            f"the train split has {len(train)} images, fewer than one batch ({cfg.batch_size} x {ctx.world_size} processes)",
            hint=f"pass --batch-size {max(1, len(train) // ctx.world_size)} or less, or add images",
        )
    output = Path(output)
    lr = cfg.lr if cfg.lr is not None else scaled_lr(cfg.blr, per_step)
    settings = _run_settings(extractor, train, val, cfg, meta, lr=lr, world=ctx.world_size)
    # A start that fails before the first epoch's checkpoint leaves the folder as it found it.
    started = (output / CHECKPOINTS / "latest").exists
    with probe_folder(output).released_on_failed_start(started=started, is_main=ctx.is_main):
        ckpt = _prepare_run_dir(output, settings, ctx, overwrite=overwrite)
        start = int(ckpt.state["epoch"]) if ckpt is not None else 0
        extractor.to(device)
        state = _HeadState.create(extractor.dim, len(train.classes), cfg, lr, device, amp_dtype, ckpt)
        history = _history(output, start)
        feats = None
        if cfg.cache_features and start < cfg.epochs:
            feats = cached_splits(
                extractor,
                train,
                val,
                Path(cfg.cache_dir or output / "features"),
                fingerprint={
                    "features": settings["features"],
                    "meta": meta,
                    "precision": cfg.precision,
                    "image_size": extractor.image_size,
                },
                draws=cfg.cache_draws,
                seed=cfg.seed,
                batch_size=cfg.batch_size,
                device=device,
                amp_dtype=amp_dtype,
                workers=cfg.workers,
                ctx=ctx,
                on_progress=on_progress,
            )
        epochs = _Epochs(extractor, train, val, cfg, lr, device, amp_dtype, ctx, state, feats)
        # The epoch seeds the global RNG (the backbone's dropout), so a resumed epoch draws the same
        # noise; the caller's RNG state is restored afterwards.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for epoch in range(start, cfg.epochs):
                row = epochs.run(epoch, on_progress)
                history.append(row)
                if ctx.is_main:  # metrics first: a kill between the two only repeats this epoch
                    write_text_atomic(
                        output / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history)
                    )
                    state.save(output, epoch + 1, settings)
                ctx.barrier()
                if on_epoch:
                    on_epoch(row)
    return _results(output, history, start, settings=settings, is_main=ctx.is_main)


def _results(
    output: Path, history: list[dict[str, Any]], start: int, *, settings: dict[str, Any], is_main: bool
) -> ProbeResult | None:
    """The run's result from its metrics lines; ``RUN_DIR/results.json`` written on the main rank."""
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
    if not is_main:
        return None
    summary = {k: v for k, v in result.to_dict().items() if k != "history"}
    extra = {k: settings[k] for k in ("lr", "features", "meta")}
    write_json(output / "results.json", {**summary, **extra})
    return result
