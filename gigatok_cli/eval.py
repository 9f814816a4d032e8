"""`gigatok eval`: FID-family metrics in one process (no TensorFlow, no second Python).

Each command takes the settings of its request (:mod:`gigatok_core.config.requests`) as options
and runs one function of :mod:`gigatok_core.evaluation.commands` (fid, build-ref, rfid) or
:mod:`gigatok_core.evaluation.ar_commands` (gfid, val-loss) with the report's renderer
(:func:`gigatok_cli.run.request_command`).
"""

from __future__ import annotations

import functools
from typing import Any

import typer

from gigatok_cli._common import console, handle_errors
from gigatok_cli.report import render_report
from gigatok_cli.run import request_command

app = typer.Typer(
    help="Evaluate tokenizers and generators in one Python process (no TensorFlow): fid (two sides), "
    "build-ref (reference statistics), rfid (tokenizer reconstruction), gfid (GPT samples, optional CFG "
    "search), val-loss (GPT cross-entropy). rfid, gfid and val-loss also run under torchrun "
    "(`torchrun --nproc-per-node N -m gigatok_cli.main eval ...`); rank 0 prints the results.",
    no_args_is_help=True,
)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
@app.command("fid")
@handle_errors
@request_command("FIDRequest", "gigatok_core.evaluation.commands:fid", render_report, launch=False)
def fid(**settings: Any) -> None:
    """FID, sFID, Inception Score, precision and recall of SAMPLES against REFERENCE (ADM's evaluator)."""


@app.command("build-ref")
@handle_errors
@request_command(
    "BuildRefRequest",
    "gigatok_core.evaluation.commands:build_reference",
    functools.partial(render_report, table=False),
    launch=False,
)
def build_ref(**settings: Any) -> None:
    """Build a reference (mu/sigma/mu_s/sigma_s + pool features) from a folder, ADM centre crop."""


@app.command(
    "rfid",
    help=(
        "Reconstruction FID (+ sFID, IS, P/R, PSNR, SSIM, LPIPS, codebook usage) of a tokenizer.\n\n"
        "Every image under --data is ADM-centre-cropped, encoded and decoded in memory. Under torchrun each rank "
        "takes a strided shard; rank 0 gathers the features and prints the numbers (they do not depend on the "
        "number of ranks)."
    ),
)
@handle_errors
@request_command("RFIDRequest", "gigatok_core.evaluation.commands:rfid", render_report)
def rfid(**settings: Any) -> None:
    """Reconstruction FID of a tokenizer (the --help text is the command's help= above)."""


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


app.command("gfid", help=GFID_HELP)(gfid)
app.command("val-loss", help=VAL_LOSS_HELP)(val_loss)
