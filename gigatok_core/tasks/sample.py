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
from gigatok_core.ar.generate import RNG_MODES, Drawer, SamplingParams, generate, sample_generators
from gigatok_core.ar.guidance import CFGSchedule
from gigatok_core.ar.sjd import DEFAULT_WINDOW, SJDStats, generate_sjd
from gigatok_core.choices import SAMPLERS
from gigatok_core.config import config_to_dict
from gigatok_core.data.images import check_writable, save_npz, save_png, to_uint8
from gigatok_core.errors import GigatokError
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
    "SampleResult",
    "decode_fixed_batches",
    "grid_shape",
    "plan",
    "sample_images",
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
    classes: str | Sequence[int | str],
    *,
    output: str | Path,
    gpt: str | None = None,
    tokenizer: str | None = None,
    num_per_class: int = 1,
    cfg: CFGSchedule | None = None,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    rng: str = "per-sample",
    precision: str = "fp32",
    batch_size: int = 8,
    device: str | None = None,
    gpt_checkpoint: str | Path | None = None,
    tokenizer_checkpoint: str | Path | None = None,
    grid: bool = False,
    save_codes: bool = False,
    overwrite: bool = False,
    ctx: dist.DistContext | None = None,
    on_progress: ProgressFn | None = None,
    compile: bool = False,
    sampler: str = "standard",
    sjd_window: int = DEFAULT_WINDOW,
) -> SampleResult:
    """Generate ``num_per_class`` images for each class into ``output``.

    ``ctx``: the ranks (default: this process's :func:`gigatok_core.dist.get_context`; a
    :class:`gigatok_core.dist.HandSplit` splits a run by hand, the main rank last, as it writes the
    summaries). ``on_progress(done, total, stage="sample")``
    counts this process's images. ``compile=True`` compiles the GPT decode step with ``torch.compile`` (CUDA graphs
    on CUDA; the first batch, and a smaller last batch, pay the compilation).
    ``sampler="sjd"`` draws with speculative Jacobi decoding (:mod:`gigatok_core.ar.sjd`,
    ``sjd_window`` draft tokens per pass): the same distribution in fewer forward passes, but other
    images than the standard sampler's for a seed (needs the per-sample ``rng``).
    """
    from gigatok_core.ar.load import load_gpt, resolve_gpt
    from gigatok_core.ar.trained import resolve_pairing
    from gigatok_core.tokenizer import load_tokenizer

    # ---- validate everything before any heavy work ----------------------------------------
    pairing = resolve_pairing(gpt, tokenizer, gpt_checkpoint, tokenizer_checkpoint)
    gpt, tok_name, release = pairing.gpt, pairing.tokenizer, pairing.release
    gpt_checkpoint, tokenizer_checkpoint = pairing.gpt_checkpoint, pairing.tokenizer_checkpoint
    run_names = pairing.class_names
    class_ids = parse_classes(classes, run_names)
    if num_per_class < 1:
        raise GigatokError(f"--num-per-class must be at least 1, got {num_per_class}")
    if batch_size < 1:
        raise GigatokError(f"--batch-size must be at least 1, got {batch_size}")
    if rng not in RNG_MODES:
        raise GigatokError(f"unknown --rng {rng!r}", hint=f"use one of {', '.join(RNG_MODES)}")
    if sampler not in SAMPLERS:
        raise GigatokError(f"unknown --sampler {sampler!r}", hint=f"use one of {', '.join(SAMPLERS)}")
    if sampler == "sjd" and sjd_window < 1:
        raise GigatokError(
            f"--sjd-window must be at least 1, got {sjd_window}", hint=f"the default is {DEFAULT_WINDOW}"
        )
    if sampler == "sjd" and rng != "per-sample":
        raise GigatokError(
            "--sampler sjd draws from per-sample generators; --rng official replays the official "
            "sampler's single torch.multinomial stream, which SJD does not use",
            hint="leave out --rng (per-sample is the default), or use the standard sampler",
        )
    cfg = cfg or CFGSchedule()
    sampling = sampling or SamplingParams()
    dev = dist.resolve_device(device)
    dtype = dist.resolve_precision(precision, dev)
    gpt_cfg, _, _ = resolve_gpt(gpt, tok_name, gpt_checkpoint)
    if not 0 <= seed < 2**63:
        raise GigatokError(f"--seed must lie in 0 .. 2^63-1, got {seed}")
    output = check_writable(output)  # nothing is created before the models are loaded

    settings = {
        "command": "sample",
        "gpt": gpt,
        "tokenizer": tok_name,
        "release": release.name if release else None,
        "gpt_checkpoint": str(gpt_checkpoint.resolve()) if gpt_checkpoint else None,
        "tokenizer_checkpoint": str(tokenizer_checkpoint.resolve()) if tokenizer_checkpoint else None,
        "tokenizer_weights": pairing.tokenizer_weights,
        "weights": weights_identity(pairing),
        "classes": class_ids,
        "class_names": [run_names[c] if run_names else class_name(c) for c in class_ids],
        "run_class_names": list(run_names) if run_names else None,
        "num_per_class": num_per_class,
        "cfg": {
            "scale": cfg.scale,
            "schedule": cfg.name,
            "window_start": cfg.start,
            "window_end": cfg.end,
            "interval": cfg.interval,
        },
        "sampling": {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p},
        "seed": seed,
        "rng": rng,
        **({"sampler": {"name": "sjd", "window": sjd_window}} if sampler == "sjd" else {}),
        "precision": precision,
        "batch_size": batch_size,
        "compile": compile,
        "device": dev.type,
        "file_names": "{class:03d}_{name-slug}_{k:04d}.png",
        "pixels": "clamp(127.5 * x + 128, 0, 255) truncated to uint8",
        "gpt_config": {"preset": gpt, **config_to_dict(gpt_cfg)},
    }
    ctx = ctx or dist.get_context(dev)
    settings["world_size"] = ctx.world_size
    # official stream: depends on batch size and ranks (docs/ar.md#reproducible-per-sample-randomness)
    if rng == "official":
        settings["rng_note"] = (
            f"torch.multinomial on one generator seeded seed*world+rank; batch {batch_size}"
        )
    items = plan(class_ids, num_per_class, run_names)
    folder, resuming = check_output(
        output, items, settings, overwrite=overwrite, save_codes=save_codes, grid=grid
    )
    if resuming and rng == "official" and not overwrite:
        raise GigatokError(
            f"{output} holds part of a run, and --rng official cannot resume (its random stream "
            "depends on every earlier batch)",
            hint="pass --overwrite, or use the default per-sample rng",
        )
    # ---- models (before sample.json: a run that cannot start leaves no settings behind) ---------
    tok = load_tokenizer(tok_name, checkpoint=tokenizer_checkpoint, device=dev, dtype=dtype)
    model, _ = load_gpt(gpt, tokenizer=tok_name, checkpoint=gpt_checkpoint, device=dev, dtype=dtype)

    # The main rank claims the folder (--overwrite: removes the previous run's files); then every
    # rank writes the same settings before its first PNG, so whoever sees a PNG sees them.
    if ctx.is_main:
        folder.claim(overwrite=overwrite)
    ctx.barrier()
    if not ctx.is_main:
        folder.claim()

    # ---- this rank's work ----------------------------------------------------------------------
    mine = ctx.shard(items)
    have_codes = known_codes(output) if save_codes and not overwrite else {}
    todo = [
        it
        for it in mine
        if overwrite or not (output / f"{it.stem}.png").exists() or (save_codes and it.stem not in have_codes)
    ]
    result = SampleResult(
        output_dir=str(output),
        total=len(items),
        generated=[],
        skipped=len(mine) - len(todo),
        settings=settings,
    )
    official = (
        Drawer("official", seed=seed * ctx.world_size + ctx.rank, device=dev) if rng == "official" else None
    )
    done = len(mine) - len(todo)
    if on_progress:
        on_progress(done, len(mine), stage="sample")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        labels = torch.tensor([it.class_idx for it in batch])
        drawer = official or Drawer(
            "per-sample",
            generators=sample_generators(seed, [it.class_idx for it in batch], [it.index for it in batch]),
        )
        if sampler == "sjd":
            stats = SJDStats()
            codes = generate_sjd(
                model,
                labels,
                drawer.generators,
                cfg=cfg,
                sampling=sampling,
                window=sjd_window,
                compile=compile,
                stats=stats,
            )  # (B, N) int64
            result.forward_passes += stats.passes
        else:
            codes = generate(model, labels, drawer, cfg=cfg, sampling=sampling, compile=compile)
            result.forward_passes += codes.shape[1]
        result.standard_passes += codes.shape[1]
        pixels = decode_fixed_batches(tok, codes)
        for it, px in zip(batch, pixels, strict=True):
            save_png(output / f"{it.stem}.png", px)
            result.generated.append(str(output / f"{it.stem}.png"))
        if save_codes:
            save_npz(
                output / PARTIAL_CODES / f"{batch[0].stem}.r{ctx.rank}.npz",
                {"names": np.array([it.stem for it in batch]), "codes": codes.cpu().numpy()},
            )
        done += len(batch)
        if on_progress:
            on_progress(done, len(mine), stage="sample")

    # ---- summaries (main rank, after everyone) ---------------------------------------------------
    local = (len(result.generated), result.skipped)
    counts = ctx.gather_objects(local)  # a collective: also a barrier
    result.generated_total = sum(c[0] for c in counts)  # type: ignore[index]
    result.skipped_total = sum(c[1] for c in counts)  # type: ignore[index]
    result.files.append(str(output / SETTINGS_FILE))
    if ctx.is_main:
        if save_codes:
            result.files.append(str(write_codes(output, items)))
        if grid:
            result.files.append(str(write_grid(output, items)))
    return result


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
