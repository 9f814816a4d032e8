"""Statistics files: the npz layout, reading and writing them, building references, the protocol guard.

Layout (ADM's reference-batch keys, so either tool reads the other's files):
``mu``, ``sigma`` (pool_3 mean / covariance, float64), ``mu_s``, ``sigma_s`` (spatial), optionally
``pool`` (N, 2048 float32 features, for precision/recall; ADM stores images in ``arr_0`` instead),
plus ``gigatok_protocol`` (what the file is a reference for) and ``gigatok_meta`` (JSON text).

Protocols (which number a reference is valid for):
- ``gfid-adm``: ADM's ``VIRTUAL_imagenet256_labeled.npz`` (statistics of the ImageNet *train* set);
  generation FID in the paper and in LlamaGen/ADM tables;
- ``rfid-imagenet-val``: the 50k ImageNet *validation* images, ADM centre crop to 256
  (docs/evaluation.md#reconstruction); reconstruction FID of the paper.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.features import Features
from gigatok_core.evaluation.metrics import GaussianStats
from gigatok_core.utils.fileio import atomic_write, sha256_file, write_npz

PROTOCOLS = {
    "gfid-adm": "generation FID against ADM's ImageNet-256 reference batch (VIRTUAL_imagenet256_labeled.npz)",
    "rfid-imagenet-val": "reconstruction FID against the 50k ImageNet validation images, ADM centre crop",
}
ADM_BATCH_NAME = "VIRTUAL_imagenet256_labeled"
STAT_KEYS = ("mu", "sigma", "mu_s", "sigma_s")


# ---------------------------------------------------------------------------------------------
# One side of an evaluation
# ---------------------------------------------------------------------------------------------
@dataclass
class EvalStats:
    """What a set of images contributes: Gaussian statistics and, when known, raw features."""

    pool_stats: GaussianStats | None = None
    spatial_stats: GaussianStats | None = None
    pool: np.ndarray | None = None  # (N, 2048) float32, precision/recall
    logits: np.ndarray | None = None  # (N, 1008) float32, Inception Score
    count: int | None = None
    protocol: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_features(
        cls, feats: Features, protocol: str | None = None, meta: dict[str, Any] | None = None
    ) -> EvalStats:
        return cls(
            pool_stats=GaussianStats.from_features(feats.pool),
            spatial_stats=GaussianStats.from_features(feats.spatial),
            pool=feats.pool,
            logits=feats.logits,
            count=len(feats),
            protocol=protocol,
            meta=dict(meta or {}),
        )


# ---------------------------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------------------------
def check_statistics_target(path: str | Path, overwrite: bool) -> Path:
    """Where statistics may be written: an .npz path, not an existing file unless ``overwrite``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise GigatokError(
            f"statistics files end in .npz, got {path.name}", hint="name the output something.npz"
        )
    if path.is_dir():
        raise GigatokError(f"{path} is a folder", hint="choose a file name ending in .npz for --output")
    if path.exists() and not overwrite:
        raise GigatokError(
            f"{path} already exists", hint="pass --overwrite to replace it, or choose another --output"
        )
    return path


