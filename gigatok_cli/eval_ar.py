"""`gigatok eval gfid` and `gigatok eval val-loss`: the GPT evaluations.

Registered on the eval group by :mod:`gigatok_cli.eval` (this module never imports it). Each command
declares the settings of its request as options and runs one function of
:mod:`gigatok_core.evaluation.ar_commands` (:func:`gigatok_cli.run.runs_request`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gigatok_cli._common import console, handle_errors
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import (
    AutoPrecisionOpt,
    BatchOpt,
    CfgEndOpt,
    CfgScaleOpt,
    CfgScheduleOpt,
    CfgStartOpt,
    DeviceOpt,
    ForceOpt,
    GptCheckpointOpt,
    InceptionOpt,
    JsonOpt,
    OverwriteOpt,
    PairedTokenizerOpt,
    PrecisionOpt,
    PROpt,
    RunGptOpt,
    SamplerOpt,
    SjdWindowOpt,
    TokenizerCheckpointOpt,
)
from gigatok_cli.report import render_report
from gigatok_cli.run import runs_request

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
@launch_options
@runs_request(
    "GFIDRequest", "gigatok_core.evaluation.ar_commands:gfid", render_report, hooks={"on_result": _show_scale}
)
def gfid(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            help="Folder for the samples (existing PNGs of the same settings are reused: resumable).",
        ),
    ],
    *,
    gpt: RunGptOpt = None,
    tokenizer: PairedTokenizerOpt = None,
    gpt_checkpoint: GptCheckpointOpt = None,
    tokenizer_checkpoint: TokenizerCheckpointOpt = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="gfid-adm reference (default: VIRTUAL_imagenet256_labeled.npz from the cache).",
        ),
    ] = None,
    num_samples: Annotated[
        int | None,
        typer.Option(
            "--num-samples",
            help="Samples in all, a multiple of the class count so every class gets as many (default 50000).",
        ),
    ] = None,
    num_per_class: Annotated[
        int | None, typer.Option("--num-per-class", help="Or: images per class (50 -> 50k).")
    ] = None,
    num_classes: Annotated[
        int,
        typer.Option(
            "--num-classes", help="Only the first K classes (smoke runs; the paper's gFID uses all 1000)."
        ),
    ] = 1000,
    cfg_scale: CfgScaleOpt = None,
    cfg_schedule: CfgScheduleOpt = "step",
    cfg_start_ratio: CfgStartOpt = None,
    cfg_end_ratio: CfgEndOpt = None,
    window_grid: Annotated[
        bool,
        typer.Option(
            "--window-grid",
            help="With --search and --cfg-schedule rectangular: search every official window "
            "(starts 0.10-0.80, ends 0.50-1.00, step 0.05), each from the previous window's best scale.",
        ),
    ] = False,
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="Official CFG search: step 0.25 from the start value until a local FID minimum; one "
            "sub-folder of --output per scale, results appended to "
            "<output parent>/search_results/<output name>.csv.",
        ),
    ] = False,
    save_npz: Annotated[
        Path | None,
        typer.Option(
            "--save-npz", help="Also write the ADM sample batch (arr_0 uint8 (N,256,256,3), index order)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Run seed.")] = 0,
    precision: PrecisionOpt = "fp32",
    sample_batch_size: Annotated[
        int, typer.Option("--sample-batch-size", help="Images per generation batch.")
    ] = 32,
    sampler: SamplerOpt = "standard",
    sjd_window: SjdWindowOpt = 16,
    force: ForceOpt = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    with_precision_recall: PROpt = True,
    json_path: JsonOpt = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing --json / --save-npz files.")
    ] = False,
    regenerate: Annotated[
        bool,
        typer.Option(
            "--regenerate",
            help="Sample again, replacing the PNGs in --output (default: reuse those of the same settings).",
        ),
    ] = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    """Generation FID of a GPT (the --help text is GFID_HELP)."""


VAL_LOSS_HELP = (
    "Validation loss of a GPT: cross-entropy of the tokenizer's codes of --data (ADM centre crop, no flip).\n\n"
    "Reports the official number (unweighted mean over batches of the per-batch mean CE over the 256 "
    "positions) and the per-token mean over all images. Batches are sharded under torchrun; the numbers do "
    "not depend on the number of ranks."
)


@handle_errors
@launch_options
@runs_request("ValLossRequest", "gigatok_core.evaluation.ar_commands:val_loss", render_report)
def val_loss(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="ImageFolder tree: one sub-folder per class, sorted names -> labels (ImageNet val).",
        ),
    ],
    *,
    gpt: RunGptOpt = None,
    tokenizer: PairedTokenizerOpt = None,
    gpt_checkpoint: GptCheckpointOpt = None,
    tokenizer_checkpoint: TokenizerCheckpointOpt = None,
    precision: AutoPrecisionOpt = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Images per batch (the reported mean is over batch means).")
    ] = 32,
    class_subset: Annotated[
        bool,
        typer.Option(
            "--class-subset",
            help="--data holds folders for only the first classes, in order (default: all the GPT's classes).",
        ),
    ] = False,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    """Validation loss of a GPT (the --help text is VAL_LOSS_HELP)."""
