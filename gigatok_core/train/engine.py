"""The one training loop: single process, DDP or FSDP is a parameter, the model is a :class:`Task`.

A task (the GPT trainer, the tokenizer GAN trainer) builds its modules and optimizers in
:meth:`Task.setup`, names its checkpoint groups, and runs one optimizer step over a list of
micro-batches in :meth:`Task.train_step`, using the engine's helpers:
``engine.autocast()``, ``engine.accumulating(wrapped, last)`` (DDP ``no_sync`` / FSDP gradient sync),
``engine.backward(loss)`` (GradScaler for fp16), ``engine.check_finite(terms)`` (``--on-nan``) and
``engine.optimizer_step(opt, params, max_norm)`` (unscale, clip, step, zero).

The engine owns everything else: the global batch (``micro = batch / (world x accum)``), the data
order (:class:`~gigatok_core.dist.EpochSampler`, resumable mid-epoch at the exact sample), seeding
and per-rank RNG states, checkpoints (:func:`~gigatok_core.checkpoints.training.save_checkpoint`) and resume,
SIGTERM/SIGINT (checkpoint, then a return whose ``exit_code`` is 128 + the signal), logs (``metrics.jsonl``, TensorBoard, a callback
for the CLI's progress bar). nanoGPT's train.py is the model: one loop, torchrun detected, the main
rank logs and saves.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from gigatok_core.checkpoints.training import load_checkpoint, save_checkpoint
from gigatok_core.dist import EpochSampler, get_context, resolve_device, resolve_precision
from gigatok_core.errors import GigatokError
from gigatok_core.train import parallel
from gigatok_core.train.optim import clip_and_step
from gigatok_core.train.run_dir import MetricsLog, prepare_run_dir
from gigatok_core.train.state import LoopSettings, capture_rng, restore_rng, seed_everything

log = logging.getLogger("gigatok")
OnStep = Callable[[int, int, Mapping[str, float]], None]  # (step, max_steps, last logged record)
OnStart = Callable[[Mapping[str, Any], bool], None]  # (resolved config, resumed?)


class Task:
    """What a trainer plugs into :meth:`Engine.fit` (override the methods; defaults are no-ops)."""

    kind: str = "task"  # recorded in checkpoint meta ("gpt", "tokenizer", ...)
    tokens_per_sample: int = 0  # for tokens/s in the logs (0: not logged)
    num_workers: int = 0  # DataLoader workers
    collate_fn: Callable[[list[Any]], Any] | None = None

    def setup(self, engine: Engine) -> None:
        """Build modules (``engine.wrap`` them), optimizers and schedulers on ``engine.device``."""
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        raise NotImplementedError

    def weights(self) -> dict[str, nn.Module]:
        """Checkpoint weight groups (unwrapped modules), e.g. {"model": m, "ema": e}."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, nn.Module]]:
        """name -> (optimizer, the unwrapped module whose parameters it updates)."""
        raise NotImplementedError

    def schedulers(self) -> dict[str, Any]:
        return {}

    def train_step(self, engine: Engine, micro_batches: list[Any]) -> dict[str, Any]:
        """One optimizer step over ``micro_batches`` (on the device); returns scalar terms incl. "loss"."""
        raise NotImplementedError

    def validate(self, engine: Engine) -> dict[str, float]:
        return {}

    def sample(self, engine: Engine, folder: Path) -> None:
        return None

    def meta(self) -> dict[str, Any]:
        """Extra JSON facts for every checkpoint's meta (preset, tokenizer pairing, ...)."""
        return {}

    def lr_at(self, step: int, max_steps: int) -> float | None:
        """The learning rate of 0-based optimizer step ``step`` in a run of ``max_steps`` steps
        (None: the schedule does not depend on the run length). Checked on resume (:meth:`Engine.fit`)."""
        return None

    new_run_hint: str = ""  # how to start a new run from this one's weights (the schedule check's hint)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@dataclass
