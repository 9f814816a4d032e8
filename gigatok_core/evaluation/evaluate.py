"""The evaluator: turns folders / npz files into statistics and two sides into FID-family numbers.

This is the in-process replacement of ADM's TensorFlow evaluator (docs/evaluation.md#generation): same network
weights, same statistics, same metric definitions, one Python environment.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gigatok_core.errors import GigatokError
from gigatok_core.evaluation import features as F
from gigatok_core.evaluation.inception import FIDInception, load_fid_inception
from gigatok_core.evaluation.metrics import (
    IS_SPLIT_SIZE,
    PR_K,
    frechet_distance,
    inception_score,
    precision_recall,
)
from gigatok_core.evaluation.reference import (
    EvalStats,
    ImageNpz,
    check_statistics_target,
    detect_protocol,
    load_statistics,
    reference_meta,
    save_statistics,
    statistics_arrays,
    weights_id,
)
from gigatok_core.utils.fileio import write_npz
from gigatok_core.utils.progress import ProgressFn

METRIC_KEYS = ("fid", "sfid", "is", "precision", "recall")


@dataclass
class Evaluator:
    """Holds the FID Inception (loaded on first use) and how to run it."""

    inception_weights: str | Path | None = None
    device: torch.device | str = "cpu"
    batch_size: int = 64
    progress: ProgressFn | None = None  # called with stage "inception: <label>"
    _model: FIDInception | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise GigatokError(f"--batch-size must be positive, got {self.batch_size}", hint="use e.g. 64")

    @functools.cached_property
    def weights_id(self) -> str:
        """Identifies the Inception weights in cache keys (:func:`~.reference.weights_id`)."""
        return weights_id(self.inception_weights)

    @property
    def model(self) -> FIDInception:
        if self._model is None:
            self._model = load_fid_inception(self.inception_weights, self.device)
        return self._model

    # -- features ------------------------------------------------------------------------------
    def features(
        self, batches: Iterable[np.ndarray | torch.Tensor], label: str = "inception", total: int | None = None
    ) -> F.Features:
        """Features of uint8-range image batches (NHWC numpy or NCHW tensors)."""
        return F.extract_features(
            self.model,
            batches,
            device=self.device,
            progress=self.progress,
            stage=f"inception: {label}",
            total=total,
        )

    def folder_features(
        self, paths: list[Path], image_size: int | None = None, label: str = "images"
    ) -> F.Features:
        batches = F.rebatch(F.iter_folder(paths, image_size), self.batch_size)
        return self.features(batches, label, len(paths))

    def npz_features(self, path: str | Path, label: str = "npz") -> F.Features:
        return self.features(F.iter_npz_images(path, self.batch_size), label, F.npz_image_count(path))

    # -- one side of an evaluation -------------------------------------------------------------
    def load(self, source: str | Path, *, need_features: bool = True, label: str | None = None) -> EvalStats:
        """Statistics of a folder of images, an image npz (``arr_0``) or a statistics npz.

        A statistics npz is used as stored (ADM's batch: ``mu``/``sigma`` are train-set statistics);
        with ``need_features`` its ``arr_0`` images, if any, are also run for precision/recall / IS.
        """
        from gigatok_core.data.images import list_images

        path = Path(source)
        label = label or path.name
        if path.is_dir():
            paths = list_images([path])
            return EvalStats.from_features(
                self.folder_features(paths, label=label), meta={"source": str(path)}
            )
        if not path.is_file():
            raise GigatokError(
                f"{path} does not exist", hint="pass a folder of images, an image npz or a statistics npz"
            )
        if path.suffix != ".npz":
            raise GigatokError(
                f"{path.name} is neither a folder nor an .npz file",
                hint="pass a folder of images, an ADM-style npz (arr_0) or a statistics npz",
            )
        keys = set(F.npz_keys(path))
        if {"mu", "sigma"} <= keys:
            stats = load_statistics(path)
            if need_features and stats.pool is None and "arr_0" in keys:
                stats.pool, stats.logits = self.reference_features(path, label)
            return stats
        if "arr_0" in keys:
            return EvalStats.from_features(
                self.npz_features(path, label), protocol=detect_protocol(path), meta={"source": str(path)}
            )
        raise GigatokError(
            f"{path} has neither images (arr_0) nor statistics (mu, sigma); keys: {', '.join(sorted(keys))}",
            hint="pass np.savez(path, arr_0=uint8 NHWC images) or a file from `gigatok eval build-ref`",
        )

    def reference_features(self, path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
        """(pool, logits) of a reference batch's ``arr_0`` images (ADM's: 10k), computed once per
        file and Inception weights, then read from ``<cache>/features/``."""
        from gigatok_core.hub import cache_dir

        st = path.stat()
        key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{self.weights_id}".encode())
        cached = cache_dir() / "features" / f"{path.stem}-{key.hexdigest()[:16]}.npz"
        if cached.is_file():
            try:
                with np.load(cached, allow_pickle=False) as z:
                    return z["pool"], z["logits"]
            except (OSError, ValueError, KeyError):
                pass  # unreadable (e.g. cut short): compute again
        feats = self.npz_features(path, label)
        write_npz(cached, {"pool": feats.pool, "logits": feats.logits})
        return feats.pool, feats.logits

    # -- references ----------------------------------------------------------------------------
    def build_reference(
        self,
        data: str | Path,
        output: str | Path,
        *,
        image_size: int = 256,
        protocol: str = "rfid-imagenet-val",
        overwrite: bool = False,
        with_images: bool = False,
    ) -> EvalStats:
        """ADM-centre-crop every image under ``data`` to ``image_size`` and save its statistics.

        ``with_images`` also stores the crops as ``arr_0`` (uint8 NHWC), as the official rFID
        reference does, so ADM's TensorFlow evaluator can read the file too (it needs ``arr_0``).
        """
        from gigatok_core.data.images import list_images

        output = check_statistics_target(output, overwrite)  # before the extraction, not after
        paths = list_images([data])
        meta = reference_meta(paths, image_size, str(data), self.weights_id)
        if not with_images:
            feats = self.folder_features(paths, image_size=image_size, label="reference")
            stats = EvalStats.from_features(feats, protocol=protocol, meta=meta)
            save_statistics(output, stats, overwrite=overwrite)
            return stats
        with ImageNpz(output, len(paths), image_size) as npz:

            def crops() -> Iterator[np.ndarray]:
                for img in F.iter_folder(paths, image_size):
                    npz.add_image(img)
                    yield img

            feats = self.features(F.rebatch(crops(), self.batch_size), "reference", len(paths))
            stats = EvalStats.from_features(feats, protocol=protocol, meta=meta)
            for name, value in statistics_arrays(stats).items():
                npz.add_array(name, value)
        return stats


# ---------------------------------------------------------------------------------------------
# Two sides -> numbers
# ---------------------------------------------------------------------------------------------
def compute_metrics(
    samples: EvalStats,
    ref: EvalStats,
    *,
    with_precision_recall: bool = True,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """FID, sFID, IS, precision, recall (each None when the inputs do not allow it), ADM's order.

    FID/sFID put the samples first (ADM's ``sample_stats.frechet_distance(ref_stats)``); IS uses the
    samples only; precision is about samples inside the reference manifold, recall the converse.
    A metric that cannot be computed is None, and ``notes`` says why (and warns of a short IS split).
    """
    out: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    notes: list[str] = []
    if samples.pool_stats is not None and ref.pool_stats is not None:
        out["fid"] = frechet_distance(samples.pool_stats, ref.pool_stats)
    if samples.spatial_stats is not None and ref.spatial_stats is not None:
        out["sfid"] = frechet_distance(samples.spatial_stats, ref.spatial_stats)
    else:
        notes.append("sFID is n/a: it needs spatial statistics (mu_s, sigma_s) on both sides")
    if samples.logits is not None:
        out["is"] = inception_score(samples.logits)
        n, rest = len(samples.logits), len(samples.logits) % IS_SPLIT_SIZE
        if rest and n > IS_SPLIT_SIZE:
            notes.append(
                f"IS averages splits of {IS_SPLIT_SIZE}; the last holds only {rest} samples (as in ADM)"
            )
        elif n < IS_SPLIT_SIZE:
            notes.append(
                f"IS from {n} samples (one split, under {IS_SPLIT_SIZE}): not comparable to 50k numbers"
            )
    else:
        notes.append("IS is n/a: it needs the samples' images (a statistics file has none)")
    if with_precision_recall:
        if samples.pool is None or ref.pool is None:
            side = "samples" if samples.pool is None else "reference"
            notes.append(
                f"precision/recall are n/a: they need per-image features of both sides (the {side} has none)"
            )
        elif min(len(samples.pool), len(ref.pool)) <= PR_K:
            notes.append(f"precision/recall are n/a: they need more than {PR_K} images on each side")
        else:
            out["precision"], out["recall"] = precision_recall(ref.pool, samples.pool, device=device)
    if notes:
        out["notes"] = notes
    out["num_samples"] = samples.count
    out["num_reference"] = ref.count
    return out


def finite_or_none(value: Any) -> Any:
    """JSON-safe numbers: NaN / inf become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
