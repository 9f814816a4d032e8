"""The fixed value sets of command options, importable without torch (help and completion use them).

The modules that act on these values import them from here: guidance schedules
(:mod:`gigatok_core.ar.guidance`), sampling randomness (:mod:`gigatok_core.ar.generate`), samplers (:mod:`gigatok_core.tasks.sample`); the
precision names are the keys of :data:`gigatok_core.dist.PRECISIONS` (a test keeps them equal).
"""

from __future__ import annotations

PRECISION_NAMES = ("fp32", "bf16", "fp16")
DEVICE_CHOICES = ("auto", "cpu", "cuda")  # and cuda:N
SCHEDULES = ("constant", "linear", "linear_re", "triangular", "rectangular", "step", "cosine", "sigmoid")
RNG_MODES = ("per-sample", "official")
SAMPLERS = ("standard", "sjd")  # sjd: speculative Jacobi decoding (gigatok_core/ar/sjd.py)
