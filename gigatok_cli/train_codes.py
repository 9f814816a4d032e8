"""`gigatok train extract-codes`: encode an ImageFolder into a codes folder for GPT training."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from gigatok_cli._common import PrecisionOpt, console, handle_errors, out


def _complete_tokenizer(incomplete: str) -> list[str]:
    from gigatok_core import registry

    return [n for n in registry.tokenizer_names() if n.startswith(incomplete)]


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.1f} img/s" if task.speed else "- img/s")


@contextlib.contextmanager
def _images_bar(enabled: bool) -> Iterator[Callable[[int, int], None]]:
    columns = (TextColumn("extract-codes"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not enabled, transient=True) as progress:
        task = progress.add_task("extract", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield on_progress


@handle_errors
def extract_codes(
    *,
    tokenizer: Annotated[
        str,
        typer.Option("--tokenizer", "-t", help="Tokenizer preset.", autocompletion=_complete_tokenizer),
    ],
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
            "--checkpoint", help="Tokenizer weights file or training run folder instead of the preset's."
        ),
    ] = None,
    ten_crop: Annotated[
        bool,
        typer.Option("--ten-crop", help="Ten crops of the enlarged centre crop (else centre crop + flip)."),
    ] = False,
    crop_range: Annotated[
        float, typer.Option("--crop-range", help="With --ten-crop: centre-crop to int(size x this) first.")
    ] = 1.1,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")
    ] = 32,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Images per shard file.")] = 10_000,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="DataLoader processes decoding images.")
    ] = 4,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: PrecisionOpt = "auto",
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
) -> None:
    """Encode images into tokenizer codes once, for `gigatok train gpt --codes CODES_DIR`.

    A killed run resumes when started again with the same options.
    Example: gigatok train extract-codes --tokenizer xl-xxl --data imagenet/train --output codes --ten-crop
    """
    from gigatok_core import dist
    from gigatok_core.data.extract import extract_codes as run_extract

    info = dist.dist_info()
    with _images_bar(info.is_main) as on_progress:
        report = run_extract(
            tokenizer,
            output,
            data=data,
            checkpoint=checkpoint,
            ten_crop=ten_crop,
            crop_range=crop_range,
            batch_size=batch_size,
            shard_size=shard_size,
            workers=workers,
            device=device,
            precision=None if precision == "auto" else precision,
            overwrite=overwrite,
            check_images=check_images,
            import_official=import_official,
            on_progress=on_progress,
        )
    if report is None:
        return
    m = report.manifest
    if report.already_complete:
        out.print(
            f"{m.root} already holds these codes ({m.num_images} images); nothing to do", highlight=False
        )
        return
    if report.skipped:
        console.print(
            f"[yellow]{len(report.skipped)} unreadable image(s) skipped[/] (listed in manifest.json)"
        )
    resumed = f", {report.reused_shards} kept from an earlier run" if report.reused_shards else ""
    out.print(
        f"wrote {m.num_images} images x {m.crops} crops in {len(m.shards)} shards to {m.root}"
        f" ({report.encoded_shards} written{resumed}; {report.images_per_second:,.1f} images/s)",
        highlight=False,
    )
    if report.check_grid is not None:
        out.print(f"wrote {report.check_grid}", highlight=False)
