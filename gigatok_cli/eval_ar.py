"""`gigatok eval gfid` and `gigatok eval val-loss`: the GPT evaluations.

Registered on the eval group by :mod:`gigatok_cli.eval` (this module never imports it). Each command
declares the settings of its request as options and runs one function of
:mod:`gigatok_core.evaluation.ar_commands` (:func:`gigatok_cli.run.request_command`).
"""

from __future__ import annotations

from typing import Any

from gigatok_cli._common import console, handle_errors
from gigatok_cli.report import render_report
from gigatok_cli.run import request_command

GFID_HELP = (
    "Generation FID: class-balanced samples of a GPT vs ADM's ImageNet-256 batch (+ sFID, IS, P/R).\n\n"
    "Sampling is resumable (an interrupted run keeps its PNGs) and sharded under torchrun; rank 0 scores. "
    "Labels are class-balanced (--num-samples, default 50000, spread evenly over the classes), not "
    "uniform-random as in the official script; they are scored sample index first, so each Inception "
    "Score split mixes all classes. Guidance defaults to the paper's: --cfg-scale 1.75, --cfg-schedule step. "
    "--search runs the official CFG search."
)


def _show_scale(scale: float, metrics: dict[str, Any]) -> None:
    console.print(f"cfg {scale:g}: FID {metrics.get('fid')}")


@handle_errors
@request_command(
    "GFIDRequest",
    "gigatok_core.evaluation.ar_commands:gfid",
    render_report,
    hooks={"on_result": _show_scale},
    no_env=("tokenizer",),
)
def gfid(**settings: Any) -> None:
    """Generation FID of a GPT (the --help text is GFID_HELP)."""


VAL_LOSS_HELP = (
    "Validation loss of a GPT: cross-entropy of the tokenizer's codes of --data (ADM centre crop, no flip).\n\n"
    "Reports the official number (unweighted mean over batches of the per-batch mean CE over the 256 "
    "positions) and the per-token mean over all images. Batches are sharded under torchrun; the numbers do "
    "not depend on the number of ranks."
)


@handle_errors
@request_command(
    "ValLossRequest", "gigatok_core.evaluation.ar_commands:val_loss", render_report, no_env=("tokenizer",)
)
def val_loss(**settings: Any) -> None:
    """Validation loss of a GPT (the --help text is VAL_LOSS_HELP)."""