class FitResult:
    step: int
    run_dir: Path
    stopped: str | None = None  # "SIGTERM" / "SIGINT" when a signal ended the run early
    checkpoint: Path | None = None  # the run's latest checkpoint (also when it had already finished)
    last: dict[str, Any] = field(default_factory=dict)
    trained: int = 0  # optimizer steps run by this call (0: the run had already reached max_steps)

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal number when a signal stopped the run (the shell's convention)."""
        return 128 + signal.Signals[self.stopped].value if self.stopped else 0


class Engine:
    """Device, precision, distribution and the loop for one run (see the module docstring)."""

    def __init__(self, settings: LoopSettings) -> None:
        self.device = resolve_device(settings.device)
        self.ctx = get_context(self.device)
        self.settings = settings = parallel.resolve_compile(settings, self.ctx, self.device)
        self.micro_batch = settings.micro_batch(self.ctx.world_size)
        self.dtype = resolve_precision(settings.precision, self.device)
        parallel.check_strategy(settings, self.ctx, self.device)
        if self.device.type == "cuda":  # TF32 matmuls as the official trainers (docs/recipes.md#gpt)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=settings.precision == "fp16")
        self.step = 0  # completed optimizer steps
        self._stop: str | None = None
        self._resumed_from: Path | None = None

    # ----------------------------------------------------------------- helpers for tasks
    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def wrap(self, module: nn.Module, *, units: Any = ()) -> nn.Module:
        """Activation checkpointing on ``units``, then FSDP (each unit a shard unit) or DDP, then
        ``torch.compile``. Keep the unwrapped module for :meth:`Task.weights`."""
        return parallel.wrap(module, self.settings, self.ctx, self.device, self.dtype, units=units)

    def accumulating(self, wrapped: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        return parallel.accumulating(wrapped, last)

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()

    def check_finite(self, terms: Mapping[str, Tensor]) -> bool:
        """False (skip this update) or an error when a term is NaN/inf on any rank (``--on-nan``)."""
        names = list(terms)
        flags = [~torch.isfinite(torch.as_tensor(terms[k], device=self.device).detach()).all() for k in names]
        bad = self.ctx.all_reduce(torch.stack(flags).float(), "max").cpu()  # the step's one host sync
        if not bad.any():
            return True
        name = names[int(bad.nonzero()[0])]
        value = float(torch.as_tensor(terms[name]).detach().float().flatten()[0])
        if self.settings.on_nan == "stop":
            raise GigatokError(
                f"step {self.step + 1}: the loss term {name!r} is {value} (not finite); training stopped",
                hint="lower the learning rate, use --precision bf16/fp32, or --on-nan skip to skip such steps; "
                "the last checkpoint is intact and --resume auto continues from it",
            )
        log.warning(
            "step %d: the loss term %r is %s; the update is skipped (--on-nan skip)",
            self.step + 1,
            name,
            value,
        )
        return False

    def optimizer_step(self, optimizer: torch.optim.Optimizer, params: Any, max_norm: float | None) -> Tensor:
        """Unscale (fp16), clip to ``max_norm``, step, zero the gradients; returns the pre-clip
        gradient norm as a 0-d tensor on the device (read it when logging: no host sync per step)."""
        norm = clip_and_step(optimizer, params, max_norm, self.scaler)
        optimizer.zero_grad(set_to_none=True)
        return norm

    def to_device(self, obj: Any) -> Any:
        if isinstance(obj, Tensor):
            return obj.to(self.device, non_blocking=True)
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.to_device(x) for x in obj)
        if isinstance(obj, dict):
            return {k: self.to_device(v) for k, v in obj.items()}
        return obj

    # ----------------------------------------------------------------- checkpoints
    def save(self, task: Task, run_dir: Path, config: Mapping[str, Any], data: dict[str, int]) -> Path | None:
        """A checkpoint of everything (collective: every rank calls it); the folder on the main rank."""
        weights = {name: parallel.full_state_dict(m) for name, m in task.weights().items()}
        optim = {name: parallel.optim_state_dict(opt, m) for name, (opt, m) in task.optimizers().items()}
        rng = self.ctx.gather_objects(capture_rng())
        error, path = None, None
        if self.ctx.is_main:
            state = {
                "step": self.step,
                "data": dict(data),
                "optimizers": optim,
                "schedulers": {k: s.state_dict() for k, s in task.schedulers().items()},
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "task": task.state_dict(),
            }
            meta = {
                "step": self.step,
                "kind": task.kind,
                "config": dict(config),
                "world_size": self.ctx.world_size,
                "strategy": self.settings.strategy,
                "global_batch_size": self.settings.batch_size,
                "max_steps": self.settings.max_steps,  # the length the LR schedule was made for
                **task.meta(),
            }
            try:
                path = save_checkpoint(
                    run_dir / "checkpoints", weights=weights, state=state, meta=meta, keep=self.settings.keep
                )
            except GigatokError as err:
                error = (err.message, err.hint)
        error = self.ctx.broadcast_object(error)
        if error is not None:
            raise GigatokError(*error)
        return path

    def _resume(self, task: Task, run_dir: Path) -> dict[str, int] | None:
        try:
            ckpt = load_checkpoint(run_dir)
        except GigatokError:
            if not (run_dir / "checkpoints").exists():
                return None  # a run killed before its first checkpoint: start over
            raise
        if ckpt.meta.get("global_batch_size") != self.settings.batch_size:
            raise GigatokError(
                f"{run_dir} was trained with a global batch of {ckpt.meta.get('global_batch_size')}, "
                f"this run asks for {self.settings.batch_size}",
                hint="resume with the same --batch-size (the data position counts global samples)",
            )
        for name, module in task.weights().items():
            if name not in ckpt.weights:
                raise GigatokError(f"{ckpt.path} has no {name!r} weights", hint="resume with the same config")
            parallel.load_full_state_dict(module, ckpt.weights[name])
        for name, (opt, module) in task.optimizers().items():
            parallel.load_optim_state_dict(opt, module, ckpt.state["optimizers"][name])
        for name, sched in task.schedulers().items():
            sched.load_state_dict(ckpt.state["schedulers"][name])
        self.scaler.load_state_dict(ckpt.state["scaler"])
        task.load_state_dict(ckpt.state["task"])
        rng = ckpt.state["rng"]
        if len(rng) == self.ctx.world_size:
            restore_rng(rng[self.ctx.rank])
        else:  # another world size: same data order, fresh per-rank random streams
            seed_everything(self.settings.seed + ckpt.state["step"], self.ctx.rank, self.ctx.world_size)
            if self.ctx.is_main:
                log.info(
                    "resumed on %d processes (was %d): dropout streams are reseeded",
                    self.ctx.world_size,
                    len(rng),
                )
        self.step = int(ckpt.state["step"])
        self._resumed_from = ckpt.path
        if self.ctx.is_main:
            log.info("resuming from %s (step %d)", ckpt.path, self.step)
        return dict(ckpt.state["data"])

    # ----------------------------------------------------------------- the loop
    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: Any) -> None:
            self._stop = signal.Signals(signum).name
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _check_schedule(self, task: Task, run_dir: Path) -> None:
        """Refuse to resume with a ``max_steps`` whose LR schedule would send the learning rate back
        up after the run's had begun to decay (a raised ``--max-steps`` on a finished run). A longer
        or shorter run that continues downwards (cosine), or a WSD run extended in its constant
        phase, goes on: the schedule of the new length from the next step."""
        import json

        from gigatok_core.checkpoints.training import META_FILE, latest_checkpoint

        folder = latest_checkpoint(run_dir, quiet=True) if (run_dir / "checkpoints").is_dir() else None
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8")) if folder else {}
        except (OSError, ValueError):
            return  # unreadable: resuming falls back to an earlier checkpoint or says so
        old = meta.get("max_steps", (meta.get("config", {}).get("run") or {}).get("max_steps"))
        new, done = self.settings.max_steps, int(meta.get("step", 0))
        if not isinstance(old, int) or old == new or new <= done or done < 2:
            return
        # from step 1: the official loops run step 0 at the base LR, before the warmup's first value
        probes = sorted({*range(1, done, max(1, done // 2000)), done - 1} - {0})
        lrs = [task.lr_at(k, old) for k in probes]
        nxt = task.lr_at(done, new)
        if nxt is None or any(lr is None for lr in lrs):
            return
        peak, last = max(lrs), lrs[-1]  # type: ignore[type-var]
        if last < peak * (1 - 1e-9) and nxt > last * (1 + 1e-6):
            raise GigatokError(
                f"{run_dir} was trained {done} steps on a learning-rate schedule for {old} steps, which "
                f"had decayed the lr to {last:.3g}; --max-steps {new} would send it back up to {nxt:.3g} "
                f"at step {done + 1}",
                hint=f"continue with --max-steps {old} (this run's length), or start a new run of {new} "
                f"steps with --overwrite (removes this run) or another --output{task.new_run_hint}",
            )

    def _prepare(
        self, task: Task, run_dir: Path, config: Mapping[str, Any], resume: str, overwrite: bool
    ) -> bool:
        outcome: tuple[str, Any] = ("ok", False)
        if self.ctx.is_main:
            try:
                outcome = (
                    "ok",
                    prepare_run_dir(
                        run_dir,
                        config,
                        resume=resume,
                        overwrite=overwrite,
                        is_main=True,
                        check_resume=lambda: self._check_schedule(task, run_dir),
                    ),
                )
            except GigatokError as err:
                outcome = ("error", (err.message, err.hint))
        kind, value = self.ctx.broadcast_object(outcome)
        if kind == "error":
            raise GigatokError(*value)
        return bool(value)

    def fit(
        self,
        task: Task,
        run_dir: str | Path,
        config: Mapping[str, Any],
        *,
        resume: str = "auto",
        overwrite: bool = False,
        on_step: OnStep | None = None,
        on_start: OnStart | None = None,
    ) -> FitResult:
        """Train ``task`` for ``settings.max_steps`` optimizer steps, resuming from ``run_dir``.

        ``on_start(config, resumed)`` and ``on_step(step, max_steps, last record)`` run on the main
        rank (the CLI prints the config and draws its progress bar with them).
        """
        s, ctx, run_dir = self.settings, self.ctx, Path(run_dir)
        has_run = self._prepare(task, run_dir, config, resume, overwrite)
        seed_everything(s.seed, ctx.rank, ctx.world_size)
        task.setup(self)
        dataset = task.train_dataset()
        steps_per_epoch = len(dataset) // s.batch_size
        if steps_per_epoch == 0:
            raise GigatokError(
                f"the training set holds {len(dataset)} samples, fewer than one global batch of {s.batch_size}",
                hint="use a smaller --batch-size or more data",
            )
        data = (self._resume(task, run_dir) if has_run else None) or {"epoch": 0, "position": 0}
        if ctx.is_main and on_start is not None:
            on_start(config, self.step > 0)
        metrics = MetricsLog(run_dir, enabled=ctx.is_main)
        metrics.truncate(self.step)
        metrics.open(self.step)
        sampler = EpochSampler(len(dataset), seed=s.seed, rank=ctx.rank, world_size=ctx.world_size)
        loader = DataLoader(
            dataset,
            batch_size=self.micro_batch,
            sampler=sampler,
            num_workers=task.num_workers,
            collate_fn=task.collate_fn,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(s.seed),  # workers' seeds: not from the global RNG
        )
        result = FitResult(step=self.step, run_dir=run_dir, checkpoint=self._resumed_from)
        first_step = self.step
        last_saved = self.step if has_run else -1
        tick, ticks = time.perf_counter(), 0
        with self._signals():
            try:
                while self.step < s.max_steps and result.stopped is None:
                    sampler.set_epoch(data["epoch"], start=data["position"])
                    if hasattr(dataset, "set_epoch"):
                        dataset.set_epoch(data["epoch"])
                    batches = iter(loader)
                    for _ in range(steps_per_epoch - data["position"] // s.batch_size):
                        micro = [self.to_device(next(batches)) for _ in range(s.grad_accum)]
                        terms = task.train_step(self, micro)
                        self.step += 1
                        ticks += 1
                        data["position"] += s.batch_size
                        if data["position"] // s.batch_size == steps_per_epoch:
                            data = {"epoch": data["epoch"] + 1, "position": 0}
                        record: dict[str, Any] = {}
                        if self.step % s.log_every == 0 or self.step == s.max_steps:
                            elapsed = time.perf_counter() - tick
                            record = self._reduce(terms)
                            record["samples_per_s"] = ticks * s.batch_size / max(elapsed, 1e-9)
                            if task.tokens_per_sample:
                                record["tokens_per_s"] = record["samples_per_s"] * task.tokens_per_sample
                            record["epoch"] = data["epoch"]
                            tick, ticks = time.perf_counter(), 0
                        if s.val_every and self.step % s.val_every == 0:
                            with self._side_rng():
                                record.update(task.validate(self))
                        if record:
                            metrics.write({"step": self.step, **record})
                            result.last = {"step": self.step, **record}
                        if s.sample_every and self.step % s.sample_every == 0:
                            with self._side_rng():
                                task.sample(self, run_dir / "samples")
                        if self._stop_requested():
                            result.stopped = self._stop or "SIGTERM"
                        if self.step % s.save_every == 0 or self.step == s.max_steps or result.stopped:
                            result.checkpoint = self.save(task, run_dir, config, data)
                            last_saved = self.step
                        if ctx.is_main and on_step is not None:
                            on_step(self.step, s.max_steps, result.last)
                        if self.step >= s.max_steps or result.stopped:
                            break
                if last_saved != self.step:  # e.g. max_steps already reached on resume
                    result.checkpoint = self.save(task, run_dir, config, data)
            finally:
                metrics.close()
        result.step = self.step
        result.trained = self.step - first_step
        return result

    def _stop_requested(self) -> bool:
        """A signal reached this rank or another one (one tiny all-reduce; none on one process)."""
        if not self.ctx.distributed:
            return self._stop is not None
        stop = torch.tensor([float(self._stop is not None)], device=self.device)
        return self.ctx.all_reduce(stop, "max").item() > 0

    @contextlib.contextmanager
    def _side_rng(self) -> Iterator[None]:
        """Validation and sampling draw from their own seeded stream: the training RNG is untouched."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.settings.seed * 7919 + self.step)
            yield

    def _reduce(self, terms: Mapping[str, Any]) -> dict[str, float]:
        """Scalar terms averaged over ranks (one all-reduce)."""
        keys = [k for k, v in terms.items() if isinstance(v, (Tensor, int, float))]
        values = torch.stack(
            [torch.as_tensor(terms[k], device=self.device).detach().double().reshape(()) for k in keys]
        )
        values = self.ctx.all_reduce(values, "mean").cpu()  # one host sync per logged step
        return dict(zip(keys, values.tolist(), strict=True))
