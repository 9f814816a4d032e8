"""Linear probing of GPT and tokenizer features (docs/recipes.md#linear-probing; ``gigatok probe``).

result = probe_gpt("gpt-b", "imagenet/train", "imagenet/val", "runs/probe-b", config=ProbeConfig())
result.top1                                  # % on the val split after the last epoch

Pieces: :mod:`features` (where the features are taken), :mod:`head` (BatchNorm + linear head,
LARS, the lr schedule), :mod:`data` (splits and augmentation), :mod:`cache` (``--cache-features``),
:mod:`run` (the loop, checkpoints, metrics), :mod:`api` (presets -> backbone -> loop).
"""

from gigatok_core.probe.api import (
    probe_gpt,
    probe_gpt_files,
    probe_tokenizer,
    probe_tokenizer_files,
    read_splits,
)
from gigatok_core.probe.data import Split, check_same_classes, read_split
from gigatok_core.probe.features import TOKENIZER_MODES, GPTFeatures, TokenizerFeatures
from gigatok_core.probe.head import LARS, ProbeHead, lr_at, scaled_lr, topk_correct
from gigatok_core.probe.run import ProbeConfig, ProbeResult, run_probe

__all__ = [
    "LARS",
    "TOKENIZER_MODES",
    "GPTFeatures",
    "ProbeConfig",
    "ProbeHead",
    "ProbeResult",
    "Split",
    "TokenizerFeatures",
    "check_same_classes",
    "lr_at",
    "probe_gpt",
    "probe_gpt_files",
    "probe_tokenizer",
    "probe_tokenizer_files",
    "read_split",
    "read_splits",
    "run_probe",
    "scaled_lr",
    "topk_correct",
]
