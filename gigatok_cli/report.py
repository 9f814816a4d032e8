"""Rendering an evaluation report (:class:`gigatok_core.evaluation.commands.EvalReport`) on the console."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from gigatok_cli._common import console, out

LABELS = {
    "fid": "FID",
    "sfid": "sFID",
    "is": "Inception Score",
    "precision": "Precision",
    "recall": "Recall",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "lpips": "LPIPS (VGG)",
    "codebook_usage": "Codebook usage",
    "num_samples": "Samples",
    "num_reference": "Reference images",
    "num_images": "Images",
    "val_loss": "Val loss (mean of batch means)",
    "val_loss_per_token": "Val loss (per token)",
    "num_batches": "Batches",
    "num_classes": "Classes",
    "cfg_scale": "CFG scale",
}


def is_main() -> bool:
    from gigatok_core.dist import dist_info

    return dist_info().is_main


def render_report(report: Any, *, table: bool = True) -> None:
    """Print an :class:`~gigatok_core.evaluation.commands.EvalReport` (nothing on ranks other than 0)."""
    if report is None:
        return
    for line in report.messages:
        console.print(line, highlight=False, soft_wrap=True)
    if table:
        grid = Table(title=report.title)
        grid.add_column("metric")
        grid.add_column("value", justify="right")
        for key, value in report.metrics.items():
            if key in LABELS:
                shown = (
                    "[dim]n/a[/]"
                    if value is None
                    else f"{value:.4f}"
                    if isinstance(value, float)
                    else str(value)
                )
                grid.add_row(LABELS[key], shown)
        out.print(grid)
        for note in report.metrics.get("notes", []):
            out.print(f"[dim]note: {note}[/]")
    if report.json_path is not None:
        console.print(f"wrote {report.json_path}", highlight=False)
