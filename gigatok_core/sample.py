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

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gigatok_core import dist
from gigatok_core.ar.cfg import CFGSchedule
from gigatok_core.ar.classes import class_name, parse_classes, slug
from gigatok_core.ar.generate import RNG_MODES, Drawer, SamplingParams, generate, sample_generators
from gigatok_core.config import config_to_dict
from gigatok_core.errors import GigatokError
from gigatok_core.images import (
    Tile,
    atomic_write_bytes,
    contact_sheet,
    ensure_output_dir,
    save_npz,
    save_png,
    to_uint8,
)

SETTINGS_FILE = "sample.json"
CODES_FILE = "codes.npz"
GRID_FILE = "grid.png"
PARTIAL_CODES = ".codes-partial"  # per-batch codes while a run is in progress (merged at the end)
GRID_MAX_PER_CLASS = 8
GRID_MAX_CLASSES = 32
log = logging.getLogger("gigatok")
# Settings that change the pixels; a resumed run must agree on all of them.
OUTPUT_KEYS = (
    "gpt",
    "tokenizer",
    "gpt_checkpoint",
    "tokenizer_checkpoint",
    "cfg",
    "sampling",
    "seed",
    "rng",
    "precision",
)


@dataclass(frozen=True)
class SampleItem:
    """Sample ``index`` of class ``class_idx``."""

    class_idx: int
    index: int

    @property
    def stem(self) -> str:
        return f"{self.class_idx:03d}_{slug(self.class_idx)}_{self.index:04d}"


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


