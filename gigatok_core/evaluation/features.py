"""Batched Inception feature extraction from image folders, ADM image npz files and tensors.

Every image goes through :class:`~gigatok_core.evaluation.inception.FIDInception` on its own
(the resize is per image), so the features do not depend on the batch size; TF32 is switched off
while extracting so "fp32" means fp32 on Ampere and later GPUs as well.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.inception import FIDInception
from gigatok_core.utils.progress import ProgressFn


# ---------------------------------------------------------------------------------------------
# Feature containers
# ---------------------------------------------------------------------------------------------
@dataclass
class Features:
    """Per-image Inception outputs, float32: pool (N, 2048), spatial (N, 2023), logits (N, 1008)."""

    pool: np.ndarray
    spatial: np.ndarray
    logits: np.ndarray

    def __len__(self) -> int:
        return len(self.pool)

    @classmethod
    def concat(cls, parts: Sequence[Features]) -> Features:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("pool", "spatial", "logits")))


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """Temporarily turn off TF32 matmuls and convolutions (restored afterwards)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------
def _to_nchw(batch: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8-range (B, H, W, 3) numpy or (B, 3, H, W) tensor -> float32 (B, 3, H, W) on device."""
    if isinstance(batch, np.ndarray):
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise GigatokError(
                f"expected images shaped (N, H, W, 3), got {batch.shape}",
                hint="ADM-style npz files hold uint8 NHWC RGB images under arr_0",
            )
        arr = batch if batch.flags.writeable else batch.copy()  # npz streams are read-only buffers
        return torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(0, 3, 1, 2).float()
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) tensor of 0..255 pixels, got {tuple(batch.shape)}")
    return batch.to(device).float()


@torch.inference_mode()
def extract_features(
    model: FIDInception,
    batches: Iterable[np.ndarray | torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    stage: str = "inception",
    total: int | None = None,
) -> Features:
    """Run ``model`` over uint8-range image batches (NHWC numpy or NCHW tensors), in order.

    ``progress(done, total, stage=stage)`` is called after each batch (:mod:`gigatok_core.utils.progress`).
    """
    device = torch.device(device)
    model = model.to(device).eval()
    parts: list[Features] = []
    with tf32_disabled():
        for batch in batches:
            out = model(_to_nchw(batch, device))
            parts.append(Features(*(t.float().cpu().numpy() for t in out)))
            if progress is not None:
                progress(sum(len(p.pool) for p in parts), total, stage=stage)
    if not parts:
        raise GigatokError("no images to evaluate", hint="check the folder or npz file")
    return Features.concat(parts)


def rebatch(images: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Stack single (H, W, 3) images into batches; a change of image size starts a new batch."""
    buf: list[np.ndarray] = []
    for img in images:
        if buf and (len(buf) == batch_size or img.shape != buf[0].shape):
            yield np.stack(buf)
            buf = []
        buf.append(img)
    if buf:
        yield np.stack(buf)


# ---------------------------------------------------------------------------------------------
# Sources: folders and ADM npz files
# ---------------------------------------------------------------------------------------------
def iter_folder(paths: Sequence[Path], image_size: int | None = None) -> Iterator[np.ndarray]:
    """Decode images to uint8 (H, W, 3); with ``image_size``, ADM centre-crop them to that size."""
    from gigatok_core.data.images import load_image, read_image

    for p in paths:
        yield load_image(p, image_size) if image_size else np.asarray(read_image(p))


def npz_keys(path: str | Path) -> list[str]:
    """Array names in an npz file (without loading them)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return list(z.files)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise GigatokError(
            f"{path} is not a readable .npz file ({err})", hint="pass a folder of images or an npz"
        ) from None


def _npy_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def iter_npz_images(path: str | Path, batch_size: int, key: str = "arr_0") -> Iterator[np.ndarray]:
    """Stream uint8 NHWC batches from ``key`` of an npz without loading the whole array.

    ADM's 50k-sample files are ~10 GB; the .npy member is read ``batch_size`` images at a time.
    """
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
        shape, fortran, dtype = _npy_header(f)
        if fortran or len(shape) != 4 or shape[-1] != 3:
            raise GigatokError(
                f"{path}:{key} has shape {shape}; expected C-ordered (N, H, W, 3) images",
                hint="write samples with np.savez(path, arr_0=uint8_nhwc)",
            )
        if dtype != np.uint8:
            raise GigatokError(
                f"{path}:{key} holds {dtype}, not uint8 pixels", hint="convert the samples to uint8 first"
            )
        per_image = int(np.prod(shape[1:]))
        for start in range(0, shape[0], batch_size):
            n = min(batch_size, shape[0] - start)
            buf = f.read(n * per_image)
            if len(buf) != n * per_image:
                raise GigatokError(f"{path}:{key} is truncated", hint="write the npz again")
            yield np.frombuffer(buf, dtype=np.uint8).reshape(n, *shape[1:])


def npz_image_count(path: str | Path, key: str = "arr_0") -> int:
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
        shape, _, _ = _npy_header(f)
    return int(shape[0])
