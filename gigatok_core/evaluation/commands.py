"""One function per ``gigatok eval`` command: validate, run, assemble the report, write ``--json``.

The CLI (``gigatok_cli/eval.py``) only parses options, calls one of these and renders the
returned :class:`EvalReport`. Every input is checked before anything is fetched or computed
(a missing folder is reported as such, not as a failed Inception download), and the ``--json``
target before the work, so hours of sampling never end in "file exists".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.reference import PROTOCOLS, EvalStats
from gigatok_core.runs.settings import write_run_settings
from gigatok_core.utils.progress import ProgressFn

# gFID defaults of the paper's evaluation (docs/evaluation.md#generation): CFG 1.75 with the step schedule, 50 images
# per class (50k samples over the 1000 ImageNet classes).
DEFAULT_CFG_SCALE = 1.75
DEFAULT_CFG_SCHEDULE = "step"
DEFAULT_NUM_PER_CLASS = 50


@dataclass
class EvalReport:
    """What an evaluation returns to its caller: the numbers and what to write beside them."""

    title: str
    metrics: dict[str, Any]  # metric key -> value (see gigatok_cli's labels); "notes": list[str]
    settings: dict[str, Any] = field(default_factory=dict)  # the run's resolved settings (JSON extras)
    messages: list[str] = field(default_factory=list)  # lines for the user ("reference cached at ...")
    json_path: Path | None = None  # where the report was written, if asked


# ---------------------------------------------------------------------------------------------
# Checks shared by the commands
# ---------------------------------------------------------------------------------------------
def check_json_target(path: str | Path | None, overwrite: bool) -> None:
    """Refuse a ``--json`` path that is a folder, or an existing file without ``overwrite``."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise GigatokError(f"--json {path} is a folder", hint="give a file path, e.g. scores.json")
    if path.exists() and not overwrite:
        raise GigatokError(
            f"{path} already exists", hint="pass --overwrite to replace it, or choose another --json path"
        )


