"""`gigatok sample`: class-conditional generation with a GPT and its tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gigatok_cli._common import handle_errors, out, plural
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import (
    CfgEndOpt,
    CfgScaleOpt,
    CfgScheduleOpt,
    CfgStartOpt,
    DeviceOpt,
    GptCheckpointOpt,
    PairedTokenizerOpt,
    PrecisionOpt,
    RngOpt,
    RunGptOpt,
    SamplerOpt,
    SeedOpt,
    SjdWindowOpt,
    TokenizerCheckpointOpt,
)
from gigatok_cli.run import runs_request

if TYPE_CHECKING:
    from gigatok_core.tasks.sample import SampleResult


def _render(result: SampleResult) -> None:
    from gigatok_core.dist import dist_info

    skipped = f" ({result.skipped_total} already there, skipped)" if result.skipped_total else ""
    out.print(
        f"wrote {plural(result.generated_total, 'image')} to {result.output_dir}{skipped}",
        highlight=False,
        soft_wrap=True,
    )
    for f in result.files:
        out.print(f"wrote {f}", highlight=False, soft_wrap=True)
    if "sampler" in result.settings and result.forward_passes:  # sample.json names only sjd
        out.print(
            f"sjd: {result.forward_passes} GPT forward passes where the standard sampler runs "
            f"{result.standard_passes} ({result.standard_passes / result.forward_passes:.2f}x fewer"
            f"{', this process' if dist_info().world_size > 1 else ''})",
            highlight=False,
            soft_wrap=True,
        )


@handle_errors
@launch_options
@runs_request("SampleRequest", "gigatok_core.tasks.sample:sample_images", _render, label="sample")
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
    gpt: RunGptOpt = None,
    tokenizer: PairedTokenizerOpt = None,
    num_per_class: Annotated[int, typer.Option("--num-per-class", "-n", min=1, help="Images per class.")] = 1,
    cfg_scale: CfgScaleOpt = 4.0,
    cfg_schedule: CfgScheduleOpt = "constant",
    cfg_start_ratio: CfgStartOpt = None,
    cfg_end_ratio: CfgEndOpt = None,
    cfg_interval: Annotated[
        int,
        typer.Option(
            "--cfg-interval", help="Decode steps after this use the conditional logits only (-1: never)."
        ),
    ] = -1,
    temperature: Annotated[float, typer.Option("--temperature", help="Softmax temperature.")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Keep the k most likely tokens (0: off).")] = 0,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass (1.0: off).")] = 1.0,
    seed: SeedOpt = 0,
    rng: RngOpt = "per-sample",
    sampler: SamplerOpt = "standard",
    sjd_window: SjdWindowOpt = 16,
    precision: PrecisionOpt = "fp32",
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Images per generation batch.")
    ] = 8,
    device: DeviceOpt = "auto",
    gpt_checkpoint: GptCheckpointOpt = None,
    tokenizer_checkpoint: TokenizerCheckpointOpt = None,
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
            help="Start over: first remove exactly the files the previous run in --output recorded in its "
            "sample.json (default: resume or extend a run of the same settings, refuse any other run).",
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