def plan(classes: Sequence[int], num_per_class: int) -> list[SampleItem]:
    """Output order: all samples of the first class, then the next class, ..."""
    return [SampleItem(c, k) for c in dict.fromkeys(classes) for k in range(num_per_class)]


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------
def sample_images(
    classes: str | Sequence[int | str],
    *,
    output: str | Path,
    gpt: str = "gpt-b",
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
    rank_info: dist.DistInfo | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    compile: bool = False,
) -> SampleResult:
    """Generate ``num_per_class`` images for each class into ``output``.

    ``rank_info`` overrides the torchrun rank/world (to split a run over processes by hand; the main
    rank should then run last, as it writes the summaries). ``on_progress(done, total)`` counts this
    process's images. ``compile=True`` compiles the GPT decode step with ``torch.compile`` (CUDA graphs
    on CUDA; the first batch, and a smaller last batch, pay the compilation).
    """
    from gigatok_core.ar.load import load_gpt, resolve_gpt
    from gigatok_core.ar.trained import paired_tokenizer_checkpoint
    from gigatok_core.tokenizer import load_tokenizer

    # ---- validate everything before any heavy work ----------------------------------------
    class_ids = parse_classes(classes)
    if num_per_class < 1:
        raise GigatokError(f"--num-per-class must be at least 1, got {num_per_class}")
    if batch_size < 1:
        raise GigatokError(f"--batch-size must be at least 1, got {batch_size}")
    if rng not in RNG_MODES:
        raise GigatokError(f"unknown rng mode {rng!r}", hint=f"use one of {', '.join(RNG_MODES)}")
    cfg = cfg or CFGSchedule()
    sampling = sampling or SamplingParams()
    dev = dist.resolve_device(device)
    dtype = dist.resolve_precision(precision, dev)
    gpt_cfg, tok_name, release = resolve_gpt(gpt, tokenizer, gpt_checkpoint)
    if gpt_checkpoint is not None and tokenizer_checkpoint is None:
        tokenizer_checkpoint = paired_tokenizer_checkpoint(gpt_checkpoint, tokenizer)
    if tokenizer_checkpoint is not None and not Path(tokenizer_checkpoint).is_file():
        raise GigatokError(
            f"tokenizer checkpoint {tokenizer_checkpoint} does not exist",
            hint="check the --tokenizer-checkpoint path",
        )
    if not 0 <= seed < 2**63:
        raise GigatokError(f"--seed must lie in 0 .. 2^63-1, got {seed}")
    output = ensure_output_dir(output)

    settings = {
        "command": "sample",
        "gpt": gpt,
        "tokenizer": tok_name,
        "release": release.name if release else None,
        "gpt_checkpoint": str(gpt_checkpoint) if gpt_checkpoint else None,
        "tokenizer_checkpoint": str(tokenizer_checkpoint) if tokenizer_checkpoint else None,
        "classes": class_ids,
        "class_names": [class_name(c) for c in class_ids],
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
        "precision": precision,
        "batch_size": batch_size,
        "compile": compile,
        "device": dev.type,
        "file_names": "{class:03d}_{name-slug}_{k:04d}.png",
        "pixels": "clamp(127.5 * x + 128, 0, 255) truncated to uint8",
        "gpt_config": config_to_dict(gpt_cfg),
    }
    info = rank_info or dist.init_distributed(dev)
    settings["world_size"] = info.world_size
    if rng == "official":  # official stream: depends on batch size and ranks (spec ar §5)
        settings["rng_note"] = (
            f"torch.multinomial on one generator seeded seed*world+rank; batch {batch_size}"
        )
    items = plan(class_ids, num_per_class)
    resuming = _check_output(output, items, settings, overwrite=overwrite, save_codes=save_codes, grid=grid)
    if resuming and rng == "official" and not overwrite:
        raise GigatokError(
            f"{output} holds part of a run, and --rng official cannot resume (its random stream "
            "depends on every earlier batch)",
            hint="pass --overwrite, or use the default per-sample rng",
        )
    # ---- models (before sample.json: a run that cannot start leaves no settings behind) ---------
    tok = load_tokenizer(tok_name, checkpoint=tokenizer_checkpoint, device=dev, dtype=dtype)
    model, _ = load_gpt(gpt, tokenizer=tok_name, checkpoint=gpt_checkpoint, device=dev, dtype=dtype)

    # Every rank writes the same settings before its first PNG, so whoever sees a PNG sees them.
    atomic_write_bytes(output / SETTINGS_FILE, json.dumps(settings, indent=2).encode())
    if rank_info is None:
        dist.barrier()

    # ---- this rank's work ----------------------------------------------------------------------
    mine = dist.shard(items, info)
    known_codes = _known_codes(output) if save_codes and not overwrite else {}
    todo = [
        it
        for it in mine
        if overwrite
        or not (output / f"{it.stem}.png").exists()
        or (save_codes and it.stem not in known_codes)
    ]
    result = SampleResult(
        output_dir=str(output),
        total=len(items),
        generated=[],
        skipped=len(mine) - len(todo),
        settings=settings,
    )
    official = (
        Drawer("official", seed=seed * info.world_size + info.rank, device=dev) if rng == "official" else None
    )
    done = len(mine) - len(todo)
    if on_progress:
        on_progress(done, len(mine))
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        labels = torch.tensor([it.class_idx for it in batch])
        drawer = official or Drawer(
            "per-sample",
            generators=sample_generators(seed, [it.class_idx for it in batch], [it.index for it in batch]),
        )
        codes = generate(model, labels, drawer, cfg=cfg, sampling=sampling, compile=compile)  # (B, N) int64
        pixels = decode_fixed_batches(tok, codes)
        for it, px in zip(batch, pixels, strict=True):
            save_png(output / f"{it.stem}.png", px)
            result.generated.append(str(output / f"{it.stem}.png"))
        if save_codes:
            save_npz(
                output / PARTIAL_CODES / f"{batch[0].stem}.r{info.rank}.npz",
                {"names": np.array([it.stem for it in batch]), "codes": codes.cpu().numpy()},
            )
        done += len(batch)
        if on_progress:
            on_progress(done, len(mine))

    # ---- summaries (main rank, after everyone) ---------------------------------------------------
    local = (len(result.generated), result.skipped)
    counts = dist.all_gather_objects(local) if rank_info is None else [local]  # a collective: also a barrier
    result.generated_total = sum(c[0] for c in counts)  # type: ignore[index]
    result.skipped_total = sum(c[1] for c in counts)  # type: ignore[index]
    result.files.append(str(output / SETTINGS_FILE))
    if info.is_main:
        if save_codes:
            result.files.append(str(_write_codes(output, items)))
        if grid:
            result.files.append(str(_write_grid(output, items)))
    return result


# ---------------------------------------------------------------------------------------------
# Output folder bookkeeping
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


