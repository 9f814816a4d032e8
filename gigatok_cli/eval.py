"""`gigatok eval`: FID-family metrics in one process (no TensorFlow, no second Python)."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gigatok_cli._common import console, handle_errors, out
from gigatok_cli.launch import SINGLE, LaunchOptions, global_progress, launch_options, maybe_launch
from gigatok_core.errors import GigatokError

app = typer.Typer(
    help="Evaluate tokenizers and generators in one Python process (no TensorFlow): fid (two sides), "
    "build-ref (reference statistics), rfid (tokenizer reconstruction), gfid (GPT samples, optional CFG "
    "search), val-loss (GPT cross-entropy). rfid, gfid and val-loss also run under torchrun "
    "(`torchrun --nproc-per-node N -m gigatok_cli.main eval ...`); rank 0 prints the results.",
    no_args_is_help=True,
)

# ---------------------------------------------------------------------------------------------
# Shared options
# ---------------------------------------------------------------------------------------------
InceptionOpt = Annotated[
    Path | None,
    typer.Option(
        "--inception-weights",
        help="FID Inception weights (pt_inception-2015-12-05-6726825d.pth); default: the cache.",
        envvar="GIGATOK_INCEPTION_WEIGHTS",
    ),
]
BatchOpt = Annotated[
    int, typer.Option("--batch-size", help="Images per Inception batch (results do not depend on it).")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N or auto (default).")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write the numbers to this JSON file.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Use a reference made for another protocol anyway.")]
GptOpt = Annotated[str, typer.Option("--gpt", help="GPT preset or release, e.g. gpt-b@xl-xxl.")]
PairedTokenizerOpt = Annotated[
    str | None, typer.Option("--tokenizer", help="Tokenizer preset (default: the GPT's).")
]
GptCheckpointOpt = Annotated[
    Path | None, typer.Option("--gpt-checkpoint", help="GPT weights instead of the release's.")
]
TokenizerCheckpointOpt = Annotated[
    Path | None, typer.Option("--tokenizer-checkpoint", help="Tokenizer weights instead of the preset's.")
]
PROpt = Annotated[
    bool,
    typer.Option(
        "--precision-recall/--no-precision-recall",
        help="Compute improved precision/recall (needs reference features).",
    ),
]

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


def _is_main() -> bool:
    from gigatok_core.dist import dist_info

    return dist_info().is_main


@contextlib.contextmanager
def _progress() -> Iterator[Any]:
    """A progress factory for :class:`Evaluator`: one bar per feature-extraction pass (rank 0 only)."""
    if not _is_main():
        yield lambda label, total: lambda n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:

        def factory(label: str, total: int | None):
            task = bar.add_task(f"inception: {label}", total=total)
            return lambda n: bar.advance(task, n)

        yield factory


def _evaluator(inception_weights: Path | None, device: str | None, batch_size: int, progress: Any):
    from gigatok_core.dist import resolve_device
    from gigatok_core.evaluation import Evaluator

    return Evaluator(
        inception_weights=inception_weights,
        device=resolve_device(device),
        batch_size=batch_size,
        progress=progress,
    )


def _check_json_target(path: Path | None, overwrite: bool) -> None:
    if path is not None and path.is_dir():
        raise GigatokError(f"--json {path} is a folder", hint="give a file path, e.g. scores.json")
    if path is not None and path.exists() and not overwrite:
        raise GigatokError(
            f"{path} already exists", hint="pass --overwrite to replace it, or choose another --json path"
        )


def _render(
    title: str, metrics: dict[str, Any], json_path: Path | None, extra: dict[str, Any] | None = None
) -> None:
    from gigatok_core.evaluation.evaluate import finite_or_none
    from gigatok_core.images import atomic_write_bytes

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if key not in LABELS:
            continue
        if value is None:
            shown = "[dim]n/a[/]"
        elif isinstance(value, float):
            shown = f"{value:.4f}"
        else:
            shown = str(value)
        table.add_row(LABELS[key], shown)
    out.print(table)
    for note in metrics.get("notes", []):
        out.print(f"[dim]note: {note}[/]")
    if json_path is not None:
        payload = {k: finite_or_none(v) for k, v in {**metrics, **(extra or {})}.items()}
        atomic_write_bytes(json_path, (json.dumps(payload, indent=2) + "\n").encode())
        console.print(f"wrote {json_path}")


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
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            help="Check that REFERENCE was made for this protocol: gfid-adm or rfid-imagenet-val.",
        ),
    ] = None,
    force: ForceOpt = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    with_pr: PROpt = True,
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """FID, sFID, Inception Score, precision and recall of SAMPLES against REFERENCE (ADM's evaluator)."""
    from gigatok_core.evaluation import PROTOCOLS, check_protocol, compute_metrics

    _check_json_target(json_path, overwrite)
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise GigatokError(f"unknown protocol {protocol!r}", hint=f"use one of {', '.join(PROTOCOLS)}")
        check_protocol(reference, protocol, force=force)
    with _progress() as progress:
        ev = _evaluator(inception_weights, device, batch_size, progress)
        sample_stats = ev.load(samples, need_features=True, label="samples")
        ref_stats = ev.load(reference, need_features=with_pr, label="reference")
        metrics = compute_metrics(sample_stats, ref_stats, with_precision_recall=with_pr, device=ev.device)
    _render(
        f"{samples.name} vs {reference.name}",
        metrics,
        json_path,
        {"samples": str(samples), "reference": str(reference), "protocol": protocol or ref_stats.protocol},
    )


@app.command("build-ref")
@handle_errors
def build_ref(
    data: Annotated[Path, typer.Option("--data", help="Folder of reference images (e.g. ImageNet val).")],
    output: Annotated[Path, typer.Option("--output", help="Statistics npz to write.")],
    *,
    image_size: Annotated[int, typer.Option("--image-size", help="ADM centre-crop size.")] = 256,
    protocol: Annotated[
        str, typer.Option("--protocol", help="What the reference is for.")
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
    device: DeviceOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Build a reference (mu/sigma/mu_s/sigma_s + pool features) from a folder, ADM centre crop."""
    from gigatok_core.evaluation import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise GigatokError(f"unknown protocol {protocol!r}", hint=f"use one of {', '.join(PROTOCOLS)}")
    with _progress() as progress:
        ev = _evaluator(inception_weights, device, batch_size, progress)
        stats = ev.build_reference(
            data,
            output,
            image_size=image_size,
            protocol=protocol,
            overwrite=overwrite,
            with_images=with_images,
        )
    console.print(f"wrote {output}: {stats.count} images, protocol {protocol}")


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
    tokenizer: Annotated[
        str, typer.Option("--tokenizer", help="Tokenizer preset (see `gigatok download --list`).")
    ],
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
    precision: Annotated[
        str, typer.Option("--precision", help="Tokenizer precision: fp32, bf16, fp16.")
    ] = "fp32",
    lpips: Annotated[
        bool, typer.Option("--lpips/--no-lpips", help="Compute LPIPS-VGG (needs vgg16 weights).")
    ] = True,
    vgg_weights: Annotated[
        Path | None, typer.Option("--vgg-weights", help="torchvision vgg16-397923af.pth.")
    ] = None,
    force: ForceOpt = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = None,
    with_pr: PROpt = True,
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core import prefetch
    from gigatok_core.evaluation.reconstruction import evaluate_reconstruction

    _check_json_target(json_path, overwrite)
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
    with _progress() as progress:
        ev = _evaluator(inception_weights, device, batch_size, progress)
        cb = progress("reconstruct", None)
        done = [0]

        def on_progress(n: int, total: int) -> None:
            cb(n - done[0])
            done[0] = n

        on_progress = global_progress(on_progress)

        report = evaluate_reconstruction(
            tokenizer,
            data,
            evaluator=ev,
            checkpoint=checkpoint,
            reference=reference,
            precision=precision,
            batch_size=batch_size,
            save_samples=save_samples,
            overwrite=overwrite,
            lpips=lpips,
            vgg_weights=vgg_weights,
            force=force,
            with_precision_recall=with_pr,
            on_progress=on_progress,
        )
    if report is None:  # not rank 0
        return
    if report.reference_built:
        console.print(f"reference statistics cached at {report.reference}")
    _render(
        f"rFID: {tokenizer} on {data.name}",
        report.metrics,
        json_path,
        {
            "tokenizer": tokenizer,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "reference": report.reference,
            "rfid": report.metrics.get("fid"),
        },
    )


@app.command(
    "gfid",
    help=(
        "Generation FID: class-balanced samples of a GPT vs ADM's ImageNet-256 batch (+ sFID, IS, P/R).\n\n"
        "Sampling is resumable (an interrupted run keeps its PNGs) and sharded under torchrun; rank 0 scores. "
        "Labels are class-balanced (--num-samples, default 50000, spread evenly over the classes), not "
        "uniform-random as in the official script; they are scored sample index first, so each Inception "
        "Score split mixes all classes. "
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
    cfg_scale: Annotated[
        float | None,
        typer.Option(
            "--cfg-scale",
            help="Guidance scale (default 1.75; with --search: the start, default the official "
            "empirical start for the GPT and schedule).",
        ),
    ] = None,
    cfg_schedule: Annotated[
        str, typer.Option("--cfg-schedule", help="CFG schedule (see `gigatok sample`).")
    ] = "step",
    cfg_start_ratio: Annotated[
        float | None,
        typer.Option(
            "--cfg-start-ratio", help="Step start (default 0.18) or rectangular window start (0.05)."
        ),
    ] = None,
    cfg_end_ratio: Annotated[
        float | None, typer.Option("--cfg-end-ratio", help="Rectangular window end (default 1.0).")
    ] = None,
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
    precision: Annotated[str, typer.Option("--precision", help="fp32, bf16 or fp16.")] = "fp32",
    sample_batch_size: Annotated[
        int, typer.Option("--sample-batch-size", help="Images per generation batch.")
    ] = 32,
    force: ForceOpt = False,
    inception_weights: InceptionOpt = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
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
    from gigatok_core.ar.cfg import CFGSchedule
    from gigatok_core.evaluation.cfg_search import results_csv, run_gfid_search
    from gigatok_core.evaluation.generation import evaluate_generation

    _check_json_target(json_path, overwrite)
    num_per_class = _per_class(num_samples, num_per_class, num_classes)
    if window_grid and not (search and cfg_schedule == "rectangular"):
        raise GigatokError(
            "--window-grid is a search over rectangular windows",
            hint="use it with --search --cfg-schedule rectangular",
        )
    sched = CFGSchedule(
        1.75 if cfg_scale is None else cfg_scale,
        cfg_schedule,
        window_start=cfg_start_ratio,
        window_end=cfg_end_ratio,
    )
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
    with _progress() as progress:
        ev = _evaluator(inception_weights, device, batch_size, progress)
        cb = progress("sample (this rank)", None)
        done = [0]

        def on_progress(n: int, total: int) -> None:
            cb(max(n - done[0], 0))
            done[0] = n  # restarts at 0 for each CFG value of a search

        on_progress = global_progress(on_progress)

        common: dict[str, Any] = dict(
            on_progress=on_progress,
            evaluator=ev,
            reference=reference,
            num_per_class=num_per_class,
            num_classes=num_classes,
            force=force,
            with_precision_recall=with_pr,
            seed=seed,
            precision=precision,
            batch_size=sample_batch_size,
            device=device,
            overwrite=overwrite,
            regenerate=regenerate,
            gpt_checkpoint=gpt_checkpoint,
            tokenizer_checkpoint=tokenizer_checkpoint,
        )
        if not search:
            metrics = evaluate_generation(
                gpt, output=output, tokenizer=tokenizer, cfg=sched, save_npz=save_npz, **common
            )
        else:

            def show(scale: float, m: dict[str, Any]) -> None:
                console.print(f"cfg {scale:g}: FID {m.get('fid')}")

            result = run_gfid_search(
                gpt,
                output=output,
                cfg=sched,
                start=cfg_scale,
                tokenizer=tokenizer,
                save_npz=save_npz,
                on_result=show,
                window_grid=window_grid,
                **common,
            )
            metrics = None if result is None else {**result.best, "cfg_scale": result.best_scale}
    if metrics is None:  # not rank 0
        return
    extra = {
        "gpt": gpt,
        "tokenizer": tokenizer,
        "cfg_scale": metrics.get("cfg_scale", sched.scale),
        "cfg_schedule": cfg_schedule,
        "seed": seed,
    }
    if search:
        csv_path = results_csv(output)
        console.print(f"search results in {csv_path}")
        extra |= {
            "search_csv": str(csv_path),
            "tried": {str(s): m.get("fid") for s, m in result.tried.items()},
        }
        title = f"gFID search: {gpt} ({cfg_schedule}), best cfg {result.best_scale:g}"
        if result.window is not None:
            extra["window"] = list(result.window)
            title += f", window {result.window[0]:.2f}-{result.window[1]:.2f}"
    else:
        title = f"gFID: {gpt} (cfg {sched.scale:g} {cfg_schedule})"
    _render(title, metrics, json_path, extra)


def _per_class(num_samples: int | None, num_per_class: int | None, num_classes: int) -> int:
    """Images per class from --num-samples / --num-per-class (default 50 per class)."""
    if num_samples is None:
        return 50 if num_per_class is None else num_per_class
    if num_samples < 1 or num_samples % num_classes:
        raise GigatokError(
            f"--num-samples {num_samples} does not split evenly over {num_classes} classes",
            hint=f"use a multiple of {num_classes} (e.g. {50 * num_classes}), so the classes stay balanced",
        )
    if num_per_class is not None and num_per_class * num_classes != num_samples:
        raise GigatokError(
            f"--num-samples {num_samples} and --num-per-class {num_per_class} disagree "
            f"({num_classes} classes)",
            hint="pass only one of them",
        )
    return num_samples // num_classes


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
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision", help="GPT autocast: fp32, bf16, fp16 (default bf16 on CUDA, fp32 on CPU)."
        ),
    ] = None,
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
    device: DeviceOpt = None,
    json_path: JsonOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core import prefetch
    from gigatok_core.evaluation.val_loss import validation_loss

    _check_json_target(json_path, overwrite)
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
    with _progress() as progress:
        cb = progress("val-loss batches", None)
        done = [0]

        def on_progress(n: int, total: int) -> None:
            cb(n - done[0])
            done[0] = n

        on_progress = global_progress(on_progress)

        report = validation_loss(
            gpt,
            data,
            tokenizer=tokenizer,
            gpt_checkpoint=gpt_checkpoint,
            tokenizer_checkpoint=tokenizer_checkpoint,
            precision=precision,
            batch_size=batch_size,
            class_subset=class_subset,
            device=device,
            on_progress=on_progress,
        )
    if report is None:  # not rank 0
        return
    info = report.to_dict()
    _render(
        f"val loss: {gpt} ({report.tokenizer}) on {data.name}",
        info,
        json_path,
        {"data": str(data), "gpt_checkpoint": str(gpt_checkpoint) if gpt_checkpoint else None},
    )
