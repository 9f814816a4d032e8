"""``--cache-features``: the frozen backbone's features computed once, reused by every later probe.

Layout: ``CACHE_DIR/<key>/`` where ``key`` hashes the fingerprint (backbone, feature location,
precision, image size, the split's files, the augmentation draws and seed), so a changed
backbone or split never reads stale features:

- ``fingerprint.json``: what the features are of (written first);
- ``{split}-center-{shard:05d}.npy`` (the centre crop) or ``{split}-aug{seed}-d{draw}-{shard:05d}.npy``
  (augmentation draw ``draw`` of that seed): float32 (n, D) features of images
  ``[shard * SHARD, ...)`` of that split; NaN rows mark unreadable images. Each file is written atomically, so a killed computation resumes at the missing shards.

The backbone runs in eval mode here (dropout off): the official online protocol instead leaves the
GPT in train mode, so its dropout noise differs per epoch (README, "Linear probing").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from gigatok_core.dist import DistContext
from gigatok_core.probe.data import ProbeImages, Split, collate
from gigatok_core.utils.fileio import atomic_write, write_json
from gigatok_core.utils.progress import ProgressFn

CACHE_FORMAT = 1
SHARD = 4096  # images per cache file


def cache_key(fingerprint: dict[str, Any]) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, **fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _shard_path(folder: Path, split: str, draw: int | None, seed: int, k: int) -> Path:
    """``draw=None``: the centre crop; else augmentation draw ``draw`` seeded by ``seed``."""
    kind = "center" if draw is None else f"aug{seed}-d{draw}"
    return folder / f"{split}-{kind}-{k:05d}.npy"


@torch.no_grad()
def _compute_shard(
    extractor: nn.Module,
    dataset: ProbeImages,
    indices: range,
    *,
    dim: int,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype,
    workers: int,
) -> np.ndarray:
    out = np.full((len(indices), dim), np.nan, dtype=np.float32)
    loader = DataLoader(
        Subset(dataset, list(indices)), batch_size=batch_size, num_workers=workers, collate_fn=collate
    )
    for batch in loader:
        if batch is None:
            continue
        images, _, idx = batch
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            feats = extractor(images.to(device, non_blocking=True)).float()  # (B, D)
        out[(idx - indices.start).numpy()] = feats.cpu().numpy()
    return out


def cached_features(
    extractor: nn.Module,
    split: Split,
    *,
    name: str,
    folder: Path,
    draws: int,
    seed: int,
    image_size: int,
    dim: int,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype,
    ctx: DistContext,
    workers: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Features (max(draws, 1), N, D) float32 of ``split`` (CPU), computing the missing shards.

    ``draws = 0``: one centre-crop pass (no augmentation); ``draws = K``: K passes of the train
    augmentation, pass d seeded by ``(seed, d, image index)``. Ranks compute every W-th shard.
    """
    extractor.eval()
    dataset = ProbeImages(split, image_size, augment=draws > 0, seed=seed)
    n = len(split)
    shards = [(d, k) for d in range(max(draws, 1)) for k in range((n + SHARD - 1) // SHARD)]
    mine = ctx.shard(shards)

    def path(d: int, k: int) -> Path:
        return _shard_path(folder, name, d if draws > 0 else None, seed, k)

    todo = [(d, k) for d, k in mine if not path(d, k).is_file()]
    for done, (d, k) in enumerate(todo, 1):
        dataset.set_draw(d)
        arr = _compute_shard(
            extractor,
            dataset,
            range(k * SHARD, min(n, (k + 1) * SHARD)),
            dim=dim,
            batch_size=batch_size,
            device=device,
            amp_dtype=amp_dtype,
            workers=workers,
        )
        with atomic_write(path(d, k), "wb") as f:
            np.save(f, arr, allow_pickle=False)
        if on_progress:
            on_progress(done, len(todo))
    ctx.barrier()
    feats = torch.empty(max(draws, 1), n, dim, dtype=torch.float32)
    for d, k in shards:
        arr = np.load(path(d, k), allow_pickle=False)
        feats[d, k * SHARD : k * SHARD + arr.shape[0]] = torch.from_numpy(arr)
    return feats


def open_cache(cache_dir: Path, fingerprint: dict[str, Any], ctx: DistContext) -> Path:
    """The folder of this fingerprint under ``cache_dir`` (created, fingerprint written, on rank 0)."""
    folder = Path(cache_dir) / cache_key(fingerprint)
    if ctx.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "fingerprint.json").is_file():
            write_json(folder / "fingerprint.json", json.loads(json.dumps(fingerprint, default=str)))
    ctx.barrier()
    return folder


def cached_splits(
    extractor: nn.Module,
    train: Split,
    val: Split,
    cache_dir: Path,
    *,
    fingerprint: dict[str, Any],
    draws: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype,
    ctx: DistContext,
    workers: int = 0,
    on_progress: ProgressFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train features (max(draws, 1), N, D), val features (N_val, D)) on ``device``, read from the
    cache folder of ``fingerprint`` under ``cache_dir`` after computing what it lacks (progress
    stages "features: train" and "features: val"). The val split is always the centre crop."""
    folder = open_cache(cache_dir, fingerprint, ctx)
    common: dict[str, Any] = {
        "folder": folder,
        "seed": seed,
        "image_size": extractor.image_size,
        "dim": extractor.dim,
        "batch_size": batch_size,
        "device": device,
        "amp_dtype": amp_dtype,
        "workers": workers,
        "ctx": ctx,
    }
    feats = [
        cached_features(
            extractor,
            split,
            name=f"{name}-{split.digest[:12]}",
            draws=split_draws,
            on_progress=_stage(on_progress, f"features: {name}"),
            **common,
        )
        for name, split, split_draws in (("train", train, draws), ("val", val, 0))
    ]
    return feats[0].to(device), feats[1][0].to(device)


def _stage(on_progress: ProgressFn | None, stage: str) -> Callable[[int, int], None] | None:
    return None if on_progress is None else (lambda done, total: on_progress(done, total, stage=stage))
