"""Class-conditional GPT training on pre-extracted codes: the official recipe (docs/recipes.md#gpt) as a Task.

- Loss: cross-entropy over all T positions; inputs = class + tokens[:T-1], targets = tokens[:T].
  Class dropout (null class), token/residual/FFN dropout come from the model config (docs/ar.md#architecture).
- AdamW (0.9, 0.95), weight decay on tensors with >= 2 dims only (:func:`param_groups`), clipping,
  the WSD schedule (:func:`wsd_factor`), optional EMA, autocast in bf16/fp16 (GradScaler for fp16).
- One stored crop drawn per sample per epoch (``CodesDataset(crop="random")``).
- Validation loss on held-out codes (``val_codes`` or a held-out fraction), a PNG grid of a few fixed
  classes every ``sample_every`` steps, decoded through the tokenizer that made the codes.
- Every checkpoint records the tokenizer pairing (``meta["tokenizer"]``), so sampling and evaluation
  find the tokenizer of a run folder with no further flags.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gigatok_core.ar.loss import token_loss, token_losses
from gigatok_core.errors import GigatokError
from gigatok_core.train.engine import Engine, FitResult, OnStart, OnStep, Task
from gigatok_core.train.optim import adamw, ema_update
from gigatok_core.train.run_dir import released_on_failed_start
from gigatok_core.train.state import LoopSettings
from gigatok_core.weights import relative_to

SAMPLE_CLASSES = 4  # classes in the training sample grid, evenly spread over the label range
SAMPLES_PER_CLASS = 2


# ---------------------------------------------------------------------------------------------
# The recipe's pieces
# ---------------------------------------------------------------------------------------------
def wsd_factor(step: int, *, total: int, warmup: int, fract_decay: float) -> float:
    """WSD learning-rate factor at 0-based ``step`` (docs/recipes.md#gpt; Hägele et al. 2024,
    https://arxiv.org/abs/2405.18392): linear warmup from 1/100, constant, then the last
    ``fract_decay`` of ``total`` decays as ``1 - sqrt(progress)`` to 0."""
    n_decay = int(fract_decay * total)
    n_hold = total - n_decay
    if step < warmup:
        return step / warmup + (1 - step / warmup) / 100
    if step < n_hold:
        return 1.0
    if step < total:
        return 1.0 - math.sqrt((step - n_hold) / n_decay)
    return 0.0


def official_lr_lambda(*, total: int, warmup: int, fract_decay: float) -> Callable[[int], float]:
    """Factor for optimizer step ``k`` (0-based) as the official loop applies it: the scheduler is
    stepped after each update with the pre-increment count, so step 0 runs at the base lr and step
    k >= 1 at ``wsd_factor(k - 1)`` (docs/recipes.md#gpt)."""

    def factor(k: int) -> float:
        return 1.0 if k == 0 else wsd_factor(k - 1, total=total, warmup=warmup, fract_decay=fract_decay)

    return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The official split (docs/recipes.md#gpt): decay on every tensor with ndim >= 2 (matrices, embeddings,
    positional embedding), none on 1-D tensors (norm weights)."""
    params = [p for _, p in sorted(model.named_parameters()) if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * model over every parameter (the official update), as one
    multi-tensor lerp where the device has it. Under FSDP2 the EMA keeps whole tensors on every
    rank, so each shard is gathered (one collective per parameter, as the official FSDP EMA)."""
    live = dict(model.named_parameters())
    names = [name for name, _ in ema.named_parameters()]
    srcs = [live[name].detach() for name in names]
    srcs = [s.full_tensor() if hasattr(s, "full_tensor") else s for s in srcs]
    ema_update([p for _, p in ema.named_parameters()], srcs, decay)


def check_codes_fit(manifest: Any, model_cfg: Any, *, preset: str | None) -> None:
    """Refuse codes from a tokenizer whose vocabulary or token count does not fit the GPT."""
    tok = manifest.tokenizer
    name = tok.preset or tok.checkpoint or "an unnamed tokenizer"
    what = f"GPT preset {preset}" if preset else "this GPT config"
    hint = "extract codes with the matching tokenizer, or pick a GPT preset/overrides (model.vocab_size, model.block_size) that fit"
    if tok.codebook_size != model_cfg.vocab_size:
        raise GigatokError(
            f"{manifest.root} holds codes of tokenizer {name} (codebook {tok.codebook_size}); "
            f"{what} predicts {model_cfg.vocab_size} token ids",
            hint=hint,
        )
    if tok.num_tokens != model_cfg.block_size:
        raise GigatokError(
            f"{manifest.root} holds {tok.num_tokens} tokens per image; {what} models {model_cfg.block_size}",
            hint=hint,
        )
    if manifest.num_classes > model_cfg.num_classes:
        raise GigatokError(
            f"{manifest.root} has {manifest.num_classes} classes; {what} has {model_cfg.num_classes}",
            hint="set model.num_classes to at least the number of classes",
        )


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------
class GPTTask(Task):
    """The official GPT recipe on a codes folder (see the module docstring)."""

    kind = "gpt"

    def __init__(self, cfg: Any, train_set: Any, *, val_set: Any = None, manifest: Any = None) -> None:
        """``cfg``: a resolved ``GPTTrainConfig``; datasets give ``(codes (T,), label)``; ``manifest``
        (of the training codes) names the tokenizer for sample grids and checkpoint meta."""
        self.cfg = cfg
        self.train_set, self.val_set, self.manifest = train_set, val_set, manifest
        self.tokens_per_sample = cfg.model.block_size
        self.tokenizer: nn.Module | None = None
        self.run_dir: Path | None = None  # set by train_gpt: the base of recorded relative paths

    @classmethod
    def from_codes(
        cls,
        cfg: Any,
        codes: str | Path,
        *,
        val_codes: str | Path | None = None,
        val_fraction: float | None = None,
    ) -> GPTTask:
        """The task on a codes folder, checked against the GPT config; validation on ``val_codes``
        or a held-out ``val_fraction`` of ``codes``."""
        from gigatok_core.data.codes import CodesDataset, holdout_split
        from gigatok_core.data.codes_format import read_manifest

        manifest = read_manifest(codes)
        check_codes_fit(manifest, cfg.model, preset=cfg.preset)
        train_idx, val_idx = None, None
        if val_codes is None and val_fraction:
            train_idx, val_idx = holdout_split(manifest.num_images, val_fraction, seed=cfg.run.seed)
        train_set = CodesDataset(codes, indices=train_idx, crop="random", seed=cfg.run.seed)
        val_set = None
        if val_codes is not None:
            val_manifest = read_manifest(val_codes)
            if not val_manifest.tokenizer.same_source(manifest.tokenizer):
                raise GigatokError(
                    f"--val-codes {val_codes} was extracted with another tokenizer than {codes}",
                    hint="extract both folders with the same tokenizer",
                )
            val_set = CodesDataset(val_codes, crop=cls._centre_crop(val_manifest.crops))
        elif val_idx is not None:
            val_set = CodesDataset(codes, indices=val_idx, crop=cls._centre_crop(manifest.crops))
        return cls(cfg, train_set, val_set=val_set, manifest=manifest)

    @staticmethod
    def _centre_crop(crops: int) -> int:
        """The stored centre crop: index 4 of torchvision's TenCrop order, else the first (docs/recipes.md#gpt)."""
        return 4 if crops == 10 else 0

    # ------------------------------------------------------------------ Task interface
    def setup(self, engine: Engine) -> None:
        from gigatok_core.ar.load import build_gpt

        cfg, recipe = self.cfg, self.cfg.recipe
        self.num_workers = 2 if engine.device.type == "cuda" else 0  # mmap reads; workers keep a GPU fed
        self.model = build_gpt(cfg.model, device=engine.device).train()
        self.ema = None
        if cfg.ema:
            self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.wrapped = engine.wrap(self.model, units=self.model.layers)
        self.opt = adamw(param_groups(self.model, recipe.weight_decay), lr=cfg.lr, betas=tuple(recipe.betas))
        lam = official_lr_lambda(total=cfg.total_steps, warmup=recipe.warmup, fract_decay=recipe.fract_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lam)
        if engine.settings.sample_every and engine.ctx.is_main and self.manifest is not None:
            self.tokenizer = self._load_tokenizer(engine.device)  # fail before training, not at step N

    def train_dataset(self) -> Any:
        return self.train_set

    def weights(self) -> dict[str, nn.Module]:
        return {"model": self.model, **({"ema": self.ema} if self.ema is not None else {})}

    def optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, nn.Module]]:
        return {"model": (self.opt, self.model)}

    def schedulers(self) -> dict[str, Any]:
        return {"model": self.sched}

    def lr_at(self, step: int, max_steps: int) -> float:
        recipe = self.cfg.recipe
        return self.cfg.lr * official_lr_lambda(
            total=max_steps, warmup=recipe.warmup, fract_decay=recipe.fract_decay
        )(step)

    def meta(self) -> dict[str, Any]:
        """The preset, the tokenizer the codes came from (its checkpoint's path also relative to the
        run folder, for a moved tree) and the class names the labels stand for."""
        if self.manifest is None:
            return {"preset": self.cfg.preset, "tokenizer": None}
        tokenizer = self.manifest.tokenizer.to_dict()
        if tokenizer.get("checkpoint") and self.run_dir is not None:
            tokenizer["checkpoint_relative"] = relative_to(tokenizer["checkpoint"], self.run_dir)
        return {"preset": self.cfg.preset, "tokenizer": tokenizer, "classes": list(self.manifest.classes)}

    def train_step(self, engine: Engine, micro_batches: list[Any]) -> dict[str, Any]:
        total = torch.zeros((), device=engine.device)
        lr = self.opt.param_groups[0]["lr"]
        for i, (codes, labels) in enumerate(micro_batches):  # codes (b, T), labels (b,)
            with engine.accumulating(self.wrapped, last=i == len(micro_batches) - 1), engine.autocast():
                loss = token_loss(self.wrapped, labels, codes)  # class + T-1 tokens in, T predicted
            engine.backward(loss / len(micro_batches))
            total += loss.detach() / len(micro_batches)
        if not engine.check_finite({"loss": total}):
            self.opt.zero_grad(set_to_none=True)
            self.sched.step()  # the step still counts, as the official loop's schedule does
            return {"loss": total, "lr": lr, "skipped": 1}
        norm = engine.optimizer_step(self.opt, self.model.parameters(), self.cfg.recipe.max_grad_norm)
        self.sched.step()
        if self.ema is not None:
            update_ema(self.ema, self.model, self.cfg.recipe.ema_decay)
        return {"loss": total, "lr": lr, "grad_norm": norm}

    @torch.no_grad()
    def validate(self, engine: Engine) -> dict[str, float]:
        """Mean CE per token over the held-out codes, dropout off (docs/recipes.md#validation-loss).
        Every rank runs the same number of batches (FSDP needs it); extra ones count zero."""
        if self.val_set is None:
            return {}
        ctx, mb = engine.ctx, engine.micro_batch
        n_batches = math.ceil(len(self.val_set) / mb)
        sums = torch.zeros(2, dtype=torch.float64, device=engine.device)  # (CE sum, token count)
        self.model.eval()
        try:
            for b in range(ctx.rank, math.ceil(n_batches / ctx.world_size) * ctx.world_size, ctx.world_size):
                real = b < n_batches
                rows = range(b * mb, min((b + 1) * mb, len(self.val_set))) if real else range(1)
                codes, labels = (torch.stack(x) for x in zip(*(self._val_item(i) for i in rows), strict=True))
                codes, labels = engine.to_device(codes), engine.to_device(labels)
                with engine.autocast():
                    ce = token_losses(self.model, labels, codes).sum()
                if real:
                    sums += torch.stack([ce.double(), torch.tensor(codes.numel(), device=ce.device).double()])
        finally:
            self.model.train()
        sums = ctx.all_reduce(sums, "sum")
        return {"val_loss": float(sums[0] / sums[1])}

    def _val_item(self, i: int) -> tuple[Tensor, Tensor]:
        codes, label = self.val_set[i]  # type: ignore[index]
        return codes, torch.tensor(label)

    @torch.no_grad()
    def sample(self, engine: Engine, folder: Path) -> None:
        """A PNG grid: a few fixed classes, ``SAMPLES_PER_CLASS`` each, EMA weights when kept."""
        from gigatok_core.ar.generate import Drawer, generate, sample_generators
        from gigatok_core.ar.guidance import CFGSchedule
        from gigatok_core.data.images import Tile, contact_sheet, save_png
        from gigatok_core.tasks.sample import decode_fixed_batches

        if self.manifest is None:
            return  # no tokenizer to decode with
        n_cls = max(1, self.manifest.num_classes)
        classes = sorted({round(i * (n_cls - 1) / max(1, SAMPLE_CLASSES - 1)) for i in range(SAMPLE_CLASSES)})
        labels = [c for c in classes for _ in range(SAMPLES_PER_CLASS)]
        index = [k for _ in classes for k in range(SAMPLES_PER_CLASS)]
        model = self.ema if self.ema is not None else self.model
        model.eval()
        try:
            drawer = Drawer("per-sample", generators=sample_generators(self.cfg.run.seed, labels, index))
            with engine.autocast():
                codes = generate(model, torch.tensor(labels, device=engine.device), drawer, cfg=CFGSchedule())
        finally:
            self.model.train()
        if self.tokenizer is None:
            return  # not the main rank: it generated only to keep sharded (FSDP) forwards in step
        pixels = decode_fixed_batches(self.tokenizer, codes.to(engine.device))  # (N, H, W, 3) uint8
        names = self.manifest.classes
        rows = [
            [
                Tile(pixels[r * SAMPLES_PER_CLASS + k], names[c] if c < len(names) else str(c))
                for k in range(SAMPLES_PER_CLASS)
            ]
            for r, c in enumerate(classes)
        ]
        save_png(Path(folder) / f"step-{engine.step:08d}.png", contact_sheet(rows))

    def _load_tokenizer(self, device: torch.device) -> nn.Module:
        from gigatok_core.tokenizer import load_tokenizer

        tok = self.manifest.tokenizer
        if tok.preset is None and tok.checkpoint is None:
            raise GigatokError(
                f"{self.manifest.root} does not name its tokenizer, so samples cannot be decoded",
                hint="drop --sample-every, or extract the codes with gigatok (it records the tokenizer)",
            )
        ckpt = tok.locate(self.manifest.root)  # from any working directory, checked by its hash
        return load_tokenizer(tok.preset or str(ckpt), checkpoint=ckpt, device=device)


