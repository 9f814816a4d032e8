"""Class-conditional image sampling: GPT -> codes -> tokenizer -> PNGs (the library behind ``gigatok sample``).

- One PNG per (class, index): ``{class:03d}_{name-slug}_{k:04d}.png``; with the default per-sample
  randomness a PNG depends only on (settings, seed, class, index), not on batch size, batch mates,
  rank count or device type (up to floating-point differences between devices).
- Class-balanced (``num_per_class`` for every class) and resumable: samples whose PNG exists are
  skipped when the folder holds a run with the same settings (``sample.json``). Files from another
  run are never overwritten without ``overwrite=True``.
- Under torchrun each rank takes a strided shard of the plan; rank 0 writes the summaries
  (``grid.png``, ``codes.npz``) after everyone is done. Every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gigatok_core import dist
from gigatok_core.ar.classes import class_name, parse_classes
from gigatok_core.ar.generate import Drawer, SamplingParams, generate, sample_generators
from gigatok_core.ar.guidance import CFGSchedule
from gigatok_core.ar.sjd import SJDStats, generate_sjd
from gigatok_core.config import config_to_dict
from gigatok_core.config.requests import SampleRequest
from gigatok_core.data.images import check_writable, save_npz, save_png, to_uint8
from gigatok_core.errors import literal
from gigatok_core.tasks.sample_output import (
    CODES_FILE,
    GRID_FILE,
    GRID_MAX_CLASSES,
    GRID_MAX_PER_CLASS,
    OUTPUT_KEYS,
    PARTIAL_CODES,
    SETTINGS_FILE,
    SampleItem,
    check_output,
    grid_shape,
    known_codes,
    plan,
    write_codes,
    write_grid,
)
from gigatok_core.utils.progress import ProgressFn

__all__ = [
    "CODES_FILE",
    "GRID_FILE",
    "GRID_MAX_CLASSES",
    "GRID_MAX_PER_CLASS",
    "OUTPUT_KEYS",
    "PARTIAL_CODES",
    "SETTINGS_FILE",
    "SampleItem",
    "SampleRequest",
    "SampleResult",
    "decode_fixed_batches",
    "grid_shape",
    "plan",
    "sample_images",
    "sample_request",
]


@dataclass
class SampleResult:
    output_dir: str
    total: int  # samples in the plan
    generated: list[str]  # PNGs written by this process
    skipped: int  # PNGs of this process's shard that already existed
    files: list[str] = field(default_factory=list)  # settings / grid / codes written
    settings: dict[str, Any] = field(default_factory=dict)
    generated_total: int = 0  # over all ranks
    skipped_total: int = 0
    forward_passes: int = 0  # GPT forward passes this process ran
    standard_passes: int = 0  # what the standard sampler runs for the same batches (tokens per batch)


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------
def sample_images(
    request: SampleRequest | str | Sequence[int | str],
    *,
    ctx: dist.DistContext | None = None,
    on_progress: ProgressFn | None = None,
    cfg: CFGSchedule | None = None,
    sampling: SamplingParams | None = None,
    **settings: Any,
) -> SampleResult:
    """Generate ``num_per_class`` images for each class into ``output``: the :class:`SampleRequest`
    ``request`` (:mod:`gigatok_core.config.requests` documents the settings).

    Or in keyword form: ``sample_images([22, 388], output="samples", gpt="gpt-b", grid=True)``
    takes the classes and the request's other settings, with ``cfg`` a
    :class:`~gigatok_core.ar.CFGSchedule` and ``sampling`` a :class:`~gigatok_core.ar.SamplingParams`
    in place of the ``cfg_*`` and ``temperature``/``top_k``/``top_p`` settings.

    ``ctx``: the ranks (default: this process's :func:`gigatok_core.dist.get_context`; a
    :class:`gigatok_core.dist.HandSplit` splits a run by hand, the main rank last, as it writes the
    summaries). ``on_progress(done, total, stage="sample")`` counts this process's images.
    ``compile=True`` compiles the GPT decode step with ``torch.compile`` (CUDA graphs on CUDA; the
    first batch, and a smaller last batch, pay the compilation). ``sampler="sjd"`` draws with
    speculative Jacobi decoding (:mod:`gigatok_core.ar.sjd`): the same distribution in fewer forward
    passes, but other images than the standard sampler's for a seed.
    """
    from gigatok_core.ar.load import load_gpt
    from gigatok_core.tokenizer import load_tokenizer

    if not isinstance(request, SampleRequest):
        request = sample_request(request, cfg=cfg, sampling=sampling, **settings)
    elif cfg or sampling or settings:
        raise TypeError("sample_images(request) takes its settings from the request alone")
    run = _prepare(request, ctx)
    output, settings_ = run.output, run.settings
    folder, resuming = check_output(
        output,
        run.items,
        settings_,
        overwrite=request.overwrite,
        save_codes=request.save_codes,
        grid=request.grid,
    )
    if resuming and request.rng == "official" and not request.overwrite:
        raise request.error(
            f"{literal(output)} holds part of a run, and {{rng}} official cannot resume (its random "
            "stream depends on every earlier batch)",
            hint="pass {overwrite}, or use the default per-sample rng",
        )
    # ---- models (before sample.json: a run that cannot start leaves no settings behind) ---------
    pairing = run.pairing
    tok = load_tokenizer(
        pairing.tokenizer, checkpoint=pairing.tokenizer_checkpoint, device=run.dev, dtype=run.dtype
    )
    model, _ = load_gpt(
        pairing.gpt,
        tokenizer=pairing.tokenizer,
        checkpoint=pairing.gpt_checkpoint,
        device=run.dev,
        dtype=run.dtype,
    )
    # The main rank claims the folder (--overwrite: removes the previous run's files); then every
    # rank writes the same settings before its first PNG, so whoever sees a PNG sees them.
    if run.ctx.is_main:
        folder.claim(overwrite=request.overwrite)
    run.ctx.barrier()
    if not run.ctx.is_main:
        folder.claim()
    result = _sample_shard(request, run, model, tok, on_progress)
    _write_summaries(request, run, result)
    return result


def sample_request(
    classes: str | Sequence[int | str],
    *,
    cfg: CFGSchedule | None = None,
    sampling: SamplingParams | None = None,
    **settings: Any,
) -> SampleRequest:
    """The :class:`SampleRequest` of :func:`sample_images`'s keyword form."""
    if cfg is not None:
        settings |= {
            "cfg_scale": cfg.scale,
            "cfg_schedule": cfg.name,
            "cfg_start_ratio": cfg.window_start,
            "cfg_end_ratio": cfg.window_end,
            "cfg_interval": cfg.interval,
        }
    if sampling is not None:
        settings |= {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p}
    return SampleRequest(classes, **settings)


