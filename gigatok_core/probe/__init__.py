"""Linear probing of GPT and tokenizer features (docs/recipes.md#linear-probing; ``gigatok probe``).

request = ProbeRequest.build("gpt", "imagenet/train", "imagenet/val", "runs/probe-b", gpt="gpt-b@xl-xxl")
result = request.run()                       # or probe_gpt(...) / probe_tokenizer(...) / run_probe(...)
result.top1                                  # % on the val split after the last epoch

Pieces: :mod:`features` (where the features are taken), :mod:`head` (BatchNorm + linear head,
LARS, the lr schedule), :mod:`data` (splits and augmentation), :mod:`cache` (``--cache-features``),
:mod:`loop` (one epoch of the head, the evaluation), :mod:`run` (the run: its folder, checkpoints,
metrics and results), :mod:`api` (presets -> backbone -> run), :mod:`request` (one typed request
per run: the recipe, the official precision, the GPT a checkpoint names, the files to fetch).

Why the probe keeps its own loop instead of :class:`gigatok_core.train.engine.Engine`: the probe
counts epochs, the engine optimizer steps. Each probe epoch trains, evaluates the val split, writes
one metrics line keyed by ``epoch`` and one checkpoint, and picks its augmentation draw; the lr is set
every iteration at the fractional epoch; the epoch seeds the backbone's dropout, so no RNG state is
saved. With ``--cache-features`` an epoch indexes a (draws, N, D) tensor already on the device,
where the engine would pull 1.28M samples one by one through a DataLoader (``bench/probe.py``'s
target: an ImageNet epoch of cached features within a minute on one GPU). What the engine adds (DDP/FSDP wrapping,
compile, activation checkpointing, gradient accumulation, EMA, ``--on-nan``, the schedule check,
per-rank RNG and data-position checkpoints) has no use for a BatchNorm + linear head on frozen
features, whose gradients are one all-reduce; and moving would change the checkpoint layout, so
probe runs written before could no longer resume. What both need is shared below them already:
:mod:`gigatok_core.checkpoints.training` (step folders) and :mod:`gigatok_core.dist` (the
epoch sampler, the process group, precision).

Layer: the top of the library beside :mod:`~gigatok_core.evaluation` and :mod:`~gigatok_core.train`
(the three import none of each other), above :mod:`~gigatok_core.tasks`, below ``gigatok_cli``.
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
from gigatok_core.probe.request import ProbeRequest, default_precision, probe_config
from gigatok_core.probe.run import ProbeConfig, ProbeResult, run_probe

__all__ = [
    "LARS",
    "TOKENIZER_MODES",
    "GPTFeatures",
    "ProbeConfig",
    "ProbeHead",
    "ProbeRequest",
    "ProbeResult",
    "Split",
    "TokenizerFeatures",
    "check_same_classes",
    "default_precision",
    "lr_at",
    "probe_config",
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
