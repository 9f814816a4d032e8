"""`gigatok reconstruct`: images -> codes -> images through a tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from gigatok_cli._common import console, handle_errors, out, plural, print_error
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import (
    HUB_HELP,
    CheckpointTokenizerOpt,
    DeviceOpt,
    ForwardBatchOpt,
    OverwriteOpt,
    PrecisionOpt,
    VggWeightsOpt,
    hub_weights,
)
from gigatok_cli.run import runs_request
from gigatok_core.errors import GigatokError

if TYPE_CHECKING:
    from gigatok_core.tasks.reconstruct import ReconstructResult

FLAG_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")


def _skipped(path: str, reason: str) -> None:
    console.print(f"[yellow]skipped:[/] {reason}", highlight=False, soft_wrap=True)


def _render(result: ReconstructResult) -> None:
    if result.mean_metrics and result.images:
        table = Table(title=f"{result.tokenizer} reconstruction metrics")
        keys = list(result.images[0].metrics)
        table.add_column("image")
        for k in keys:
            table.add_column(k, justify="right")
        for img in result.images[:50]:
            table.add_row(Path(img.output).stem, *(f"{img.metrics[k]:.4f}" for k in keys))
        if len(result.images) > 50:
            table.add_row(f"... {len(result.images) - 50} more", *("" for _ in keys))
        table.add_row("[bold]mean[/]", *(f"[bold]{result.mean_metrics[k]:.4f}[/]" for k in keys))
        out.print(table)
    if not result.images:
        print_error(f"none of the {len(result.skipped)} inputs could be read")
        raise typer.Exit(1)
    usage = f", codebook usage {result.codebook_usage:.2%}" if result.codebook_usage is not None else ""
    out.print(f"wrote {len(result.images)} reconstructions to {result.output_dir}{usage}", highlight=False)
    for f in result.files:
        out.print(f"wrote {f}", highlight=False)
    if result.skipped:
        console.print(
            f"[yellow]{plural(len(result.skipped), 'input')} skipped[/] (unreadable or too elongated)"
        )


@handle_errors
@launch_options
@runs_request(
    "ReconstructRequest",
    "gigatok_core.tasks.reconstruct:reconstruct",
    _render,
    label="reconstruct",
    hooks={"on_skip": _skipped},
)
def reconstruct(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files, folders (recursive) or glob patterns.", show_default=False),
    ],
    *,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the reconstructions.")] = Path(
        "reconstructions"
    ),
    tokenizer: CheckpointTokenizerOpt = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Checkpoint file or run folder instead of the preset's cached weights." + HUB_HELP,
            callback=hub_weights,
        ),
    ] = None,
    grid: Annotated[
        bool, typer.Option("--grid", help="Also write grid.png: original | reconstruction pairs.")
    ] = False,
    save_codes: Annotated[
        bool, typer.Option("--save-codes", help="Also write codes.npz: code indices per image stem.")
    ] = False,
    metrics: Annotated[
        bool, typer.Option("--metrics", help="PSNR, SSIM, LPIPS per image and averaged (metrics.json).")
    ] = False,
    vgg_weights: VggWeightsOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    batch_size: ForwardBatchOpt = 8,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on an unreadable image instead of skipping it.")
    ] = False,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    """Reconstruct images with a GigaTok tokenizer (resize + centre crop to 256, encode, decode).

    Example: gigatok reconstruct ./imgs --tokenizer xl-xxl --output recon --grid --metrics
    """
    for word in inputs:  # `--grid true`: the flag takes no value, so "true" became an input
        if word.lower() in FLAG_WORDS and not Path(word).exists():
            raise GigatokError(
                f"input {word!r} does not exist",
                hint="flags such as --grid, --metrics and --save-codes take no value: write --grid, not --grid true",
            )