def check_protocol_name(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise GigatokError(f"unknown protocol {protocol!r}", hint=f"use one of {', '.join(PROTOCOLS)}")
    return protocol


def check_source(path: str | Path, what: str) -> Path:
    """An evaluation side must exist (a folder of images or an .npz) before the Inception is fetched."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.exists():
        raise GigatokError(
            f"{what} {path} does not exist", hint="pass a folder of images, an image npz or a statistics npz"
        )
    if path.suffix != ".npz":
        raise GigatokError(
            f"{what} {path.name} is neither a folder nor an .npz file",
            hint="pass a folder of images, an ADM-style npz (arr_0) or a statistics npz",
        )
    return path


def check_folder(path: str | Path, option: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise GigatokError(f"{option} {path} {state}", hint=f"pass the folder of images as {option}")
    return path


def per_class(num_samples: int | None, num_per_class: int | None, num_classes: int) -> int:
    """Images per class from ``--num-samples`` / ``--num-per-class`` (default 50 per class).

    gFID labels are class-balanced, so a total must split evenly over the classes.
    """
    if num_samples is None:
        return DEFAULT_NUM_PER_CLASS if num_per_class is None else num_per_class
    if num_samples < 1 or num_samples % num_classes:
        raise GigatokError(
            f"--num-samples {num_samples} does not split evenly over {num_classes} classes",
            hint=f"use a multiple of {num_classes} (e.g. {DEFAULT_NUM_PER_CLASS * num_classes}), so the "
            "classes stay balanced",
        )
    if num_per_class is not None and num_per_class * num_classes != num_samples:
        raise GigatokError(
            f"--num-samples {num_samples} and --num-per-class {num_per_class} disagree "
            f"({num_classes} classes)",
            hint="pass only one of them",
        )
    return num_samples // num_classes


def check_window_grid(window_grid: bool, search: bool, schedule: str) -> None:
    """The official window grid is a search over rectangular windows only."""
    if window_grid and not (search and schedule == "rectangular"):
        raise GigatokError(
            "--window-grid is a search over rectangular windows",
            hint="use it with --search --cfg-schedule rectangular",
        )


def finish(report: EvalReport, json_path: str | Path | None) -> EvalReport:
    """Write ``report`` (metrics + settings + provenance) to ``json_path`` when one is given."""
    if json_path is not None:
        path = Path(json_path)
        report.json_path = write_run_settings(path.parent, path.name, {**report.metrics, **report.settings})
    return report


def make_evaluator(
    inception_weights: str | Path | None, device: str | None, batch_size: int, progress: ProgressFn | None
) -> Any:
    """The :class:`~gigatok_core.evaluation.Evaluator` of a command (its Inception loads on first use)."""
    from gigatok_core.dist import resolve_device
    from gigatok_core.evaluation.evaluate import Evaluator

    return Evaluator(
        inception_weights=inception_weights,
        device=resolve_device(device),
        batch_size=batch_size,
        progress=progress,
    )


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------
def fid(
    samples: str | Path,
    reference: str | Path,
    *,
    protocol: str | None = None,
    force: bool = False,
    inception_weights: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
    with_precision_recall: bool = True,
    json_path: str | Path | None = None,
    overwrite: bool = False,
    on_progress: ProgressFn | None = None,
) -> EvalReport:
    """``gigatok eval fid``: FID, sFID, IS, precision and recall of ``samples`` against ``reference``."""
    from gigatok_core.evaluation.evaluate import compute_metrics
    from gigatok_core.evaluation.reference import check_protocol

    check_json_target(json_path, overwrite)
    samples, reference = check_source(samples, "SAMPLES"), check_source(reference, "REFERENCE")
    if protocol is not None:
        check_protocol(reference, check_protocol_name(protocol), force=force)
    ev = make_evaluator(inception_weights, device, batch_size, on_progress)
    sample_stats = ev.load(samples, need_features=True, label="samples")
    ref_stats: EvalStats = ev.load(reference, need_features=with_precision_recall, label="reference")
    metrics = compute_metrics(
        sample_stats, ref_stats, with_precision_recall=with_precision_recall, device=ev.device
    )
    settings = {"samples": samples, "reference": reference, "protocol": protocol or ref_stats.protocol}
    return finish(EvalReport(f"{samples.name} vs {reference.name}", metrics, settings), json_path)


def build_reference(
    data: str | Path,
    output: str | Path,
    *,
    image_size: int = 256,
    protocol: str = "rfid-imagenet-val",
    with_images: bool = False,
    inception_weights: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
    overwrite: bool = False,
    on_progress: ProgressFn | None = None,
) -> EvalReport:
    """``gigatok eval build-ref``: reference statistics of a folder (ADM centre crop)."""
    check_protocol_name(protocol)
    data = check_folder(data, "--data")
    ev = make_evaluator(inception_weights, device, batch_size, on_progress)
    stats = ev.build_reference(
        data, output, image_size=image_size, protocol=protocol, overwrite=overwrite, with_images=with_images
    )
    return EvalReport(
        f"reference {Path(output).name}",
        {"num_images": stats.count},
        {"data": data, "output": output, "protocol": protocol},
        [f"wrote {output}: {stats.count} images, protocol {protocol}"],
    )


def rfid(
    tokenizer: str,
    data: str | Path,
    *,
    checkpoint: str | Path | None = None,
    reference: str | Path | None = None,
    save_samples: str | Path | None = None,
    precision: str = "fp32",
    lpips: bool = True,
    vgg_weights: str | Path | None = None,
    force: bool = False,
    inception_weights: str | Path | None = None,
    batch_size: int = 32,
    device: str | None = None,
    with_precision_recall: bool = True,
    json_path: str | Path | None = None,
    overwrite: bool = False,
    on_progress: ProgressFn | None = None,
) -> EvalReport | None:
    """``gigatok eval rfid``: reconstruction FID and friends; ``None`` on ranks other than 0."""
    from gigatok_core.evaluation.reconstruction import evaluate_reconstruction

    check_json_target(json_path, overwrite)
    data = check_folder(data, "--data")
    ev = make_evaluator(inception_weights, device, batch_size, on_progress)
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
        with_precision_recall=with_precision_recall,
        on_progress=on_progress,
    )
    if report is None:  # not rank 0
        return None
    messages = [f"reference statistics cached at {report.reference}"] if report.reference_built else []
    from gigatok_core.data.encoder import resolve_tokenizer_checkpoint
    from gigatok_core.weights import tokenizer_identity

    ckpt = resolve_tokenizer_checkpoint(checkpoint) if checkpoint is not None else None
    settings = {
        "tokenizer": tokenizer,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "weights": {"tokenizer": tokenizer_identity(tokenizer, ckpt)},  # path and sha256
        "reference": report.reference,
        "rfid": report.metrics.get("fid"),
    }
    title = f"rFID: {tokenizer} on {data.name}"
    return finish(EvalReport(title, report.metrics, settings, messages), json_path)
