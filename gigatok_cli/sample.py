"""`gigatok sample`: class-conditional generation with a GPT and its tokenizer."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from gigatok_cli._common import PrecisionOpt, handle_errors, out, progress_bar
from gigatok_cli.launch import SINGLE, LaunchOptions, global_progress, launch_options, maybe_launch
from gigatok_core import dist, prefetch, registry
from gigatok_core.ar.cfg import SCHEDULES, CFGSchedule
from gigatok_core.ar.generate import RNG_MODES, SamplingParams
from gigatok_core.errors import GigatokError
from gigatok_core.sample import sample_images


def _complete_gpt(incomplete: str) -> list[str]:
    return [n for n in registry.gpt_names() if n.startswith(incomplete)]


def _complete_tokenizer(incomplete: str) -> list[str]:
    return [n for n in registry.tokenizer_names() if n.startswith(incomplete)]


def _complete_schedule(incomplete: str) -> list[str]:
    return [n for n in SCHEDULES if n.startswith(incomplete)]


@handle_errors
@launch_options
def sample(
    *,
    classes: Annotated[
        str,
        typer.Option(
            "--classes",
            "-c",
            help="Comma-separated ImageNet class indices (0-999) or names, "
            "e.g. '22,388' or 'giant panda,bald eagle'.",
            show_default=False,
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the PNGs.")] = Path("samples"),
    gpt: Annotated[
        str,
        typer.Option(
            "--gpt",
            "-g",
            help="GPT preset (see `gigatok download --list`).",
            autocompletion=_complete_gpt,
            envvar="GIGATOK_GPT",
        ),
    ] = "gpt-b",
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            "-t",
            help="Tokenizer preset; default: the one the GPT was trained with.",
            autocompletion=_complete_tokenizer,
            show_default=False,
        ),
    ] = None,
    num_per_class: Annotated[int, typer.Option("--num-per-class", "-n", min=1, help="Images per class.")] = 1,
    cfg_scale: Annotated[
        float, typer.Option("--cfg-scale", help="Classifier-free guidance scale (<= 1: off).")
    ] = 4.0,
    cfg_schedule: Annotated[
        str,
        typer.Option(
            "--cfg-schedule", help=f"One of {', '.join(SCHEDULES)}.", autocompletion=_complete_schedule
        ),
    ] = "constant",
    cfg_start_ratio: Annotated[
        float | None,
        typer.Option(
            "--cfg-start-ratio",
            help="step/sigmoid start (default 0.18); rectangular window start (default 0.05).",
            show_default=False,
        ),
    ] = None,
    cfg_end_ratio: Annotated[
        float | None,
        typer.Option("--cfg-end-ratio", help="Rectangular window end (default 1.0).", show_default=False),
    ] = None,
    cfg_interval: Annotated[
        int,
        typer.Option(
            "--cfg-interval", help="Decode steps after this use the conditional logits only (-1: never)."
        ),
    ] = -1,
    temperature: Annotated[float, typer.Option("--temperature", help="Softmax temperature.")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Keep the k most likely tokens (0: off).")] = 0,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass (1.0: off).")] = 1.0,
    seed: Annotated[
        int, typer.Option("--seed", help="Run seed; each image is seeded from (seed, class, index).")
    ] = 0,
    rng: Annotated[
        str,
        typer.Option(
            "--rng",
            help="per-sample (batch/rank independent) or official "
            "(one torch.multinomial stream, as the official sampler).",
        ),
    ] = "per-sample",
    precision: PrecisionOpt = "fp32",
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Images per generation batch.")
    ] = 8,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    gpt_checkpoint: Annotated[
        Path | None,
        typer.Option("--gpt-checkpoint", help="Local GPT checkpoint instead of the released weights."),
    ] = None,
    tokenizer_checkpoint: Annotated[
        Path | None,
        typer.Option("--tokenizer-checkpoint", help="Local tokenizer checkpoint instead of the cache."),
    ] = None,
    grid: Annotated[
        bool, typer.Option("--grid", help="Also write grid.png, a labelled contact sheet.")
    ] = False,
    save_codes: Annotated[
        bool, typer.Option("--save-codes", help="Also write codes.npz (codes (N,256), labels).")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start over: remove the previous run's samples, codes and grid in --output first "
            "(default: resume a run of the same settings, refuse one of other settings).",
        ),
    ] = False,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the GPT decode step (CUDA graphs on a GPU; the first batch compiles).",
        ),
    ] = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    """Generate ImageNet-class images with a GigaTok GPT (runs under torchrun too).

    Example: gigatok sample --gpt gpt-xxl --tokenizer xl-xxl --classes 22,388 --output samples --grid
    """
    if rng not in RNG_MODES:
        raise GigatokError(f"unknown --rng {rng!r}", hint=f"use one of {', '.join(RNG_MODES)}")
    cfg = CFGSchedule(
        cfg_scale, cfg_schedule, window_start=cfg_start_ratio, window_end=cfg_end_ratio, interval=cfg_interval
    )
    sampling = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    fetch = functools.partial(
        prefetch.sample_files,
        classes,
        gpt,
        tokenizer,
        gpt_checkpoint=gpt_checkpoint,
        tokenizer_checkpoint=tokenizer_checkpoint,
        device=device,
        precision=precision,
    )
    if maybe_launch(launch, prefetch=fetch):
        return
    info = dist.dist_info()
    with progress_bar("sample", enabled=info.is_main) as on_progress:
        on_progress = global_progress(on_progress)
        result = sample_images(
            classes,
            output=output,
            gpt=gpt,
            tokenizer=tokenizer,
            num_per_class=num_per_class,
            cfg=cfg,
            sampling=sampling,
            seed=seed,
            rng=rng,
            precision=precision,
            batch_size=batch_size,
            device=device,
            gpt_checkpoint=gpt_checkpoint,
            tokenizer_checkpoint=tokenizer_checkpoint,
            grid=grid,
            save_codes=save_codes,
            overwrite=overwrite,
            on_progress=on_progress,
            compile=compile,
        )
    if not info.is_main:
        return
    skipped = f" ({result.skipped_total} already there, skipped)" if result.skipped_total else ""
    out.print(
        f"wrote {result.generated_total} images to {result.output_dir}{skipped}",
        highlight=False,
        soft_wrap=True,
    )
    for f in result.files:
        out.print(f"wrote {f}", highlight=False, soft_wrap=True)
