"""`gigatok eval`: FID-family metrics in one process (no TensorFlow, no second Python).

Each command declares the settings of its request (:mod:`gigatok_core.config.requests`) as options
and runs one function of :mod:`gigatok_core.evaluation.commands` with the report's renderer
(:func:`gigatok_cli.run.runs_request`). The GPT evaluations (gfid, val-loss) are in :mod:`gigatok_cli.eval_ar`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from gigatok_cli._common import handle_errors
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import (
    BatchOpt,
    CheckpointOpt,
    DeviceOpt,
    ForceOpt,
    InceptionOpt,
    JsonOpt,
    OverwriteOpt,
    PrecisionOpt,
    PROpt,
    ProtocolOpt,
    TokenizerOpt,
    VggWeightsOpt,
)
from gigatok_cli.report import render_report
from gigatok_cli.run import runs_request

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
@runs_request("FIDRequest", "gigatok_core.evaluation.commands:fid", render_report)
def fid(
    samples: Annotated[
        Path, typer.Argument(help="Folder of images, image npz (arr_0 uint8 NHWC) or statistics npz.")
    ],
    reference: Annotated[
        Path, typer.Argument(help="Same kinds as SAMPLES; e.g. VIRTUAL_imagenet256_labeled.npz.")
    ],
    *,
    protocol: ProtocolOpt = None,
    force: ForceOpt = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    with_precision_recall: PROpt = True,
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """FID, sFID, Inception Score, precision and recall of SAMPLES against REFERENCE (ADM's evaluator)."""


@app.command("build-ref")
@handle_errors
@runs_request(
    "BuildRefRequest",
    "gigatok_core.evaluation.commands:build_reference",
    functools.partial(render_report, table=False),
)
def build_ref(
    data: Annotated[Path, typer.Option("--data", help="Folder of reference images (e.g. ImageNet val).")],
    output: Annotated[Path, typer.Option("--output", help="Statistics npz to write.")],
    *,
    image_size: Annotated[int, typer.Option("--image-size", help="ADM centre-crop size.")] = 256,
    protocol: Annotated[
        str, typer.Option("--protocol", help="What the reference is for: gfid-adm or rfid-imagenet-val.")
    ] = "rfid-imagenet-val",
    with_images: Annotated[
        bool,
        typer.Option(
            "--with-images",
            help="Also store the crops as arr_0 (uint8), like the official val_imagenet.npz, so ADM's "
            "TensorFlow evaluator can read the file too (196 KB per 256px image: 9.8 GB for ImageNet val).",
        ),
    ] = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
) -> None:
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
@launch_options
@runs_request("RFIDRequest", "gigatok_core.evaluation.commands:rfid", render_report)
def rfid(
    tokenizer: TokenizerOpt,
    data: Annotated[
        Path, typer.Option("--data", help="Folder of validation images (ImageNet val for the paper's rFID).")
    ],
    *,
    checkpoint: CheckpointOpt = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="rfid-imagenet-val statistics; default: built from --data in the same pass and cached.",
        ),
    ] = None,
    save_samples: Annotated[
        Path | None, typer.Option("--save-samples", help="Also save reconstructions as PNGs here.")
    ] = None,
    precision: PrecisionOpt = "fp32",
    lpips: Annotated[
        bool, typer.Option("--lpips/--no-lpips", help="Compute LPIPS-VGG (needs vgg16 weights).")
    ] = True,
    vgg_weights: VggWeightsOpt = None,
    force: ForceOpt = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    with_precision_recall: PROpt = True,
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    """Reconstruction FID of a tokenizer (the --help text is the command's help= above)."""


# The GPT evaluations live in their own module and are registered here (it never imports this one).
from gigatok_cli.eval_ar import GFID_HELP, VAL_LOSS_HELP, gfid, val_loss  # noqa: E402

app.command("gfid", help=GFID_HELP)(gfid)
app.command("val-loss", help=VAL_LOSS_HELP)(val_loss)
