"""`gigatok reconstruct`: images -> codes -> images through a tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from gigatok_cli._common import console, handle_errors, out, plural, print_error
from gigatok_cli.run import request_command
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
@request_command(
    "ReconstructRequest",
    "gigatok_core.tasks.reconstruct:reconstruct",
    _render,
    label="reconstruct",
    hooks={"on_skip": _skipped},
)
def reconstruct(inputs: list[str], **settings: Any) -> None:
    """Reconstruct images with a GigaTok tokenizer (resize + centre crop to 256, encode, decode).

    Example: gigatok reconstruct ./imgs --tokenizer xl-xxl --output recon --grid --metrics
    """
    for word in inputs:  # `--grid true`: the flag takes no value, so "true" became an input
        if word.lower() in FLAG_WORDS and not Path(word).exists():
            raise GigatokError(
                f"input {word!r} does not exist",
                hint="flags such as --grid, --metrics and --save-codes take no value: write --grid, not --grid true",
            )