# ---------------------------------------------------------------------------------------------
# The entry point of `gigatok train gpt`
# ---------------------------------------------------------------------------------------------
def prefetch_gpt_training(cfg: Any, codes: str | Path, *, val_codes: str | Path | None = None) -> list[Path]:
    """Check the codes against the GPT config and fetch what the run will read from the cache (the
    tokenizer weights its sample grids decode with): run once in the launcher's parent process, so
    workers start with a filled cache and bad input is reported once."""
    from gigatok_core.data.codes_format import read_manifest
    from gigatok_core.registry import tokenizer_names, tokenizer_preset
    from gigatok_core.weights import fetch_weights

    manifest = read_manifest(codes)
    check_codes_fit(manifest, cfg.model, preset=cfg.preset)
    if val_codes is not None:
        read_manifest(val_codes)
    tok = manifest.tokenizer
    if not cfg.run.sample_every or tok.checkpoint or tok.preset not in tokenizer_names():
        return []
    weights = tokenizer_preset(tok.preset).weights
    return [fetch_weights(weights)] if weights else []


def train_gpt(
    cfg: Any,
    *,
    codes: str | Path,
    output: str | Path,
    val_codes: str | Path | None = None,
    val_fraction: float | None = None,
    resume: str = "auto",
    overwrite: bool = False,
    on_step: OnStep | None = None,
    on_start: OnStart | None = None,
) -> FitResult:
    """Train a GPT (``cfg``: a resolved ``GPTTrainConfig``) on ``codes`` into the run folder ``output``."""
    settings = LoopSettings.from_train_config(cfg)
    task = GPTTask.from_codes(cfg, codes, val_codes=val_codes, val_fraction=val_fraction)
    data = {
        "codes": str(Path(codes).resolve()),
        "val_codes": str(Path(val_codes).resolve()) if val_codes else None,
        "val_fraction": val_fraction,
        "tokenizer": task.manifest.tokenizer.to_dict(),
    }
    task.run_dir = Path(output).resolve()
    engine = Engine(settings)
    config = cfg.to_dict(data)
    with released_on_failed_start(output):
        return engine.fit(
            task, output, config, resume=resume, overwrite=overwrite, on_step=on_step, on_start=on_start
        )
