"""Rendering an evaluation report (:class:`gigatok_core.evaluation.commands.EvalReport`) on the console."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from gigatok_cli._common import console, out


def render_report(report: Any, *, table: bool = True) -> None:
    """Print an :class:`~gigatok_core.evaluation.commands.EvalReport` (the main rank's)."""
    for line in report.messages:
        console.print(line, highlight=False, soft_wrap=True)
    if table:
        grid = Table(title=report.title)
        grid.add_column("metric")
        grid.add_column("value", justify="right")
        for label, value in report.rows():
            grid.add_row(label, "[dim]n/a[/]" if value is None else value)
        out.print(grid)
        for note in report.metrics.get("notes", []):
            out.print(f"[dim]note: {note}[/]")
    if report.json_path is not None:
        console.print(f"wrote {report.json_path}", highlight=False)
