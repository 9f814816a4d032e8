"""`gigatok train tokenizer`: the official tokenizer recipe on an image folder (docs/recipes.md#tokenizer).

Registered on the ``train`` group by :mod:`gigatok_cli.train` (this module never imports it at
import time: the group's shared helpers are imported when the command runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from gigatok_cli._common import console, handle_errors
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options, maybe_launch
from gigatok_cli.options import HUB_HELP, DinoWeightsOpt, TeacherWeightsOpt, VggWeightsOpt, hub_weights


def _complete_tokenizer(incomplete: str) -> list[str]:
    from gigatok_core import registry

    return [n for n in registry.tokenizer_names() if n.startswith(incomplete)]


@handle_errors
@launch_options
def tokenizer(
    *,
    preset: Annotated[
        str,
        typer.Option(
            "--preset", "-p", help="Tokenizer preset, e.g. s-s or tiny.", autocompletion=_complete_tokenizer
        ),
    ],
    data: Annotated[Path, typer.Option("--data", help="An ImageFolder tree or a flat folder of images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder (checkpoints, logs, samples).")],
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
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file applied over the preset.", show_default=False)
    ] = None,
    teacher_weights: TeacherWeightsOpt = None,
    dino_weights: DinoWeightsOpt = None,
    vgg_weights: VggWeightsOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            help="DataLoader worker processes (default: min(4, CPU cores - 1)).",
            show_default=False,
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Global batch (all processes and accumulation).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Base learning rate.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="Steps between checkpoints.")] = None,
    keep: Annotated[int | None, typer.Option("--keep", help="Checkpoints kept (newest).")] = None,
    log_every: Annotated[int | None, typer.Option("--log-every", help="Steps between log records.")] = None,
    sample_every: Annotated[
        int | None,
        typer.Option("--sample-every", help="Steps between reconstruction grids (RUN_DIR/samples)."),
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="fp32, bf16 or fp16.")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Micro-batches per step.")] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="ddp or fsdp.")] = None,
    ema: Annotated[bool | None, typer.Option("--ema/--no-ema", help="Keep an EMA of the weights.")] = None,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the model [default: off, as the official recipe].",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[str, typer.Option("--resume", help="auto (continue RUN_DIR) or never.")] = "auto",
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Start over: remove the previous run's files in --output first."),
    ] = False,
    on_nan: Annotated[str | None, typer.Option("--on-nan", help="stop or skip a non-finite step.")] = None,
    launch: LaunchOptions = SINGLE,
) -> None:
    """Train a VQ tokenizer with the official GigaTok recipe (or fine-tune one with --init)."""
    from gigatok_cli.train_common import check_batch_split, report_fit, run_overrides, training_progress
    from gigatok_core.config import TokenizerTrainConfig
    from gigatok_core.dist import dist_info
    from gigatok_core.train.run_dir import config_yaml
    from gigatok_core.train.tokenizer.task import prefetch_tokenizer_training, train_tokenizer

    given = dict(locals())
    dotlist = [*(overrides or []), *run_overrides(given)]
    if compile is not None:
        dotlist.append(f"run.compile={str(compile).lower()}")
    if ema is not None:
        dotlist.append(f"run.ema={str(ema).lower()}")
    cfg = TokenizerTrainConfig.from_name(preset, config_file=config, overrides=dotlist)
    frozen = {"teacher": teacher_weights, "dino": dino_weights, "vgg": vgg_weights}
    check_batch_split(cfg, launch)  # options are checked before any worker starts
    if maybe_launch(
        launch, prefetch=lambda: prefetch_tokenizer_training(cfg, frozen=frozen, init=init, data=data)
    ):
        return  # the workers ran (the parent fetched the frozen networks first)
    is_main = dist_info().is_main

    def on_start(resolved: Mapping[str, Any], resumed: bool) -> None:
        console.print(f"[bold]{'resuming' if resumed else 'training'}[/] tokenizer {preset} in {output}")
        console.print(config_yaml(resolved), highlight=False, markup=False)

    with training_progress("tokenizer", enabled=is_main) as on_step:
        result = train_tokenizer(
            cfg,
            data=data,
            output=output,
            init=init,
            frozen=frozen,
            num_workers=workers,
            resume=resume,
            overwrite=overwrite,
            on_step=on_step,
            on_start=on_start if is_main else None,
        )
    if not is_main:
        return
    report_fit(result)
