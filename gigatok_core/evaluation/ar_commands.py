"""The GPT evaluations behind ``gigatok eval gfid`` and ``gigatok eval val-loss`` (see :mod:`.commands`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gigatok_core.evaluation import commands
from gigatok_core.evaluation.commands import (
    DEFAULT_CFG_SCALE,
    DEFAULT_CFG_SCHEDULE,
    EvalReport,
    check_folder,
    check_json_target,
    check_window_grid,
    finish,
    per_class,
)
from gigatok_core.utils.progress import ProgressFn


def gfid(
    gpt: str | None,
    output: str | Path,
    *,
    tokenizer: str | None = None,
    gpt_checkpoint: str | Path | None = None,
    tokenizer_checkpoint: str | Path | None = None,
    reference: str | Path | None = None,
    num_samples: int | None = None,
    num_per_class: int | None = None,
    num_classes: int = 1000,
    cfg_scale: float | None = None,
    cfg_schedule: str = DEFAULT_CFG_SCHEDULE,
    cfg_start_ratio: float | None = None,
    cfg_end_ratio: float | None = None,
    search: bool = False,
    window_grid: bool = False,
    save_npz: str | Path | None = None,
    seed: int = 0,
    precision: str = "fp32",
    sample_batch_size: int = 32,
    sampler: str = "standard",
    sjd_window: int = 16,
    force: bool = False,
    inception_weights: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
    with_precision_recall: bool = True,
    json_path: str | Path | None = None,
    overwrite: bool = False,
    regenerate: bool = False,
    on_progress: ProgressFn | None = None,
    on_result: Any = None,
) -> EvalReport | None:
    """``gigatok eval gfid``: sample class-balanced images with ``gpt`` and score them against ADM's batch.

    ``gpt`` is a preset or a release (``gpt-b@xl-xxl``), or None: the preset a gigatok
    ``gpt_checkpoint`` names (:func:`gigatok_core.ar.trained.resolve_pairing`). ``cfg_scale`` defaults to 1.75, or with
    ``search`` to the official empirical start for the GPT and schedule. ``on_result(scale,
    metrics)`` is called after each scale of a search. Returns ``None`` on ranks other than 0.
    """
    from gigatok_core.ar.guidance import CFGSchedule
    from gigatok_core.ar.trained import resolve_pairing
    from gigatok_core.evaluation.cfg_search import results_csv, run_gfid_search
    from gigatok_core.evaluation.generation import evaluate_generation
    from gigatok_core.tasks.sample import weights_identity

    check_json_target(json_path, overwrite)
    pairing = resolve_pairing(gpt, tokenizer, gpt_checkpoint, tokenizer_checkpoint)
    gpt, tokenizer = pairing.gpt, pairing.tokenizer
    gpt_checkpoint, tokenizer_checkpoint = pairing.gpt_checkpoint, pairing.tokenizer_checkpoint
    images_per_class = per_class(num_samples, num_per_class, num_classes)
    check_window_grid(window_grid, search, cfg_schedule)
    sched = CFGSchedule(
        DEFAULT_CFG_SCALE if cfg_scale is None else cfg_scale,
        cfg_schedule,
        window_start=cfg_start_ratio,
        window_end=cfg_end_ratio,
    )
    common: dict[str, Any] = dict(
        on_progress=on_progress,
        evaluator=commands.make_evaluator(inception_weights, device, batch_size, on_progress),
        reference=reference,
        num_per_class=images_per_class,
        num_classes=num_classes,
        force=force,
        with_precision_recall=with_precision_recall,
        seed=seed,
        precision=precision,
        batch_size=sample_batch_size,
        device=device,
        overwrite=overwrite,
        regenerate=regenerate,
        gpt_checkpoint=gpt_checkpoint,
        tokenizer_checkpoint=tokenizer_checkpoint,
        tokenizer=tokenizer,
        save_npz=save_npz,
        output=output,
    )
    if sampler != "standard":  # recorded only when used: standard runs keep their settings as before
        common |= {"sampler": sampler, "sjd_window": sjd_window}
    settings: dict[str, Any] = {
        "gpt": gpt,
        "tokenizer": tokenizer,
        "weights": weights_identity(pairing),  # the exact files (path, sha256) behind the numbers
        "tokenizer_weights": pairing.tokenizer_weights,
        "cfg_schedule": cfg_schedule,
        "seed": seed,
    }
    if not search:
        metrics = evaluate_generation(gpt, cfg=sched, **common)
        if metrics is None:  # not rank 0
            return None
        settings["cfg_scale"] = sched.scale
        title = f"gFID: {gpt} (cfg {sched.scale:g} {cfg_schedule})"
        return finish(EvalReport(title, metrics, settings), json_path)

    result = run_gfid_search(
        gpt, cfg=sched, start=cfg_scale, on_result=on_result, window_grid=window_grid, **common
    )
    if result is None:  # not rank 0
        return None
    metrics = {**result.best, "cfg_scale": result.best_scale}
    csv_path = results_csv(output)
    settings |= {
        "cfg_scale": result.best_scale,
        "search_csv": str(csv_path),
        "tried": {str(s): m.get("fid") for s, m in result.tried.items()},
    }
    title = f"gFID search: {gpt} ({cfg_schedule}), best cfg {result.best_scale:g}"
    if result.window is not None:
        settings["window"] = list(result.window)
        title += f", window {result.window[0]:.2f}-{result.window[1]:.2f}"
    return finish(EvalReport(title, metrics, settings, [f"search results in {csv_path}"]), json_path)


def val_loss(
    gpt: str | None,
    data: str | Path,
    *,
    tokenizer: str | None = None,
    gpt_checkpoint: str | Path | None = None,
    tokenizer_checkpoint: str | Path | None = None,
    precision: str | None = None,
    batch_size: int = 32,
    class_subset: bool = False,
    device: str | None = None,
    json_path: str | Path | None = None,
    overwrite: bool = False,
    on_progress: ProgressFn | None = None,
) -> EvalReport | None:
    """``gigatok eval val-loss``: the GPT's cross-entropy on the tokenizer's codes of ``data``."""
    from gigatok_core.ar.trained import resolve_pairing
    from gigatok_core.evaluation.val_loss import validation_loss
    from gigatok_core.tasks.sample import weights_identity

    check_json_target(json_path, overwrite)
    data = check_folder(data, "--data")
    pairing = resolve_pairing(gpt, tokenizer, gpt_checkpoint, tokenizer_checkpoint)  # --gpt may be left out
    gpt = pairing.gpt
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
        return None
    settings = {
        "data": str(data),
        "gpt_checkpoint": str(gpt_checkpoint) if gpt_checkpoint else None,
        "weights": weights_identity(pairing),  # the exact files (path, sha256) behind the number
    }
    title = f"val loss: {gpt} ({report.tokenizer}) on {data.name}"
    return finish(EvalReport(title, report.to_dict(), settings), json_path)
