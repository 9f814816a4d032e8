"""Building a tokenizer from a config and loading official (or gigatok) checkpoints into it."""

from __future__ import annotations

from pathlib import Path

import torch

from gigatok_core.checkpoint import extract_state_dict, load_strict, read_checkpoint
from gigatok_core.config import TokenizerConfig
from gigatok_core.errors import GigatokError
from gigatok_core.registry import tokenizer_preset
from gigatok_core.tokenizer.model import DISTILL_PREFIX, VQTokenizer, init_weights

RANDOM_OK = ("tiny",)  # presets that may be built with (seeded) random weights
RANDOM_SEED = 0
DISTILL_REASON = "training-only semantic-regularization head"


def build_tokenizer(cfg: TokenizerConfig, *, with_distill: bool = False,
                    device: str | torch.device | None = None) -> VQTokenizer:
    """An uninitialised-by-checkpoint tokenizer (official random init) on ``device``.

    ``device="meta"`` builds the module tree without allocating weights (for shape checks).
    """
    with torch.device(device or "cpu"):
        return VQTokenizer(cfg, with_distill=with_distill)


def _vit_decoder_name(cfg: TokenizerConfig) -> str:
    return "s1to2decoder" if cfg.arch == "1d" else "s2ddecoder"


def load_tokenizer(
    name_or_path: str,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    with_distill: bool = False,
) -> VQTokenizer:
    """A ready tokenizer (eval mode) for preset ``name_or_path``.

    Weights come from ``checkpoint`` when given, else from the preset's registered file
    (:func:`gigatok_core.hub.fetch_weights`). Only ``tiny`` may be built with seeded random weights.
    """
    preset = tokenizer_preset(name_or_path)
    cfg = preset.config
    if checkpoint is None and preset.weights is None:
        if preset.name not in RANDOM_OK:
            raise GigatokError(f"tokenizer preset {preset.name!r} has no released weights",
                               hint="pass a checkpoint file (--checkpoint FILE) trained with this preset")
        gen = torch.Generator().manual_seed(RANDOM_SEED)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = build_tokenizer(cfg, with_distill=with_distill, device="cpu")
            init_weights(model, generator=gen)
        return model.to(device=device, dtype=dtype).eval()

    if checkpoint is None:
        from gigatok_core.hub import fetch_weights

        checkpoint = fetch_weights(preset.weights)
    path = Path(checkpoint)
    state_dict, _entry = extract_state_dict(read_checkpoint(path), source=str(path))
    model = build_tokenizer(cfg, with_distill=with_distill, device="meta")
    model = model.to_empty(device=device)  # weights are written straight onto the target device
    drop = {} if with_distill else {f"{_vit_decoder_name(cfg)}.{DISTILL_PREFIX}": DISTILL_REASON}
    load_strict(model, state_dict, source=str(path), expected=f"tokenizer preset {preset.name!r}", drop=drop)
    return model.to(device=device, dtype=dtype).eval()
