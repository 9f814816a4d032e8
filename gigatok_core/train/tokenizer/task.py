"""Tokenizer training as a task of the shared engine (``gigatok train tokenizer``).

The engine owns the loop (global batch, data order, resume, checkpoints, signals, logs); this task
builds the recipe's pieces on the engine's device and runs :class:`TokenizerTrainer` stages in
:meth:`TokenizerTask.train_step`. Data: an ImageFolder tree or a flat folder with the official
augmentation (docs/recipes.md#loop-and-data); unreadable images are named once and skipped.

Checkpoint groups: ``model``, ``ema`` (with EMA), ``disc``; optimizers ``model`` and ``disc``. The
LR is a pure function of the step (docs/recipes.md#details-pinned-by-the-training-fixture), so there is no scheduler state.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from gigatok_core.errors import GigatokError
from gigatok_core.train.engine import Engine, FitResult, OnStart, OnStep, Task
from gigatok_core.train.run_dir import released_on_failed_start
from gigatok_core.train.state import LoopSettings
from gigatok_core.train.tokenizer.loss import LossSettings, VQLoss
from gigatok_core.train.tokenizer.optim import EMA
from gigatok_core.train.tokenizer.trainer import OptimSettings, TokenizerTrainer

log = logging.getLogger("gigatok")
SAMPLE_IMAGES = 4  # images in the original | reconstruction grid
FROZEN_FILES = {  # role -> (registry entry, command-line option that takes a local file)
    "teacher": ("dinov2_vitb14_pretrain.pth", "--teacher-weights FILE"),
    "dino": ("dino_deitsmall16_pretrain.pth", "--dino-weights FILE"),
    "vgg": ("vgg16-397923af.pth", "--vgg-weights FILE"),
}


# ---------------------------------------------------------------------------------------------
# Frozen networks and initial weights
# ---------------------------------------------------------------------------------------------
def uses_teacher(recipe: Any) -> bool:
    return bool(recipe.distill_loss) and recipe.proj_weight > 0


def needed_frozen(recipe: Any) -> list[str]:
    """The frozen networks this recipe runs (teacher, dino, vgg)."""
    roles = []
    if uses_teacher(recipe):
        roles.append("teacher")
    if recipe.disc_type == "dinodisc":
        roles.append("dino")
    if recipe.perceptual_weight > 0:
        roles.append("vgg")
    return roles


def resolve_frozen(
    recipe: Any, given: Mapping[str, str | Path | None] | None = None, *, preset: str | None = None
) -> dict[str, Path | None]:
    """Local files of the frozen networks: the given ones, else the download cache (fetched now,
    so a launcher's parent fetches them before any worker starts). A random-weights preset
    (``tiny``: smoke runs) gets seeded random networks instead (None), offline, said loudly."""
    from gigatok_core.hub import fetch_weights
    from gigatok_core.tokenizer.load import RANDOM_OK

    given = given or {}
    out: dict[str, Path | None] = {}
    for role in needed_frozen(recipe):
        if given.get(role):
            path = Path(given[role])
            if not path.is_file():
                raise GigatokError(f"{FROZEN_FILES[role][1].split()[0]} {path} does not exist")
            out[role] = path
        elif preset in RANDOM_OK:
            out[role] = None
        else:
            entry, option = FROZEN_FILES[role]
            out[role] = fetch_weights(entry, or_option=option)
    random = [role for role, path in out.items() if path is None]
    if random:
        log.warning(
            "smoke run: %s trains against seeded RANDOM frozen networks (%s), offline; the %s "
            "losses mean nothing. Real ones: %s",
            preset,
            ", ".join(FROZEN_NAMES[r] for r in random),
            " and ".join(FROZEN_LOSSES[r] for r in random),
            ", ".join(FROZEN_FILES[r][1] for r in random),
        )
    return out


FROZEN_NAMES = {"teacher": "DINOv2 teacher", "dino": "DINO discriminator backbone", "vgg": "VGG16 of LPIPS"}
FROZEN_LOSSES = {"teacher": "semantic", "dino": "DINO-discriminator", "vgg": "perceptual"}


def fit_teacher_width(cfg: Any, teacher: Path | None) -> Any:
    """``cfg`` with the distillation projection as wide as the teacher file's tokens (a real
    DINOv2 ViT-B/14 is 768 wide, the ``tiny`` preset's projection 32): checked before any work,
    so a run never fails at its first step on a width mismatch."""
    from gigatok_core.train.tokenizer.frozen import teacher_width

    if teacher is None:
        return cfg
    width = teacher_width(teacher)
    if width == cfg.model.distill_dim:
        return cfg
    log.info(
        "model.distill_dim follows the teacher %s: %d (the %s preset says %d)",
        teacher, width, cfg.preset, cfg.model.distill_dim,
    )  # fmt: skip
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, distill_dim=width))


def read_init_weights(init: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """State dict of ``--init``: a tokenizer preset (its released weights), or anything the weights
    resolver takes (:func:`gigatok_core.weights.resolve_weights`: a file, a run or export folder,
    EMA preferred, a hub id)."""
    from gigatok_core.checkpoints.files import extract_state_dict, read_checkpoint
    from gigatok_core.registry import tokenizer_names, tokenizer_preset
    from gigatok_core.weights import resolve_weights

    text = str(init)
    if text in tokenizer_names() and not Path(text).exists():
        preset = tokenizer_preset(text)
        if preset.weights is None:
            raise GigatokError(f"tokenizer preset {text!r} has no released weights to start from")
        from gigatok_core.hub import fetch_weights

        path = fetch_weights(preset.weights, or_option="--init FILE")
    else:
        path = resolve_weights(init, "--init", kind="tokenizer")
    sd, _ = extract_state_dict(read_checkpoint(path), source=str(path))
    return sd, str(path)


def load_init(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Load strictly, except the training-only distill head and usage buffer, which may be absent
    (an exported inference file) or extra (the model was built without the head)."""
    optional = ("distill_mlp.", "codebook_used")
    result = model.load_state_dict(dict(sd), strict=False)
    missing = [k for k in result.missing_keys if not any(o in k for o in optional)]
    extra = [k for k in result.unexpected_keys if "distill_mlp." not in k]
    if missing or extra:
        raise GigatokError(
            f"--init {source} does not fit this tokenizer (missing {missing[:3]}, unexpected {extra[:3]})",
            hint="start from weights of the same preset, or drop --init",
        )


def training_images(cfg: Any, data: str | Path) -> Dataset:
    """The training images of ``data`` with the official augmentation, each sample's draws from
    (run.seed, epoch, index); refused when no image of the folder can be read."""
    from gigatok_core.data.folder import ImageFolderDataset, require_readable
    from gigatok_core.data.transforms import TrainAugment

    images = ImageFolderDataset(data, transform=TrainAugment(cfg.model.image_size), seed=cfg.run.seed)
    require_readable(images, command="train tokenizer")
    return images


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------
class TokenizerTask(Task):
    kind = "tokenizer"

    def __init__(
        self,
        cfg: Any,
        *,
        data: str | Path | Dataset,
        frozen: Mapping[str, Path | None],
        init: str | Path | None = None,
        num_workers: int | None = 0,
    ) -> None:
        """``data``: a folder, or the dataset :func:`training_images` made of it."""
        from gigatok_core.data.folder import collate_skip

        self.cfg, self.frozen, self.init = cfg, dict(frozen), init
        if cfg.recipe.lecam_weight > 0:
            raise GigatokError(
                "recipe.lecam_weight > 0 (LeCam regularization) is not implemented",
                hint="set recipe.lecam_weight=0 (every official preset has it off)",
            )
        self.train_set = data if isinstance(data, Dataset) else training_images(cfg, data)
        self.collate_fn = collate_skip
        from gigatok_core.data.folder import default_workers

        self.num_workers = default_workers() if num_workers is None else num_workers
        self.tokens_per_sample = 0
        self._named_unreadable: set[str] = set()

    def setup(self, engine: Engine) -> None:
        from gigatok_core.tasks.image_metrics import build_lpips
        from gigatok_core.tokenizer import build_tokenizer, init_weights

        cfg, recipe, dev = self.cfg, self.cfg.recipe, engine.device
        model = build_tokenizer(cfg.model, with_distill=uses_teacher(recipe), device=dev)
        init_weights(model)  # the official init, from the engine's seeded RNG
        if self.init is not None:
            sd, source = read_init_weights(self.init)
            load_init(model, sd, source)
        self.model = model.train()
        ema = EMA(model, recipe.ema_decay) if cfg.ema else None  # whole tensors, before any sharding
        layers = [*model.vit_encoder.transformer, *model.vit_decoder.transformer]
        wrapped = engine.wrap(model, units=layers)
        lpips = None
        if "vgg" in self.frozen:  # None: a seeded random VGG16 (smoke runs of a random preset)
            lpips = build_lpips(self.frozen["vgg"], device=dev, random=self.frozen["vgg"] is None)
        self.disc = self._build_disc(dev)
        disc_forward = self.disc
        if engine.ctx.distributed:  # the discriminator stays under DDP, also with FSDP (docs/recipes.md#fsdp)
            from torch.nn.parallel import DistributedDataParallel

            ids = [dev.index] if dev.type == "cuda" else None
            disc_forward = DistributedDataParallel(self.disc, device_ids=ids)
        teacher = None
        if "teacher" in self.frozen:
            from gigatok_core.train.tokenizer.frozen import load_teacher, random_teacher

            path, grid = self.frozen["teacher"], cfg.model.grid_size
            teacher = (
                random_teacher(cfg.model.distill_dim, grid=grid, device=dev)
                if path is None
                else load_teacher(path, grid=grid, device=dev)
            )
        optim = OptimSettings(
            lr=cfg.lr,
            end_lr=recipe.end_lr,
            warmup=recipe.warmup,
            total_steps=cfg.total_steps,
            betas=tuple(recipe.betas),
            weight_decay=recipe.weight_decay,
            max_grad_norm=recipe.max_grad_norm,
            disc_max_grad_norm=recipe.disc_max_grad_norm,
            # the FSDP trainer's groups (docs/recipes.md#loop-and-data)
            split_norm_decay=cfg.strategy == "fsdp",
            ema_decay=None,  # the EMA below
            precision=engine.settings.precision,
        )
        loss = VQLoss(LossSettings.from_recipe(recipe), lpips=lpips, discriminator=self.disc)
        self.trainer = TokenizerTrainer(
            model,
            loss,
            teacher,
            optim,
            forward_model=wrapped,
            disc_forward=disc_forward,
            scaler=engine.scaler,
            autocast=engine.autocast,
            accumulating=engine.accumulating,
            ema=ema,
        )

    def _build_disc(self, device: torch.device) -> nn.Module:
        recipe = self.cfg.recipe
        if recipe.disc_type == "dinodisc":
            from gigatok_core.train.tokenizer.dinodisc import DinoDiscriminator
            from gigatok_core.train.tokenizer.frozen import load_dino_backbone, random_dino_backbone

            path = self.frozen["dino"]
            backbone = (
                random_dino_backbone(device=device)
                if path is None
                else load_dino_backbone(path, device=device)
            )
            return DinoDiscriminator(backbone).to(device)
        from gigatok_core.train.tokenizer.patchgan import PatchGAN

        disc = PatchGAN(ndf=recipe.disc_dim, n_layers=recipe.disc_num_layers, kernel=recipe.disc_kw)
        return disc.to(device)

    def train_dataset(self) -> Any:
        return self.train_set

    def weights(self) -> dict[str, nn.Module]:
        ema = self.trainer.ema
        return {"model": self.model, **({"ema": ema.model} if ema is not None else {}), "disc": self.disc}

    def optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, nn.Module]]:
        out = {"model": (self.trainer.opt, self.model)}
        if self.trainer.opt_d is not None:
            out["disc"] = (self.trainer.opt_d, self.disc)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"scaler_d": self.trainer.scaler_d.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.scaler_d.load_state_dict(state["scaler_d"])

    def meta(self) -> dict[str, Any]:
        return {"preset": self.cfg.preset, "model_config": dataclasses.asdict(self.cfg.model)}

    new_run_hint = " (--init RUN_DIR starts the new run from this one's weights)"

    def lr_at(self, step: int, max_steps: int) -> float:
        from gigatok_core.train.tokenizer.schedule import OfficialLR

        r = self.cfg.recipe
        return OfficialLR(self.cfg.lr, r.end_lr, r.warmup, max_steps, r.disc_start).generator(step)

    def _images(self, engine: Engine, micro_batches: list[Any]) -> tuple[list[torch.Tensor], list[Any]]:
        """The micro-batches' images on the device, and per micro-batch its samples' keys (None
        for a dataset without seed); unreadable images named once."""
        out, keys = [], []
        for batch in micro_batches:
            for bad in batch.skipped:
                if bad.path not in self._named_unreadable:
                    self._named_unreadable.add(bad.path)
                    log.warning("skipping an image: %s", bad.reason)  # the reason names the file
            if batch.images.numel():
                out.append(batch.images.to(engine.device, non_blocking=True))
                keys.append(getattr(batch, "keys", None))
        return out, keys

    def train_step(self, engine: Engine, micro_batches: list[Any]) -> dict[str, Any]:
        tr, t = self.trainer, engine.step
        images, keys = self._images(engine, micro_batches)
        if not images:
            return {"skipped": 1}  # every image of this step was unreadable
        metrics, cache = tr.generator_backward(t, images, keys)
        if not engine.check_finite(metrics):
            tr.opt.zero_grad(set_to_none=True)
            return {**metrics, "skipped": 1}
        metrics.update(tr.generator_update(t))
        if tr.discriminator_active(t):
            d_metrics = tr.discriminator_backward(t, cache)
            if engine.check_finite(d_metrics):
                d_metrics.update(tr.discriminator_update(t))
            metrics.update(d_metrics)
        return metrics

    @torch.no_grad()
    def sample(self, engine: Engine, folder: Path) -> None:
        """A PNG grid: a fixed batch of training images (centre crop), original | reconstruction."""
        if not engine.ctx.is_main:
            return
        from gigatok_core.data.images import (
            ImageReadError,
            Tile,
            contact_sheet,
            read_image,
            save_png,
            to_uint8,
        )
        from gigatok_core.data.transforms import CenterCrop

        crop, images = CenterCrop(self.cfg.model.image_size), []
        for path in self.train_set.files:  # the first readable images: the same batch every time
            if len(images) == SAMPLE_IMAGES:
                break
            try:
                images.append(crop(read_image(path)))
            except ImageReadError:
                continue
        x = torch.stack(images).to(engine.device)
        ema = self.trainer.ema
        model = ema.model if ema is not None else self.model
        model.eval()
        try:
            with engine.autocast():
                recon = model(x).recon.float()
        finally:
            self.model.train()
        orig, rec = to_uint8(x), to_uint8(recon)
        rows = [[Tile(orig[i], "original"), Tile(rec[i], "reconstruction")] for i in range(len(orig))]
        save_png(Path(folder) / f"step-{engine.step:08d}.png", contact_sheet(rows))


