"""The GPT evaluations behind ``gigatok eval gfid`` and ``gigatok eval val-loss`` (see :mod:`.commands`).

Each takes its request (:class:`~gigatok_core.config.requests.GFIDRequest`,
:class:`~gigatok_core.config.requests.ValLossRequest`) and returns an :class:`EvalReport`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gigatok_core.config.requests import DEFAULT_CFG_SCALE, GFIDRequest, ValLossRequest
from gigatok_core.evaluation import commands
from gigatok_core.evaluation.commands import EvalReport, check_folder, check_json_target, finish
from gigatok_core.utils.progress import ProgressFn


def gfid(
    request: GFIDRequest,
    *,
    on_progress: ProgressFn | None = None,
    on_result: Callable[[float, dict[str, Any]], None] | None = None,
) -> EvalReport | None:
    """``gigatok eval gfid``: sample class-balanced images with a GPT and score them against ADM's batch.

    ``request.gpt`` is a preset or a release (``gpt-b@xl-xxl``), or None: the preset a gigatok
    ``gpt_checkpoint`` names (:func:`gigatok_core.ar.trained.resolve_pairing`). ``cfg_scale`` defaults
    to 1.75, or with ``search`` to the official empirical start for the GPT and schedule.
    ``on_result(scale, metrics)`` is called after each scale of a search. Returns ``None`` on ranks
    other than 0.
    """
    from gigatok_core.ar.guidance import CFGSchedule
    from gigatok_core.ar.trained import resolve_pairing
    from gigatok_core.evaluation.cfg_search import results_csv, run_gfid_search
    from gigatok_core.evaluation.generation import evaluate_generation
    from gigatok_core.tasks.sample import weights_identity

    r = request
    check_json_target(r)
    pairing = resolve_pairing(r.gpt, r.tokenizer, r.gpt_checkpoint, r.tokenizer_checkpoint)
    sched = CFGSchedule(
        DEFAULT_CFG_SCALE if r.cfg_scale is None else r.cfg_scale,
        r.cfg_schedule,
        window_start=r.cfg_start_ratio,
        window_end=r.cfg_end_ratio,
    )
    common = _generation_settings(r, pairing, on_progress)
    settings: dict[str, Any] = {
        "gpt": pairing.gpt,
        "tokenizer": pairing.tokenizer,
        "weights": weights_identity(pairing),  # the exact files (path, sha256) behind the numbers
        "tokenizer_weights": pairing.tokenizer_weights,
        "cfg_schedule": r.cfg_schedule,
        "seed": r.seed,
    }
    if not r.search:
        metrics = evaluate_generation(pairing.gpt, cfg=sched, **common)
        if metrics is None:  # not rank 0
            return None
        settings["cfg_scale"] = sched.scale
        title = f"gFID: {pairing.gpt} (cfg {sched.scale:g} {r.cfg_schedule})"
        return finish(EvalReport(title, metrics, settings), r.json_path)

    result = run_gfid_search(
        pairing.gpt, cfg=sched, start=r.cfg_scale, on_result=on_result, window_grid=r.window_grid, **common
    )
    if result is None:  # not rank 0
        return None
    metrics = {**result.best, "cfg_scale": result.best_scale}
    csv_path = results_csv(r.output)
    settings |= {
        "cfg_scale": result.best_scale,
        "search_csv": str(csv_path),
        "tried": {str(s): m.get("fid") for s, m in result.tried.items()},
    }
    title = f"gFID search: {pairing.gpt} ({r.cfg_schedule}), best cfg {result.best_scale:g}"
    if result.window is not None:
        settings["window"] = list(result.window)
        title += f", window {result.window[0]:.2f}-{result.window[1]:.2f}"
    return finish(EvalReport(title, metrics, settings, [f"search results in {csv_path}"]), r.json_path)


def _generation_settings(r: GFIDRequest, pairing: Any, on_progress: ProgressFn | None) -> dict[str, Any]:
    """The keyword arguments of :func:`~gigatok_core.evaluation.generation.evaluate_generation` (and
    of the CFG search) for a request."""
    common: dict[str, Any] = dict(
        on_progress=on_progress,
        evaluator=commands.make_evaluator(r.inception_weights, r.device, r.batch_size, on_progress),
        reference=r.reference,
        num_per_class=r.images_per_class,
        num_classes=r.num_classes,
        force=r.force,
        with_precision_recall=r.with_precision_recall,
        seed=r.seed,
        precision=r.precision,
        batch_size=r.sample_batch_size,
        device=r.device,
        overwrite=r.overwrite,
        regenerate=r.regenerate,
        gpt_checkpoint=pairing.gpt_checkpoint,
        tokenizer_checkpoint=pairing.tokenizer_checkpoint,
        tokenizer=pairing.tokenizer,
        save_npz=r.save_npz,
        output=r.output,
    )
    if r.sampler != "standard":  # recorded only when used: standard runs keep their settings as before
        common |= {"sampler": r.sampler, "sjd_window": r.sjd_window}
    return common


def val_loss(request: ValLossRequest, *, on_progress: ProgressFn | None = None) -> EvalReport | None:
    """``gigatok eval val-loss``: the GPT's cross-entropy on the tokenizer's codes of ``data``."""
    from gigatok_core.ar.trained import resolve_pairing
    from gigatok_core.evaluation.val_loss import validation_loss
    from gigatok_core.tasks.sample import weights_identity

    r = request
    check_json_target(r)
    data = check_folder(r)
    pairing = resolve_pairing(
        r.gpt, r.tokenizer, r.gpt_checkpoint, r.tokenizer_checkpoint
    )  # --gpt may be left out
    report = validation_loss(
        pairing.gpt,
        data,
        tokenizer=r.tokenizer,
        gpt_checkpoint=r.gpt_checkpoint,
        tokenizer_checkpoint=r.tokenizer_checkpoint,
        precision=r.precision,
        batch_size=r.batch_size,
        class_subset=r.class_subset,
        device=r.device,
        on_progress=on_progress,
    )
    if report is None:  # not rank 0
        return None
    settings = {
        "data": str(data),
        "gpt_checkpoint": str(r.gpt_checkpoint) if r.gpt_checkpoint else None,
        "weights": weights_identity(pairing),  # the exact files (path, sha256) behind the number
    }
    title = f"val loss: {pairing.gpt} ({report.tokenizer}) on {Path(data).name}"
    return finish(EvalReport(title, report.to_dict(), settings), r.json_path)