@dataclass
class _Run:
    """A request resolved: the pairing, the plan, the device and the settings sample.json records."""

    pairing: Any
    class_ids: list[int]
    cfg: CFGSchedule
    sampling: SamplingParams
    dev: torch.device
    dtype: torch.dtype
    ctx: dist.DistContext
    output: Path
    items: list[SampleItem]
    settings: dict[str, Any]


def _prepare(request: SampleRequest, ctx: dist.DistContext | None) -> _Run:
    """Everything checked before any heavy work: the pairing, classes, guidance, device, output folder."""
    from gigatok_core.ar.load import resolve_gpt
    from gigatok_core.ar.trained import resolve_pairing

    r = request
    pairing = resolve_pairing(r.gpt, r.tokenizer, r.gpt_checkpoint, r.tokenizer_checkpoint)
    class_ids = parse_classes(r.classes, pairing.class_names)
    cfg = CFGSchedule(
        r.cfg_scale,
        r.cfg_schedule,
        window_start=r.cfg_start_ratio,
        window_end=r.cfg_end_ratio,
        interval=r.cfg_interval,
    )
    sampling = SamplingParams(temperature=r.temperature, top_k=r.top_k, top_p=r.top_p)
    dev = dist.resolve_device(r.device)
    dtype = dist.resolve_precision(r.precision, dev)
    gpt_cfg, _, _ = resolve_gpt(pairing.gpt, pairing.tokenizer, pairing.gpt_checkpoint)
    output = check_writable(r.output)  # nothing is created before the models are loaded
    ctx = ctx or dist.get_context(dev)
    settings = run_settings(r, pairing, class_ids, cfg, sampling, dev, gpt_cfg, ctx.world_size)
    items = plan(class_ids, r.num_per_class, pairing.class_names)
    return _Run(pairing, class_ids, cfg, sampling, dev, dtype, ctx, output, items, settings)


