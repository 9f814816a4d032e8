"""`gigatok train extract-codes`: encode an ImageFolder into a codes folder for GPT training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gigatok_cli._common import console, handle_errors, out, plural
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import (
    HUB_HELP,
    AutoPrecisionOpt,
    DeviceOpt,
    ForwardBatchOpt,
    TokenizerOpt,
    WorkersOpt,
    hub_weights,
)
from gigatok_cli.run import runs_request

if TYPE_CHECKING:
    from gigatok_core.data.extract import ExtractReport


def _render(report: ExtractReport) -> None:
    m = report.manifest
    if report.already_complete:
        out.print(
            f"{m.root} already holds these codes ({plural(m.num_images, 'image')}); nothing to do",
            highlight=False,
        )
        return
    if report.skipped:
        console.print(
            f"[yellow]{plural(len(report.skipped), 'image')} skipped[/] (unreadable or too elongated; listed in manifest.json)"
        )
    resumed = f", {report.reused_shards} kept from an earlier run" if report.reused_shards else ""
    out.print(
        f"wrote {plural(m.num_images, 'image')} x {m.crops} crops in {plural(len(m.shards), 'shard')} to {m.root}"
        f" ({report.encoded_shards} written{resumed}; {report.images_per_second:,.1f} images/s)",
        highlight=False,
    )
    if report.check_grid is not None:
        out.print(f"wrote {report.check_grid}", highlight=False)


@handle_errors
@launch_options
@runs_request("ExtractCodesRequest", "gigatok_core.data.extract:extract_codes", _render, rate="img/s")
def extract_codes(
    *,
    tokenizer: TokenizerOpt,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CODES_DIR to write (shards + manifest.json).")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="ImageFolder tree: one sub-folder per class (labels = sorted folder names)."
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Tokenizer weights file or training run folder instead of the preset's." + HUB_HELP,
            callback=hub_weights,
        ),
    ] = None,
    ten_crop: Annotated[
        bool,
        typer.Option("--ten-crop", help="Ten crops of the enlarged centre crop (else centre crop + flip)."),
    ] = False,
    crop_range: Annotated[
        float, typer.Option("--crop-range", help="With --ten-crop: centre-crop to int(size x this) first.")
    ] = 1.1,
    batch_size: ForwardBatchOpt = 32,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Images per shard file.")] = 10_000,
    workers: WorkersOpt = None,
    device: DeviceOpt = "auto",
    precision: AutoPrecisionOpt = None,
    check_images: Annotated[
        int,
        typer.Option(
            "--check-images", min=0, help="Images per shard decoded into check_codes.png (0: none)."
        ),
    ] = 4,
    import_official: Annotated[
        Path | None,
        typer.Option(
            "--import-official",
            help="Convert the official imagenet256_codes/ + imagenet256_labels/ folder instead of encoding.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the codes of another run in --output.")
    ] = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    """Encode images into tokenizer codes once, for `gigatok train gpt --codes CODES_DIR`.

    A killed run resumes when started again with the same options.
    Example: gigatok train extract-codes --tokenizer xl-xxl --data imagenet/train --output codes --ten-crop
    """
