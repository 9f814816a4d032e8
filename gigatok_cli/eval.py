"""`gigatok eval`: FID-family metrics in one process (no TensorFlow, no second Python).

Each command parses its options, calls one function of :mod:`gigatok_core.evaluation.commands`
(or :mod:`~gigatok_core.evaluation.ar_commands`) and renders the returned report.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from gigatok_cli._common import console, handle_errors, progress_bar
from gigatok_cli.launch import SINGLE, LaunchOptions, global_progress, launch_options, maybe_launch
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
    GptOpt,
    InceptionOpt,
    JsonOpt,
    OverwriteOpt,
    PairedTokenizerOpt,
    PrecisionOpt,
    PROpt,
    ProtocolOpt,
    TokenizerCheckpointOpt,
    TokenizerOpt,
)
from gigatok_cli.report import is_main, render_report

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
    with_pr: PROpt = True,
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """FID, sFID, Inception Score, precision and recall of SAMPLES against REFERENCE (ADM's evaluator)."""
    from gigatok_core.evaluation import commands

    with progress_bar(enabled=is_main()) as on_progress:
        report = commands.fid(
            samples,
            reference,
            protocol=protocol,
            force=force,
            inception_weights=inception_weights,
            batch_size=batch_size,
            device=device,
            with_precision_recall=with_pr,
            json_path=json_path,
            overwrite=overwrite,
            on_progress=on_progress,
        )
    render_report(report)


@app.command("build-ref")
@handle_errors
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
    from gigatok_core.evaluation import commands

    with progress_bar(enabled=is_main()) as on_progress:
        report = commands.build_reference(
            data,
            output,
            image_size=image_size,
            protocol=protocol,
            with_images=with_images,
            inception_weights=inception_weights,
            batch_size=batch_size,
            device=device,
            overwrite=overwrite,
            on_progress=on_progress,
        )
    render_report(report, table=False)


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
def rfid(
    tokenizer: TokenizerOpt,
    data: Annotated[
        Path, typer.Option("--data", help="Folder of validation images (ImageNet val for the paper's rFID).")
    ],
    *,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Tokenizer weights instead of the preset's.")
    ] = None,
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
    vgg_weights: Annotated[
        Path | None, typer.Option("--vgg-weights", help="torchvision vgg16-397923af.pth.")
    ] = None,
    force: ForceOpt = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    with_pr: PROpt = True,
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core import prefetch
    from gigatok_core.evaluation import commands

    fetch = functools.partial(
        prefetch.rfid_files,
        tokenizer,
        checkpoint,
        reference=reference,
        lpips=lpips,
        vgg_weights=vgg_weights,
        inception_weights=inception_weights,
        device=device,
        precision=precision,
    )
    if maybe_launch(launch, prefetch=fetch):
        return
    with progress_bar(enabled=is_main()) as on_progress:
        on_progress = global_progress(on_progress)
        report = commands.rfid(
            tokenizer,
            data,
            checkpoint=checkpoint,
            reference=reference,
            save_samples=save_samples,
            precision=precision,
            lpips=lpips,
            vgg_weights=vgg_weights,
            force=force,
            inception_weights=inception_weights,
            batch_size=batch_size,
            device=device,
            with_precision_recall=with_pr,
            json_path=json_path,
            overwrite=overwrite,
            on_progress=on_progress,
        )
    render_report(report)


@app.command(
    "gfid",
    help=(
        "Generation FID: class-balanced samples of a GPT vs ADM's ImageNet-256 batch (+ sFID, IS, P/R).\n\n"
        "Sampling is resumable (an interrupted run keeps its PNGs) and sharded under torchrun; rank 0 scores. "
        "Labels are class-balanced (--num-samples, default 50000, spread evenly over the classes), not "
        "uniform-random as in the official script; they are scored sample index first, so each Inception "
        "Score split mixes all classes. Guidance defaults to the paper's: --cfg-scale 1.75, --cfg-schedule step. "
        "--search runs the official CFG search."
    ),
)
@handle_errors
@launch_options
def gfid(
    gpt: GptOpt,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            help="Folder for the samples (existing PNGs of the same settings are reused: resumable).",
        ),
    ],
    *,
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
    force: ForceOpt = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    with_pr: PROpt = True,
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
    from gigatok_core import prefetch
    from gigatok_core.evaluation import ar_commands

    def show(scale: float, metrics: dict[str, Any]) -> None:
        console.print(f"cfg {scale:g}: FID {metrics.get('fid')}")

    fetch = functools.partial(
        prefetch.gfid_files,
        gpt,
        tokenizer,
        gpt_checkpoint=gpt_checkpoint,
        tokenizer_checkpoint=tokenizer_checkpoint,
        reference=reference,
        inception_weights=inception_weights,
        device=device,
        precision=precision,
    )
    if maybe_launch(launch, prefetch=fetch):
        return
    with progress_bar(enabled=is_main()) as on_progress:
        on_progress = global_progress(on_progress)
        report = ar_commands.gfid(
            gpt,
            output,
            tokenizer=tokenizer,
            gpt_checkpoint=gpt_checkpoint,
            tokenizer_checkpoint=tokenizer_checkpoint,
            reference=reference,
            num_samples=num_samples,
            num_per_class=num_per_class,
            num_classes=num_classes,
            cfg_scale=cfg_scale,
            cfg_schedule=cfg_schedule,
            cfg_start_ratio=cfg_start_ratio,
            cfg_end_ratio=cfg_end_ratio,
            search=search,
            window_grid=window_grid,
            save_npz=save_npz,
            seed=seed,
            precision=precision,
            sample_batch_size=sample_batch_size,
            force=force,
            inception_weights=inception_weights,
            batch_size=batch_size,
            device=device,
            with_precision_recall=with_pr,
            json_path=json_path,
            overwrite=overwrite,
            regenerate=regenerate,
            on_progress=on_progress,
            on_result=show,
        )
    render_report(report)


@app.command(
    "val-loss",
    help=(
        "Validation loss of a GPT: cross-entropy of the tokenizer's codes of --data (ADM centre crop, no flip).\n\n"
        "Reports the official number (unweighted mean over batches of the per-batch mean CE over the 256 "
        "positions) and the per-token mean over all images. Batches are sharded under torchrun; the numbers do "
        "not depend on the number of ranks."
    ),
)
@handle_errors
@launch_options
def val_loss(
    gpt: GptOpt,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="ImageFolder tree: one sub-folder per class, sorted names -> labels (ImageNet val).",
        ),
    ],
    *,
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
    from gigatok_core import prefetch
    from gigatok_core.evaluation import ar_commands

    fetch = functools.partial(
        prefetch.val_loss_files,
        gpt,
        tokenizer,
        gpt_checkpoint=gpt_checkpoint,
        tokenizer_checkpoint=tokenizer_checkpoint,
        device=device,
        data=data,
    )
    if maybe_launch(launch, prefetch=fetch):
        return
    with progress_bar(enabled=is_main()) as on_progress:
        on_progress = global_progress(on_progress)
        report = ar_commands.val_loss(
            gpt,
            data,
            tokenizer=tokenizer,
            gpt_checkpoint=gpt_checkpoint,
            tokenizer_checkpoint=tokenizer_checkpoint,
            precision=precision,
            batch_size=batch_size,
            class_subset=class_subset,
            device=device,
            json_path=json_path,
            overwrite=overwrite,
            on_progress=on_progress,
        )
    render_report(report)
