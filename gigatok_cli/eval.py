"""`gigatok eval`: FID-family metrics in one process (no TensorFlow, no second Python).

Each command declares the settings of its request (:mod:`gigatok_core.config.requests`) as options
and runs one function of :mod:`gigatok_core.evaluation.commands` with the report's renderer
(:func:`gigatok_cli.run.request_command`). The GPT evaluations (gfid, val-loss) are in :mod:`gigatok_cli.eval_ar`.
"""

from __future__ import annotations

import functools
from typing import Any

import typer

from gigatok_cli._common import handle_errors
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


# The GPT evaluations live in their own module and are registered here (it never imports this one).
from gigatok_cli.eval_ar import GFID_HELP, VAL_LOSS_HELP, gfid, val_loss  # noqa: E402

app.command("gfid", help=GFID_HELP)(gfid)
app.command("val-loss", help=VAL_LOSS_HELP)(val_loss)