def run_settings(
    r: SampleRequest,
    pairing: Any,
    class_ids: list[int],
    cfg: CFGSchedule,
    sampling: SamplingParams,
    dev: torch.device,
    gpt_cfg: Any,
    world_size: int,
) -> dict[str, Any]:
    """What ``sample.json`` records of a run: the request resolved (the keys older folders have)."""
    run_names = pairing.class_names
    gpt_checkpoint, tokenizer_checkpoint = pairing.gpt_checkpoint, pairing.tokenizer_checkpoint
    settings = {
        "command": "sample",
        "gpt": pairing.gpt,
        "tokenizer": pairing.tokenizer,
        "release": pairing.release.name if pairing.release else None,
        "gpt_checkpoint": str(gpt_checkpoint.resolve()) if gpt_checkpoint else None,
        "tokenizer_checkpoint": str(tokenizer_checkpoint.resolve()) if tokenizer_checkpoint else None,
        "tokenizer_weights": pairing.tokenizer_weights,
        "weights": weights_identity(pairing),
        "classes": class_ids,
        "class_names": [run_names[c] if run_names else class_name(c) for c in class_ids],
        "run_class_names": list(run_names) if run_names else None,
        "num_per_class": r.num_per_class,
        "cfg": {
            "scale": cfg.scale,
            "schedule": cfg.name,
            "window_start": cfg.start,
            "window_end": cfg.end,
            "interval": cfg.interval,
        },
        "sampling": {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p},
        "seed": r.seed,
        "rng": r.rng,
        **({"sampler": {"name": "sjd", "window": r.sjd_window}} if r.sampler == "sjd" else {}),
        "precision": r.precision,
        "batch_size": r.batch_size,
        "compile": r.compile,
        "device": dev.type,
        "file_names": "{class:03d}_{name-slug}_{k:04d}.png",
        "pixels": "clamp(127.5 * x + 128, 0, 255) truncated to uint8",
        "gpt_config": {"preset": pairing.gpt, **config_to_dict(gpt_cfg)},
        "world_size": world_size,
    }
    # official stream: depends on batch size and ranks (docs/ar.md#reproducible-per-sample-randomness)
    if r.rng == "official":
        settings["rng_note"] = (
            f"torch.multinomial on one generator seeded seed*world+rank; batch {r.batch_size}"
        )
    return settings


def _sample_shard(
    r: SampleRequest, run: _Run, model: torch.nn.Module, tok: torch.nn.Module, on_progress: ProgressFn | None
) -> SampleResult:
    """This rank's share of the plan: the samples whose PNG (or codes) are missing, batch by batch."""
    output, ctx = run.output, run.ctx
    mine = ctx.shard(run.items)
    have_codes = known_codes(output) if r.save_codes and not r.overwrite else {}
    todo = [
        it
        for it in mine
        if r.overwrite
        or not (output / f"{it.stem}.png").exists()
        or (r.save_codes and it.stem not in have_codes)
    ]
    result = SampleResult(
        output_dir=str(output),
        total=len(run.items),
        generated=[],
        skipped=len(mine) - len(todo),
        settings=run.settings,
    )
    official = (
        Drawer("official", seed=r.seed * ctx.world_size + ctx.rank, device=run.dev)
        if r.rng == "official"
        else None
    )
    done = len(mine) - len(todo)
    if on_progress:
        on_progress(done, len(mine), stage="sample")
    for start in range(0, len(todo), r.batch_size):
        batch = todo[start : start + r.batch_size]
        drawer = official or Drawer(
            "per-sample",
            generators=sample_generators(r.seed, [it.class_idx for it in batch], [it.index for it in batch]),
        )
        codes = _generate(r, run, model, batch, drawer, result)
        pixels = decode_fixed_batches(tok, codes)
        for it, px in zip(batch, pixels, strict=True):
            save_png(output / f"{it.stem}.png", px)
            result.generated.append(str(output / f"{it.stem}.png"))
        if r.save_codes:
            save_npz(
                output / PARTIAL_CODES / f"{batch[0].stem}.r{ctx.rank}.npz",
                {"names": np.array([it.stem for it in batch]), "codes": codes.cpu().numpy()},
            )
        done += len(batch)
        if on_progress:
            on_progress(done, len(mine), stage="sample")
    return result


