"""The one progress protocol of the library: ``on_progress(done, total, stage=...)``.

Long-running functions (reconstruct, sample, the evaluations) take an optional ``on_progress`` and
call it with the *absolute* count of finished items of the current ``stage`` ("reconstruct",
"sample", "inception: samples", ...) and the stage's total (``None`` when unknown). A new stage
name starts a new count; a repeated call of the same stage with a smaller ``done`` restarts it
(a CFG search samples one folder per scale). Renderers (the CLI's rich bar) keep one bar per
stage; the library never imports a renderer.
"""

from __future__ import annotations

from typing import Protocol


class ProgressFn(Protocol):
    """``(done, total, *, stage)``: ``done`` of ``total`` items of ``stage`` are finished."""

    def __call__(self, done: int, total: int | None, *, stage: str = "") -> None: ...


def no_progress(done: int, total: int | None, *, stage: str = "") -> None:
    """The default: report nothing."""