class ImageNpz:
    """An npz written as a stream: ``arr_0`` uint8 (N, S, S, 3) one image at a time, then other arrays.

    Use as a context manager: the file appears at ``path`` (renamed from a temp file beside it) only
    if the block ends normally and exactly N images were written; otherwise nothing is left behind.
    Sample batches and ADM-readable references go through it (50k images never sit in memory).
    """

    def __init__(self, path: str | Path, count: int, image_size: int) -> None:
        self.path = Path(path)
        self.shape = (count, image_size, image_size, 3)
        self.written = 0

    def __enter__(self) -> ImageNpz:
        self._file = atomic_write(self.path, "wb")  # the temp file becomes ``path`` on a clean exit
        self._zip = zipfile.ZipFile(
            self._file.__enter__(), "w", compression=zipfile.ZIP_STORED, allowZip64=True
        )
        self._images = self._zip.open("arr_0.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(self._images, {**header, "shape": self.shape})
        return self

    def add_image(self, img: np.ndarray) -> None:
        if img.shape != self.shape[1:] or img.dtype != np.uint8:
            raise GigatokError(
                f"image {self.written} is {img.dtype} {img.shape}, expected uint8 {self.shape[1:]}",
                hint="ADM's evaluator batches hold uint8 RGB images of one size",
            )
        self._images.write(np.ascontiguousarray(img).tobytes())
        self.written += 1

    def add_array(self, name: str, value: np.ndarray) -> None:
        if self._images is not None:
            self._images.close()
            self._images = None
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._images is not None:
                self._images.close()
            self._zip.close()
            if exc_type is None and self.written != self.shape[0]:
                raise GigatokError(f"{self.path}: wrote {self.written} of {self.shape[0]} images")
        except BaseException as err:  # the temp file is removed, ``path`` untouched
            self._file.__exit__(type(err), err, err.__traceback__)
            raise
        self._file.__exit__(exc_type, exc, tb)  # renames on success, removes on an exception


def statistics_arrays(stats: EvalStats, *, keep_pool: bool = True) -> dict[str, np.ndarray]:
    """``stats`` as the arrays of the npz layout above."""
    if stats.pool_stats is None:
        raise ValueError("no pool statistics to save")
    arrays: dict[str, np.ndarray] = {"mu": stats.pool_stats.mu, "sigma": stats.pool_stats.sigma}
    if stats.spatial_stats is not None:
        arrays |= {"mu_s": stats.spatial_stats.mu, "sigma_s": stats.spatial_stats.sigma}
    if keep_pool and stats.pool is not None:
        arrays["pool"] = np.asarray(stats.pool, dtype=np.float32)
    if stats.protocol is not None:
        arrays["gigatok_protocol"] = np.array(stats.protocol)
    meta = {"count": stats.count, **stats.meta}
    arrays["gigatok_meta"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def save_statistics(
    path: str | Path, stats: EvalStats, *, overwrite: bool = False, keep_pool: bool = True
) -> Path:
    """Write ``stats`` in the npz layout above (atomically; refuses to replace a file unless ``overwrite``)."""
    path = check_statistics_target(path, overwrite)
    write_npz(path, statistics_arrays(stats, keep_pool=keep_pool))
    return path


def load_statistics(path: str | Path) -> EvalStats:
    """Read the statistics (and ``pool`` features) of an npz; images under ``arr_0`` are not read."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            arrays = {k: z[k] for k in (*STAT_KEYS, "pool", "gigatok_protocol", "gigatok_meta") if k in keys}
    except (OSError, ValueError) as err:
        raise GigatokError(
            f"{path} is not a readable .npz file ({err})", hint="pass a statistics npz"
        ) from None
    if "mu" not in arrays or "sigma" not in arrays:
        raise GigatokError(
            f"{path} has no mu/sigma statistics (keys: {', '.join(sorted(keys))})",
            hint="build one with `gigatok eval build-ref`, or pass an image npz with arr_0",
        )
    spatial = None
    if "mu_s" in arrays and "sigma_s" in arrays:
        spatial = GaussianStats(arrays["mu_s"].astype(np.float64), arrays["sigma_s"].astype(np.float64))
    meta = json.loads(str(arrays["gigatok_meta"])) if "gigatok_meta" in arrays else {}
    pool = arrays.get("pool")
    return EvalStats(
        pool_stats=GaussianStats(arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)),
        spatial_stats=spatial,
        pool=pool,
        count=meta.get("count", None if pool is None else len(pool)),
        protocol=detect_protocol(path),
        meta=meta,
    )


# ---------------------------------------------------------------------------------------------
# Protocol guard
# ---------------------------------------------------------------------------------------------
def detect_protocol(path: str | Path) -> str | None:
    """``gigatok_protocol`` from the file; else ``gfid-adm`` for ADM's batch, recognised by its name or
    by its layout (train-set ``mu``/``sigma`` stored beside ``arr_0`` images, as ADM's reference
    batches are); else None."""
    path = Path(path)
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if "gigatok_protocol" in z.files:
                    return str(z["gigatok_protocol"])
                if {"arr_0", "mu", "sigma"} <= set(z.files):
                    return "gfid-adm"
        except (OSError, ValueError):
            pass
    if ADM_BATCH_NAME in path.name:
        return "gfid-adm"
    return None


def check_reference_exists(path: str | Path) -> Path:
    """A reference must be a folder of images or an .npz file: say so before any expensive work."""
    path = Path(path)
    if path.is_dir() or (path.is_file() and path.suffix == ".npz"):
        return path
    what = "does not exist" if not path.exists() else "is neither a folder nor an .npz file"
    raise GigatokError(
        f"reference {path} {what}",
        hint="pass a folder of images, an ADM-style npz (arr_0) or a statistics npz "
        "(`gigatok eval build-ref`, or ADM's VIRTUAL_imagenet256_labeled.npz)",
    )


def check_protocol(path: str | Path, expected: str, *, force: bool = False) -> str | None:
    """Refuse a missing reference, or one made for another protocol (unless ``force``); returns the
    detected protocol."""
    if expected not in PROTOCOLS:
        raise ValueError(f"unknown protocol {expected!r}")
    check_reference_exists(path)
    found = detect_protocol(path)
    if found is not None and found != expected and not force:
        raise GigatokError(
            f"{Path(path).name} is a reference for {found!r} ({PROTOCOLS.get(found, 'unknown protocol')}), "
            f"but this evaluation is {expected!r} ({PROTOCOLS[expected]}); the numbers would not be comparable",
            hint=(
                "for rFID build the validation reference with `gigatok eval build-ref --data VAL_DIR --output FILE`"
                if expected == "rfid-imagenet-val"
                else f"for gFID use {ADM_BATCH_NAME}.npz (`gigatok download {ADM_BATCH_NAME}.npz`)"
            )
            + "; pass --force to compare anyway",
        )
    return found


# ---------------------------------------------------------------------------------------------
# Building references from an image folder
# ---------------------------------------------------------------------------------------------
def weights_id(path: str | Path | None) -> str:
    """What identifies a set of Inception weights in cache keys: ``default`` for the cached official
    file, else the sha256 prefix of the given file."""
    if path is None:
        return "default"
    return sha256_file(path)[:16]


def default_reference_path(
    paths: Sequence[Path], image_size: int, protocol: str = "rfid-imagenet-val", weights: str = "default"
) -> Path:
    """Cache location of the reference for exactly these files (names and sizes hashed) and these
    Inception weights (:func:`weights_id`)."""
    from gigatok_core.hub import cache_dir

    h = hashlib.sha256(f"{protocol}:{image_size}:{weights}".encode())
    for p in paths:
        h.update(f"{p.resolve()}:{p.stat().st_size}\n".encode())
    return cache_dir() / "references" / f"{protocol}-{image_size}-{len(paths)}-{h.hexdigest()[:12]}.npz"


def reference_meta(
    paths: Sequence[Path], image_size: int, data: str, weights: str = "default"
) -> dict[str, Any]:
    from gigatok_core import __version__

    return {
        "source": data,
        "image_size": image_size,
        "crop": "adm-center-crop",
        "inception": "pt_inception-2015-12-05"
        if weights == "default"
        else f"custom weights sha256:{weights}",
        "gigatok_version": __version__,
        "files": len(paths),
    }
