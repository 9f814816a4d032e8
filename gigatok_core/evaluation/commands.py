"""One function per ``gigatok eval`` command: validate, run, assemble the report, write ``--json``.

Each takes its request (:mod:`gigatok_core.config.requests`: ``FIDRequest``, ``BuildRefRequest``,
``RFIDRequest``; the GPT evaluations are in :mod:`.ar_commands`). The CLI (``gigatok_cli/eval.py``)
only builds the request, calls one of these and renders the returned :class:`EvalReport`. Every
input is checked before anything is fetched or computed (a missing folder is reported as such, not
as a failed Inception download), and the ``--json`` target before the work, so hours of sampling
never end in "file exists".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigatok_core.config.requests import BuildRefRequest, FIDRequest, Request, RFIDRequest
from gigatok_core.errors import GigatokError, literal
from gigatok_core.evaluation.reference import PROTOCOLS, EvalStats
from gigatok_core.runs.settings import write_run_settings
from gigatok_core.utils.progress import ProgressFn

# metric key -> its name in a report's table (keys not listed, such as "notes", are not metrics)
METRIC_LABELS = {
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


@dataclass
class EvalReport:
    """What an evaluation returns to its caller: the numbers and what to write beside them."""

    title: str
    metrics: dict[str, Any]  # metric key -> value (named in METRIC_LABELS); "notes": list[str]
    settings: dict[str, Any] = field(default_factory=dict)  # the run's resolved settings (JSON extras)
    messages: list[str] = field(default_factory=list)  # lines for the user ("reference cached at ...")
    json_path: Path | None = None  # where the report was written, if asked

    def rows(self) -> list[tuple[str, str | None]]:
        """The report as a table: (label, value) per metric, floats to 4 decimals, None where not
        computed (e.g. precision/recall without reference features)."""
        return [
            (
                METRIC_LABELS[key],
                None if value is None else f"{value:.4f}" if isinstance(value, float) else str(value),
            )
            for key, value in self.metrics.items()
            if key in METRIC_LABELS
        ]


# ---------------------------------------------------------------------------------------------
# Checks shared by the commands
# ---------------------------------------------------------------------------------------------
def check_json_target(request: Request) -> None:
    """Refuse a ``json_path`` that is a folder, or an existing file without ``overwrite``."""
    if request.json_path is None:  # type: ignore[attr-defined]
        return
    path = Path(request.json_path)  # type: ignore[attr-defined]
    if path.is_dir():
        raise request.error(
            f"{{json_path}} {literal(path)} is a folder", hint="give a file path, e.g. scores.json"
        )
    if path.exists() and not request.overwrite:  # type: ignore[attr-defined]
        raise request.error(
            f"{literal(path)} already exists",
            hint="pass {overwrite} to replace it, or choose another {json_path} path",
        )


def check_protocol_name(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise GigatokError(f"unknown protocol {protocol!r}", hint=f"use one of {', '.join(PROTOCOLS)}")
    return protocol


def check_source(request: Request, setting: str) -> Path:
    """An evaluation side must exist (a folder of images or an .npz) before the Inception is fetched."""
    path = Path(getattr(request, setting))
    if path.is_dir():
        return path
    if not path.exists():
        raise request.error(
            f"{{{setting}}} {literal(path)} does not exist",
            hint="pass a folder of images, an image npz or a statistics npz",
        )
    if path.suffix != ".npz":
        raise request.error(
            f"{{{setting}}} {literal(path.name)} is neither a folder nor an .npz file",
            hint="pass a folder of images, an ADM-style npz (arr_0) or a statistics npz",
        )
    return path


def check_folder(request: Request, setting: str = "data") -> Path:
    """The request's folder of images (``data``) must exist."""
    path = Path(getattr(request, setting))
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise request.error(
            f"{{{setting}}} {literal(path)} {state}", hint=f"pass the folder of images as {{{setting}}}"
        )
    return path


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
def fid(request: FIDRequest, *, on_progress: ProgressFn | None = None) -> EvalReport:
    """``gigatok eval fid``: FID, sFID, IS, precision and recall of ``samples`` against ``reference``."""
    from gigatok_core.evaluation.evaluate import compute_metrics
    from gigatok_core.evaluation.reference import check_protocol

    r = request
    check_json_target(r)
    samples, reference = check_source(r, "samples"), check_source(r, "reference")
    if r.protocol is not None:
        check_protocol(reference, check_protocol_name(r.protocol), force=r.force)
    ev = make_evaluator(r.inception_weights, r.device, r.batch_size, on_progress)
    sample_stats = ev.load(samples, need_features=True, label="samples")
    ref_stats: EvalStats = ev.load(reference, need_features=r.with_precision_recall, label="reference")
    metrics = compute_metrics(
        sample_stats, ref_stats, with_precision_recall=r.with_precision_recall, device=ev.device
    )
    settings = {"samples": samples, "reference": reference, "protocol": r.protocol or ref_stats.protocol}
    return finish(EvalReport(f"{samples.name} vs {reference.name}", metrics, settings), r.json_path)


def build_reference(request: BuildRefRequest, *, on_progress: ProgressFn | None = None) -> EvalReport:
    """``gigatok eval build-ref``: reference statistics of a folder (ADM centre crop)."""
    r = request
    check_protocol_name(r.protocol)
    data = check_folder(r)
    ev = make_evaluator(r.inception_weights, r.device, r.batch_size, on_progress)
    stats = ev.build_reference(
        data,
        r.output,
        image_size=r.image_size,
        protocol=r.protocol,
        overwrite=r.overwrite,
        with_images=r.with_images,
    )
    return EvalReport(
        f"reference {Path(r.output).name}",
        {"num_images": stats.count},
        {"data": data, "output": r.output, "protocol": r.protocol},
        [f"wrote {r.output}: {stats.count} images, protocol {r.protocol}"],
    )


def rfid(request: RFIDRequest, *, on_progress: ProgressFn | None = None) -> EvalReport | None:
    """``gigatok eval rfid``: reconstruction FID and friends; ``None`` on ranks other than 0."""
    from gigatok_core.data.encoder import resolve_tokenizer_checkpoint
    from gigatok_core.evaluation.reconstruction import evaluate_reconstruction
    from gigatok_core.weights import tokenizer_identity

    r = request
    check_json_target(r)
    data = check_folder(r)
    ev = make_evaluator(r.inception_weights, r.device, r.batch_size, on_progress)
    report = evaluate_reconstruction(
        r.tokenizer,
        data,
        evaluator=ev,
        checkpoint=r.checkpoint,
        reference=r.reference,
        precision=r.precision,
        batch_size=r.batch_size,
        save_samples=r.save_samples,
        overwrite=r.overwrite,
        lpips=r.lpips,
        vgg_weights=r.vgg_weights,
        force=r.force,
        with_precision_recall=r.with_precision_recall,
        on_progress=on_progress,
    )
    if report is None:  # not rank 0
        return None
    messages = [f"reference statistics cached at {report.reference}"] if report.reference_built else []
    ckpt = resolve_tokenizer_checkpoint(r.checkpoint) if r.checkpoint is not None else None
    settings = {
        "tokenizer": r.tokenizer,
        "checkpoint": str(r.checkpoint) if r.checkpoint is not None else None,
        "weights": {"tokenizer": tokenizer_identity(r.tokenizer, ckpt)},  # path and sha256
        "reference": report.reference,
        "rfid": report.metrics.get("fid"),
    }
    title = f"rFID: {r.tokenizer} on {data.name}"
    return finish(EvalReport(title, report.metrics, settings, messages), r.json_path)
