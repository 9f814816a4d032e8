"""`gigatok train tokenizer`: the official tokenizer recipe on an image folder (docs/recipes.md#tokenizer).

Registered on the ``train`` group by :mod:`gigatok_cli.train` (this module never imports it; the
helpers both training commands share are in :mod:`gigatok_cli.train_common`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gigatok_cli._common import handle_errors
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import HUB_HELP, completer, hub_weights, shared_option
from gigatok_cli.train_common import (
    ConfigFileOpt,
    ResumeOpt,
    RunDirOpt,
    StartOverOpt,
    run_options,
    run_training,
)
from gigatok_core import registry  # presets as data: no torch import

# the run settings `train tokenizer` takes as options (the others: run.KEY=VALUE)
TOKENIZER_RUN_OPTIONS = (
    "max_steps", "batch_size", "grad_accum", "lr", "seed", "save_every", "keep", "log_every",
    "sample_every", "device", "precision", "strategy", "ema", "compile", "on_nan",
)  # fmt: skip


@handle_errors
@launch_options
@run_options(
    *TOKENIZER_RUN_OPTIONS,
    help={
        "sample_every": "Steps between reconstruction grids (RUN_DIR/samples).",
        "compile": "torch.compile the model (default: off, as the official recipe).",
    },
)
def tokenizer(
    *,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            "-p",
            help="Tokenizer preset, e.g. s-s or tiny.",
            autocompletion=completer(registry.tokenizer_names),
        ),
    ],
    data: Annotated[Path, typer.Option("--data", help="An ImageFolder tree or a flat folder of images.")],
    output: RunDirOpt,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="key=value settings, e.g. recipe.disc_start=0 model.codebook_size=4096."),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start from a preset's released weights, a weights file or a run folder." + HUB_HELP,
            callback=hub_weights,
        ),
    ] = None,
    config: ConfigFileOpt = None,
    teacher_weights: shared_option("teacher_weights", Path) = None,
    dino_weights: shared_option("dino_weights", Path) = None,
    vgg_weights: shared_option("vgg_weights", Path) = None,
    workers: shared_option("workers", int) = None,
    resume: ResumeOpt = "auto",
    overwrite: StartOverOpt = False,
    run: dict[str, Any],
    launch: LaunchOptions = SINGLE,
) -> None:
    """Train a VQ tokenizer with the official GigaTok recipe (or fine-tune one with --init)."""
    from gigatok_core.config import TokenizerTrainConfig
    from gigatok_core.train.tokenizer.task import prefetch_tokenizer_training, train_tokenizer

    cfg = TokenizerTrainConfig.from_options(preset, config_file=config, overrides=overrides or [], **run)
    frozen = {"teacher": teacher_weights, "dino": dino_weights, "vgg": vgg_weights}
    run_training(
        cfg,
        launch,
        label="tokenizer",
        what=f"tokenizer {preset}",
        output=output,
        prefetch=lambda: prefetch_tokenizer_training(cfg, frozen=frozen, init=init, data=data),
        train=lambda **show: train_tokenizer(
            cfg,
            data=data,
            output=output,
            init=init,
            frozen=frozen,
            num_workers=workers,
            resume=resume,
            overwrite=overwrite,
            **show,
        ),
    )