def _generate(
    r: SampleRequest,
    run: _Run,
    model: torch.nn.Module,
    batch: list[SampleItem],
    drawer: Drawer,
    result: SampleResult,
) -> torch.Tensor:
    """One batch of codes (B, N) int64 with the request's sampler; counts its forward passes."""
    labels = torch.tensor([it.class_idx for it in batch])
    if r.sampler == "sjd":
        stats = SJDStats()
        codes = generate_sjd(
            model,
            labels,
            drawer.generators,
            cfg=run.cfg,
            sampling=run.sampling,
            window=r.sjd_window,
            compile=r.compile,
            stats=stats,
        )
        result.forward_passes += stats.passes
    else:
        codes = generate(model, labels, drawer, cfg=run.cfg, sampling=run.sampling, compile=r.compile)
        result.forward_passes += codes.shape[1]
    result.standard_passes += codes.shape[1]
    return codes


def _write_summaries(r: SampleRequest, run: _Run, result: SampleResult) -> None:
    """Totals over the ranks; the main rank (after everyone) writes codes.npz and grid.png."""
    counts = run.ctx.gather_objects((len(result.generated), result.skipped))  # a collective: also a barrier
    result.generated_total = sum(c[0] for c in counts)  # type: ignore[index]
    result.skipped_total = sum(c[1] for c in counts)  # type: ignore[index]
    result.files.append(str(run.output / SETTINGS_FILE))
    if run.ctx.is_main:
        if r.save_codes:
            result.files.append(str(write_codes(run.output, run.items)))
        if r.grid:
            result.files.append(str(write_grid(run.output, run.items)))


def weights_identity(pairing: Any) -> dict[str, Any]:
    """The exact weights of a :class:`gigatok_core.ar.trained.Pairing`: path and sha256 of each file
    (a released file: its registered sha256, verified when it was fetched; ``tiny``: seeded random)."""
    from gigatok_core.weights import file_record, released_record, tokenizer_identity

    if pairing.gpt_checkpoint is not None:
        gpt = file_record(pairing.gpt_checkpoint)
    elif pairing.release is not None:
        gpt = released_record(pairing.release.weights_record)
    else:
        gpt = {"path": None, "sha256": None, "random": f"seeded ({pairing.gpt})"}
    return {"gpt": gpt, "tokenizer": tokenizer_identity(pairing.tokenizer, pairing.tokenizer_checkpoint)}


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def decode_chunk(device: torch.device) -> int:
    """Images per tokenizer decode: fixed per device type (one on CPU, where batching gains nothing)."""
    return 8 if device.type == "cuda" else 1


@torch.inference_mode()
def decode_fixed_batches(tok: torch.nn.Module, codes: torch.Tensor) -> np.ndarray:
    """Codes (B, N) -> uint8 images (B, H, W, 3), decoded in batches of one fixed shape.

    The decoder's kernels are picked by batch shape, and a different shape moves some pixels by one
    level; decoding every image in a batch of :func:`decode_chunk` rows (the last one padded with
    copies) keeps the PNGs independent of ``--batch-size`` and of the number of processes.
    """
    chunk = decode_chunk(codes.device)
    out = []
    for start in range(0, len(codes), chunk):
        part = codes[start : start + chunk]
        padded = torch.cat([part, part[-1:].expand(chunk - len(part), -1)]) if len(part) < chunk else part
        out.append(to_uint8(tok.decode_codes(padded).float())[: len(part)])
    return np.concatenate(out)
