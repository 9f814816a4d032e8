"""Reconstruct images through a tokenizer: images -> codes -> images, with optional metrics.

The library function behind ``gigatok reconstruct``. It runs alone or under torchrun (each rank
takes a strided shard of the inputs; rank 0 gathers codes and metrics and writes the summaries).
Existing outputs are never overwritten unless asked, and every file is written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gigatok_core import dist
from gigatok_core.config import config_to_dict
from gigatok_core.config.requests import DEFAULT_TOKENIZER, ReconstructRequest
from gigatok_core.data.images import (
    ImageReadError,
    Tile,
    check_writable,
    contact_sheet,
    ensure_output_dir,
    list_images,
    load_image,
    save_npz,
    save_png,
    to_tensor,
    to_uint8,
    unique_stems,
)
from gigatok_core.errors import GigatokError, literal
from gigatok_core.registry import tokenizer_preset
from gigatok_core.runs.folder import RunFolder
from gigatok_core.runs.settings import json_safe
from gigatok_core.utils.fileio import write_json
from gigatok_core.utils.progress import ProgressFn

GRID_MAX_IMAGES = 64  # the --grid sheet shows the first 64 images
SETTINGS_FILE = "reconstruct.json"  # the resolved settings, written next to the outputs


@dataclass
class ImageResult:
    source: str
    output: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ReconstructResult:
    output_dir: str
    images: list[ImageResult]
    skipped: list[tuple[str, str]]  # (file, reason)
    mean_metrics: dict[str, float]
    codebook_usage: float | None
    files: list[str]  # summary files written (codes, grid, metrics, settings)
    tokenizer: str = ""  # the tokenizer preset that ran (resolved from the checkpoint when not given)


def _inputs_outside(files: list[Path], output: Path) -> list[Path]:
    """Drop inputs that lie in the output folder (a folder input that contains the output would
    otherwise pick up the previous run's reconstructions and sheets as new inputs)."""
    out = output.resolve()
    kept = [f for f in files if out not in f.resolve().parents]
    if not kept:
        raise GigatokError(
            f"every input image lies inside the output folder {output}",
            hint="write the reconstructions to a folder of their own (--output)",
        )
    return kept


def _planned_outputs(
    output: Path, names: Sequence[str], grid: bool, save_codes: bool, metrics: bool
) -> list[Path]:
    paths = [output / f"{n}.png" for n in names] + [output / SETTINGS_FILE]
    if grid:
        paths.append(output / "grid.png")
    if save_codes:
        paths.append(output / "codes.npz")
    if metrics:
        paths.append(output / "metrics.json")
    return paths


def reconstruct(
    request: ReconstructRequest,
    *,
    on_progress: ProgressFn | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    ctx: dist.DistContext | None = None,
) -> ReconstructResult:
    """Reconstruct every image of ``request.inputs`` (files, folders, globs) into ``request.output``.

    Writes ``<stem>.png`` per image; ``grid`` adds original|reconstruction sheets, ``save_codes``
    one ``codes.npz`` (one int array per image, keyed by output stem), ``metrics`` a
    ``metrics.json`` with PSNR/SSIM (official protocol and standard definitions) and LPIPS.
    ``on_progress(done, total, stage="reconstruct")`` is called after each batch of this rank,
    ``on_skip(file, reason)`` for each unreadable image (without ``strict``).
    Nothing is created before the inputs, the output folder's permissions and the models are checked.
    ``ctx``: the ranks (default: this process's :func:`gigatok_core.dist.get_context`).
    """
    from gigatok_core.tokenizer import load_tokenizer

    r = request
    tokenizer = resolved_tokenizer(r)
    tokenizer_preset(tokenizer)  # fail fast on a bad name, device or precision, before any work
    dev = dist.resolve_device(r.device)
    dtype = dist.resolve_precision(r.precision, dev)
    output = Path(r.output)
    files, names = _check_outputs(r, output)
    check_writable(output)  # a read-only folder is reported now, not after the compute

    ctx = ctx or dist.get_context(dev)
    model = load_tokenizer(tokenizer, checkpoint=r.checkpoint, device=dev, dtype=dtype)
    lpips_model = None
    if r.metrics:
        from gigatok_core.tasks.image_metrics import build_lpips

        lpips_model = build_lpips(r.vgg_weights, device=dev)
    ensure_output_dir(output)  # only now: a failed weights fetch leaves no empty folder behind

    def run_batch(idx: list[int], pixels: np.ndarray) -> list[dict[str, Any]]:
        keep = r.grid and idx[0] < GRID_MAX_IMAGES
        return _run_batch(
            model,
            lpips_model,
            idx,
            pixels,
            names,
            output,
            dev,
            dtype,
            with_metrics=r.metrics,
            keep_pixels=keep,
        )

    local, skipped = _reconstruct_shard(
        r, files, ctx.shard(list(range(len(files)))), model.config.image_size, run_batch, on_progress, on_skip
    )
    gathered = ctx.gather_objects((local, skipped))
    ctx.barrier()
    records = sorted((x for part, _ in gathered for x in part), key=lambda x: x["index"])  # type: ignore[attr-defined]
    all_skipped = [s for _, part in gathered for s in part]  # type: ignore[attr-defined]
    result = _result(
        tokenizer, output, files, names, records, all_skipped, model.config.codebook_size, r.metrics
    )
    if ctx.is_main and records:
        settings = {
            "command": "reconstruct",
            "tokenizer": tokenizer,
            "checkpoint": str(r.checkpoint) if r.checkpoint else None,
            "tokenizer_config": config_to_dict(model.config),
            "precision": r.precision,
            "device": str(dev),
            "batch_size": r.batch_size,
            "world_size": ctx.world_size,
            "inputs": [str(p) for p in r.inputs],
            "images": len(records),
            "skipped": len(all_skipped),
        }
        planned = _planned_outputs(output, names, r.grid, r.save_codes, r.metrics)
        folder = RunFolder(
            output, "reconstruction", settings, settings_file=SETTINGS_FILE, outputs=[p.name for p in planned]
        )
        if r.overwrite:  # an earlier run's files that this one did not write again (never a user's)
            folder.remove_previous(keep=folder.outputs)
        folder.write_settings()
        _write_summaries(
            result, records, names, output, r.grid, r.save_codes, r.metrics, tokenizer, r.checkpoint
        )
    return result


def resolved_tokenizer(request: ReconstructRequest) -> str:
    """The request's tokenizer, else the preset its gigatok checkpoint names, else ``s-s``."""
    if request.tokenizer is not None:
        return request.tokenizer
    from gigatok_core.tokenizer.load import checkpoint_preset

    return checkpoint_preset(request.checkpoint) or DEFAULT_TOKENIZER


def _check_outputs(r: ReconstructRequest, output: Path) -> tuple[list[Path], list[str]]:
    """The input files and their output names; refuses replacing an input, or another run's files."""
    files = _inputs_outside(list_images(r.inputs), output)
    names = unique_stems(files, reserved=["grid"])  # grid.png is the --grid sheet
    planned = _planned_outputs(output, names, r.grid, r.save_codes, r.metrics)
    sources = {f.resolve() for f in files}
    clobber = [p for p in planned if p.resolve() in sources]
    if clobber:  # even with --overwrite: never replace an input image by its reconstruction
        raise r.error(
            f"the output {literal(clobber[0])} would replace the input image itself",
            hint="choose an {output} folder that holds no input images",
        )
    existing = [p for p in planned if p.exists()]
    if existing and not r.overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise r.error(
            f"{literal(existing[0])}{more} already exist",
            hint="pass {overwrite} to replace them, or choose another {output}",
        )
    return files, names


def _reconstruct_shard(
    r: ReconstructRequest,
    files: list[Path],
    my_idx: list[int],
    size: int,
    run_batch: Callable[[list[int], np.ndarray], list[dict[str, Any]]],
    on_progress: ProgressFn | None,
    on_skip: Callable[[str, str], None] | None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """This rank's images, batch by batch: (records, skipped (file, reason))."""
    local: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    done = 0
    for start in range(0, len(my_idx), r.batch_size):
        batch_idx, pixels = [], []
        for i in my_idx[start : start + r.batch_size]:
            try:
                pixels.append(load_image(files[i], size))
                batch_idx.append(i)
            except ImageReadError as err:
                if r.strict:
                    raise
                skipped.append((str(files[i]), err.message))
                if on_skip:
                    on_skip(str(files[i]), err.message)
        if batch_idx:
            local.extend(run_batch(batch_idx, np.stack(pixels)))
        done += len(my_idx[start : start + r.batch_size])
        if on_progress:
            on_progress(done, len(my_idx), stage="reconstruct")
    return local, skipped


def _result(
    tokenizer: str,
    output: Path,
    files: list[Path],
    names: Sequence[str],
    records: list[dict[str, Any]],
    skipped: list[tuple[str, str]],
    codebook_size: int,
    metrics: bool,
) -> ReconstructResult:
    result = ReconstructResult(
        output_dir=str(output),
        images=[
            ImageResult(
                source=str(files[x["index"]]),
                output=str(output / f"{names[x['index']]}.png"),
                metrics=x["metrics"],
            )
            for x in records
        ],
        skipped=skipped,
        mean_metrics={},
        codebook_usage=None,
        files=[],
        tokenizer=tokenizer,
    )
    if records:
        codes = np.concatenate([x["codes"][None] for x in records])
        result.codebook_usage = float(len(np.unique(codes)) / codebook_size)
        if metrics:
            keys = records[0]["metrics"].keys()
            result.mean_metrics = {k: float(np.mean([x["metrics"][k] for x in records])) for k in keys}
    return result


@torch.inference_mode()
def _run_batch(
    model: torch.nn.Module,
    lpips_model: torch.nn.Module | None,
    idx: list[int],
    pixels: np.ndarray,
    names: Sequence[str],
    output: Path,
    dev: torch.device,
    dtype: torch.dtype,
    *,
    with_metrics: bool,
    keep_pixels: bool,
) -> list[dict[str, Any]]:
    x = to_tensor(pixels).to(dev)
    codes = model.encode(x.to(dtype))  # (B, N)
    recon = model.decode_codes(codes).float()  # (B, 3, H, W), unclamped
    recon_u8 = to_uint8(recon)
    out = []
    lp = None
    if with_metrics and lpips_model is not None:
        from gigatok_core.tasks.image_metrics import lpips_distance

        lp = lpips_distance(lpips_model, x, recon).cpu().numpy()
    x_hwc = x.permute(0, 2, 3, 1).cpu().numpy()
    for j, i in enumerate(idx):
        save_png(output / f"{names[i]}.png", recon_u8[j])
        rec: dict[str, Any] = {"index": i, "codes": codes[j].cpu().numpy().astype(np.int64), "metrics": {}}
        if with_metrics:
            from gigatok_core.tasks.image_metrics import official_psnr_ssim, standard_psnr_ssim

            psnr_o, ssim_o = official_psnr_ssim(recon_u8[j], x_hwc[j])
            psnr_s, ssim_s = standard_psnr_ssim(recon_u8[j], pixels[j])
            rec["metrics"] = {
                "psnr": psnr_o,
                "ssim": ssim_o,
                "psnr_standard": psnr_s,
                "ssim_standard": ssim_s,
            }
            if lp is not None:
                rec["metrics"]["lpips"] = float(lp[j])
        if keep_pixels and i < GRID_MAX_IMAGES:
            rec["pixels"] = (pixels[j], recon_u8[j])
        out.append(rec)
    return out


def _write_summaries(
    result: ReconstructResult,
    records: list[dict[str, Any]],
    names: Sequence[str],
    output: Path,
    grid: bool,
    save_codes: bool,
    metrics: bool,
    tokenizer: str,
    checkpoint: str | Path | None,
) -> None:
    if save_codes:
        path = output / "codes.npz"
        save_npz(path, {names[r["index"]]: r["codes"] for r in records})
        result.files.append(str(path))
    if grid:
        shown = [r for r in records if "pixels" in r][:GRID_MAX_IMAGES]
        cols = math.ceil(math.sqrt(len(shown)))  # pairs per row
        rows = [
            [
                tile
                for r in shown[k : k + cols]
                for tile in (Tile(r["pixels"][0], names[r["index"]]), Tile(r["pixels"][1], "recon"))
            ]
            for k in range(0, len(shown), cols)
        ]
        path = output / "grid.png"
        save_png(path, contact_sheet(rows))
        result.files.append(str(path))
    if metrics:
        path = output / "metrics.json"
        payload = {
            "tokenizer": tokenizer,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "mean": result.mean_metrics,
            "codebook_usage": result.codebook_usage,
            "protocol": {
                "psnr/ssim": "official GigaTok script (uint8 recon/255 vs float input; SSIM data_range=2.0)",
                "psnr_standard/ssim_standard": "uint8 vs uint8, range 255; SSIM Gaussian sigma 1.5",
                "lpips": "LPIPS-VGG v0.1 on the unclamped float reconstruction",
            },
            "images": {names[r["index"]]: r["metrics"] for r in records},
        }
        # an exact reconstruction has PSNR inf: strict JSON has no inf, so it is written as null
        write_json(path, json_safe(payload))
        result.files.append(str(path))