# ---------------------------------------------------------------------------------------------
# The entry point of `gigatok train tokenizer`
# ---------------------------------------------------------------------------------------------
def prefetch_tokenizer_training(
    cfg: Any,
    *,
    frozen: Mapping[str, str | Path | None] | None = None,
    init: str | Path | None = None,
    data: str | Path | None = None,
) -> dict[str, Path | None]:
    """What a launcher's parent runs before any worker starts: the data folder's check, then the
    frozen networks (and released ``--init`` weights) into the download cache, the teacher's width
    checked. Returns the frozen networks' files (None: seeded random)."""
    from gigatok_core.registry import tokenizer_names, tokenizer_preset

    if data is not None:
        training_images(cfg, data)  # an unusable folder is refused before any download
    files = resolve_frozen(cfg.recipe, frozen, preset=cfg.preset)
    fit_teacher_width(cfg, files.get("teacher"))
    if init is not None and str(init) in tokenizer_names() and not Path(str(init)).exists():
        weights = tokenizer_preset(str(init)).weights
        if weights is not None:  # a preset without released weights fails in the workers, clearly
            from gigatok_core.hub import fetch_weights

            fetch_weights(weights, or_option="--init FILE")
    return files


def train_tokenizer(
    cfg: Any,
    *,
    data: str | Path,
    output: str | Path,
    init: str | Path | None = None,
    frozen: Mapping[str, str | Path | None] | None = None,
    num_workers: int | None = None,
    resume: str = "auto",
    overwrite: bool = False,
    on_step: OnStep | None = None,
    on_start: OnStart | None = None,
) -> FitResult:
    """Train a tokenizer (``cfg``: a resolved ``TokenizerTrainConfig``) on the images in ``data``
    into the run folder ``output``. ``frozen``: local files for "teacher", "dino", "vgg" (else
    the download cache)."""
    images = training_images(cfg, data)  # an unusable folder is refused before any download
    files = resolve_frozen(cfg.recipe, frozen, preset=cfg.preset)
    cfg = fit_teacher_width(cfg, files.get("teacher"))  # before any work: never a crash at step 1
    settings = LoopSettings.from_train_config(cfg)
    task = TokenizerTask(cfg, data=images, frozen=files, init=init, num_workers=num_workers)
    record = {"data": str(Path(data).resolve()), "init": str(init) if init is not None else None}
    config = cfg.to_dict(record)
    with released_on_failed_start(output):
        return Engine(settings).fit(
            task, output, config, resume=resume, overwrite=overwrite, on_step=on_step, on_start=on_start
        )
