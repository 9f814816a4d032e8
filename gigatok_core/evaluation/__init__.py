"""In-process FID-family evaluation (ADM's evaluator without TensorFlow).

- :mod:`.inception`: the FID Inception-v3 and TF1 bilinear resize;
- :mod:`.features`: batched feature extraction from folders, npz files, tensors;
- :mod:`.metrics`: FID / sFID, Inception Score, precision / recall;
- :mod:`.reference`: statistics files, references, the protocol guard;
- :mod:`.evaluate`: :class:`Evaluator` and :func:`compute_metrics`;
- :mod:`.reconstruction`: rFID + PSNR / SSIM / LPIPS / codebook usage of a tokenizer;
- :mod:`.generation`: gFID of a GPT (class-balanced samples via :mod:`gigatok_core.tasks.sample`);
- :mod:`.commands`, :mod:`.ar_commands`: one function per ``gigatok eval`` command (checks, defaults,
  the report and its ``--json``).

Layer: the top of the library beside ``probe`` and ``train`` (the three import none of each
other), above ``tasks``, below ``gigatok_cli``.
"""

from gigatok_core.evaluation.evaluate import METRIC_KEYS, Evaluator, compute_metrics
from gigatok_core.evaluation.features import Features, extract_features
from gigatok_core.evaluation.inception import FIDInception, load_fid_inception, tf1_resize_bilinear
from gigatok_core.evaluation.metrics import GaussianStats, frechet_distance, inception_score, precision_recall
from gigatok_core.evaluation.reference import (
    PROTOCOLS,
    EvalStats,
    check_protocol,
    detect_protocol,
    load_statistics,
    save_statistics,
)

__all__ = [
    "METRIC_KEYS",
    "PROTOCOLS",
    "EvalStats",
    "Evaluator",
    "FIDInception",
    "Features",
    "GaussianStats",
    "check_protocol",
    "compute_metrics",
    "detect_protocol",
    "extract_features",
    "frechet_distance",
    "inception_score",
    "load_fid_inception",
    "load_statistics",
    "precision_recall",
    "save_statistics",
    "tf1_resize_bilinear",
]