def _check_output(
    output: Path,
    items: list[SampleItem],
    settings: dict[str, Any],
    *,
    overwrite: bool,
    save_codes: bool,
    grid: bool,
) -> bool:
    """Refuse to touch files of another run; returns whether this is a resumed run.

    With ``overwrite`` the previous run's files (its PNGs, codes and grid, as its sample.json lists
    them) are removed first, so nothing of it can be mistaken for this run's later.
    """
    if not output.is_dir():
        return False
    settings_path = output / SETTINGS_FILE
    previous: dict[str, Any] = {}
    if settings_path.exists():
        try:
            previous = json.loads(settings_path.read_text())
        except (OSError, ValueError):
            previous = {}
    if overwrite:
        _remove_run(output, previous)
        return False
    pngs = [output / f"{it.stem}.png" for it in items if (output / f"{it.stem}.png").exists()]
    summaries = [
        output / n for n, on in ((GRID_FILE, grid), (CODES_FILE, save_codes)) if on and (output / n).exists()
    ]
    if settings_path.exists():
        diff = [k for k in OUTPUT_KEYS if previous.get(k) != settings.get(k)]
        if diff:
            raise GigatokError(
                f"{output} holds a sampling run with different settings ({', '.join(diff)})",
                hint="choose another --output, or pass --overwrite to replace that run's files",
            )
        earlier = {it.stem for it in _previous_plan(previous)}
        if summaries and not earlier <= {it.stem for it in items}:
            raise GigatokError(
                f"{summaries[0]} covers samples this run does not include (classes "
                f"{previous.get('classes')}, {previous.get('num_per_class')} each); writing it again would drop them",
                hint="include those classes again, pass --overwrite to start over, or choose another --output",
            )
        return bool(pngs)
    clash = pngs + summaries
    if clash:
        more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
        raise GigatokError(
            f"{clash[0]}{more} already exist (and {output} has no {SETTINGS_FILE} to resume from)",
            hint="pass --overwrite to replace them, or choose another --output",
        )
    return False


def _previous_plan(previous: dict[str, Any]) -> list[SampleItem]:
    """The samples a previous run's sample.json describes (empty if it is unreadable)."""
    try:
        return plan([int(c) for c in previous.get("classes", [])], int(previous.get("num_per_class", 0)))
    except (TypeError, ValueError, IndexError):
        return []


def _remove_run(output: Path, previous: dict[str, Any]) -> None:
    """Delete what a previous run wrote here (only files named by its own plan, and the summaries)."""
    for it in _previous_plan(previous):
        (output / f"{it.stem}.png").unlink(missing_ok=True)
    for name in (CODES_FILE, GRID_FILE, SETTINGS_FILE):
        (output / name).unlink(missing_ok=True)
    shutil.rmtree(output / PARTIAL_CODES, ignore_errors=True)


def _known_codes(output: Path) -> dict[str, np.ndarray]:
    """Codes already saved for this folder: the final codes.npz, then in-progress batch files."""
    out: dict[str, np.ndarray] = {}
    final = output / CODES_FILE
    if final.exists():
        with np.load(final) as data:
            if "names" in data:
                out.update(zip(data["names"].tolist(), data["codes"], strict=True))
    for part in sorted((output / PARTIAL_CODES).glob("*.npz")):
        with np.load(part) as data:
            out.update(zip(data["names"].tolist(), data["codes"], strict=True))
    return out


def _write_codes(output: Path, items: list[SampleItem]) -> Path:
    known = _known_codes(output)
    missing = [it.stem for it in items if it.stem not in known]
    if missing:
        raise GigatokError(
            f"codes for {len(missing)} samples are missing (first: {missing[0]})",
            hint="a rank may have failed; run the same command again to resume",
        )
    path = output / CODES_FILE
    save_npz(
        path,
        {
            "codes": np.stack([known[it.stem] for it in items]).astype(np.int64),
            "labels": np.array([it.class_idx for it in items], dtype=np.int64),
            "indices": np.array([it.index for it in items], dtype=np.int64),
            "names": np.array([it.stem for it in items]),
        },
    )
    shutil.rmtree(output / PARTIAL_CODES, ignore_errors=True)
    return path


def _write_grid(output: Path, items: list[SampleItem]) -> Path:
    """A labelled contact sheet: one row per class (first 32 classes, first 8 samples each)."""
    rows: list[list[Tile]] = []
    for c in list(dict.fromkeys(it.class_idx for it in items))[:GRID_MAX_CLASSES]:
        row = []
        for it in [it for it in items if it.class_idx == c][:GRID_MAX_PER_CLASS]:
            img = Image.open(output / f"{it.stem}.png").convert("RGB")
            if img.width > 128:
                img = img.resize((128, round(128 * img.height / img.width)), Image.Resampling.BICUBIC)
            row.append(Tile(np.asarray(img), f"{c} {class_name(c)} #{it.index}"))
        rows.append(row)
    path = output / GRID_FILE
    save_png(path, contact_sheet(rows, label_height=14))
    classes, per_class = len(dict.fromkeys(it.class_idx for it in items)), max(it.index for it in items) + 1
    if (classes, per_class) != grid_shape(classes, per_class):
        log.info(
            "%s shows the first %d classes and %d samples of each (of %d classes, %d each)",
            path, *grid_shape(classes, per_class), classes, per_class,
        )  # fmt: skip
    return path


def grid_shape(num_classes: int, num_per_class: int) -> tuple[int, int]:
    """(rows, columns) of the grid for a run."""
    return min(num_classes, GRID_MAX_CLASSES), min(num_per_class, GRID_MAX_PER_CLASS)
