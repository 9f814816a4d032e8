"""Building a tokenizer from a config and loading official (or gigatok) checkpoints into it."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import torch

from gigatok_core.checkpoints.files import extract_state_dict, load_strict, read_checkpoint
from gigatok_core.config import TokenizerConfig
from gigatok_core.config.source import describe_checkpoint, is_hub_ref, weights_file
from gigatok_core.errors import GigatokError
from gigatok_core.registry import tokenizer_names, tokenizer_preset
from gigatok_core.tokenizer.model import DISTILL_PREFIX, VQTokenizer, init_weights

RANDOM_OK = ("tiny",)  # presets that may be built with (seeded) random weights
RANDOM_SEED = 0
DISTILL_REASON = "training-only semantic-regularization head"


def build_tokenizer(
    cfg: TokenizerConfig, *, with_distill: bool = False, device: str | torch.device | None = None
) -> VQTokenizer:
    """An uninitialised-by-checkpoint tokenizer (official random init) on ``device``.

    ``device="meta"`` builds the module tree without allocating weights (for shape checks).
    """
    with torch.device(device or "cpu"):
        return VQTokenizer(cfg, with_distill=with_distill)


def _vit_decoder_name(cfg: TokenizerConfig) -> str:
    return "s1to2decoder" if cfg.arch == "1d" else "s2ddecoder"


@functools.cache
def _signature(name: str) -> dict[str, tuple[int, ...]]:
    """key -> shape of preset ``name`` built with the distill head (meta device, no memory)."""
    model = build_tokenizer(tokenizer_preset(name).config, with_distill=True, device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_preset(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The first registered preset whose state_dict has exactly these keys and shapes (distill optional).

    Presets that share an architecture (``b-l`` and ``b-l-dino``) are indistinguishable; the first
    listed wins.
    """
    have = {k: tuple(v.shape) for k, v in state_dict.items()}
    for name in tokenizer_names():
        sig = _signature(name)
        if have == sig or have == {k: v for k, v in sig.items() if DISTILL_PREFIX not in k}:
            return name
    return None


def tokenizer_config_of(path: str | Path) -> tuple[TokenizerConfig, str | None]:
    """(config, preset name or None) of a tokenizer checkpoint: a file, a checkpoint or run folder.

    A file gigatok wrote says what it is (its metadata: config and preset), so ``b-l`` and
    ``b-l-dino`` are told apart; an official ``.pt`` is recognised from its keys and shapes.
    """
    meta = describe_checkpoint(path, kind="tokenizer")
    if meta is not None:
        preset = meta.get("preset") if meta.get("preset") in tokenizer_names() else None
        return TokenizerConfig.from_checkpoint(path), preset
    sd, _ = extract_state_dict(read_checkpoint(weights_file(path, kind="tokenizer")), source=str(path))
    name = guess_preset(sd)
    if name is None:
        raise GigatokError(
            f"{path} does not match any tokenizer preset",
            hint="name the preset and pass the file as checkpoint (--checkpoint FILE)",
        )
    return tokenizer_preset(name).config, name


def checkpoint_preset(checkpoint: str | Path | None) -> str | None:
    """The preset a self-describing tokenizer checkpoint (a file gigatok wrote, a run or checkpoint
    folder) was saved as, when it is a registry name; None for an official file or no checkpoint."""
    if checkpoint is None:
        return None
    meta = describe_checkpoint(checkpoint, kind="tokenizer")
    preset = meta.get("preset") if meta is not None else None
    return preset if preset in tokenizer_names() else None


def _is_checkpoint_path(name_or_path: str) -> bool:
    return name_or_path not in tokenizer_names() and (is_hub_ref(name_or_path) or Path(name_or_path).exists())


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
    (:func:`gigatok_core.hub.fetch_weights`). Only ``tiny`` may be built with seeded random
    weights. ``name_or_path`` may also be a checkpoint (file, checkpoint folder or run folder).
    The architecture comes from the checkpoint's own metadata when it has some (files gigatok
    writes), else from the preset, or for an official file named alone, from its shapes.
    ``checkpoint`` (or ``name_or_path``) may be a Hugging Face Hub reference,
    ``hf://OWNER/REPO[@REVISION]`` or ``hf://OWNER/REPO/FILE`` (:func:`gigatok_core.hub.resolve_hub_ref`).
    """
    from gigatok_core.weights import local_weights

    if checkpoint is not None:
        checkpoint = local_weights(checkpoint, "tokenizer checkpoint")  # a hub id: its local copy
    if checkpoint is None and _is_checkpoint_path(name_or_path):
        return _load_checkpoint(local_weights(name_or_path), None, device, dtype, with_distill)
    preset = tokenizer_preset(name_or_path)
    cfg = preset.config
    if checkpoint is None and preset.weights is None:
        if preset.name not in RANDOM_OK:
            raise GigatokError(
                f"tokenizer preset {preset.name!r} has no released weights",
                hint="pass a checkpoint file (--checkpoint FILE) trained with this preset",
            )
        gen = torch.Generator().manual_seed(RANDOM_SEED)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = build_tokenizer(cfg, with_distill=with_distill, device="cpu")
            init_weights(model, generator=gen)
        return _ready(model, device, dtype)

    if checkpoint is None:
        from gigatok_core.weights import fetch_weights

        checkpoint = fetch_weights(preset.weights)
    return _load_checkpoint(Path(checkpoint), preset.name, device, dtype, with_distill)


def _load_checkpoint(
    checkpoint: Path,
    preset_name: str | None,
    device: str | torch.device,
    dtype: torch.dtype,
    with_distill: bool,
) -> VQTokenizer:
    """Build the checkpoint's architecture and load it strictly."""
    path = weights_file(checkpoint, kind="tokenizer")
    state_dict, _entry = extract_state_dict(read_checkpoint(path), source=str(path))
    cfg, label = checkpoint_config(checkpoint, preset_name, state_dict)
    model = build_tokenizer(cfg, with_distill=with_distill, device="meta")
    model = model.to_empty(device=device)  # weights are written straight onto the target device
    drop = {} if with_distill else {f"{_vit_decoder_name(cfg)}.{DISTILL_PREFIX}": DISTILL_REASON}
    try:
        load_strict(model, state_dict, source=str(path), expected=label, drop=drop)
    except GigatokError as err:
        other = guess_preset(state_dict)
        if other and other != preset_name:
            err.hint = f"this file looks like tokenizer preset {other!r}; use that preset instead"
        raise
    return _ready(model, device, dtype)


def checkpoint_config(
    checkpoint: str | Path, preset_name: str | None, state_dict: Mapping[str, torch.Tensor] | None = None
) -> tuple[TokenizerConfig, str]:
    """(architecture to build, what to call it in errors) for a checkpoint and the preset asked for.

    What every tokenizer loader (full model, encoder only) should build for ``--checkpoint``.
    ``state_dict`` (the file's weights, when already read) is needed only for an official file
    named without a preset.

    A self-describing checkpoint's config is used as is (a run may have overridden the preset's
    sizes); asking for another preset than the one it was saved as is an error naming that one
    (``b-l`` and ``b-l-dino`` share every shape: only the file can tell them apart).
    """
    meta = describe_checkpoint(checkpoint, kind="tokenizer")
    if meta is None:
        if preset_name is None and state_dict is None:
            state_dict, _ = extract_state_dict(
                read_checkpoint(weights_file(checkpoint, kind="tokenizer")), source=str(checkpoint)
            )
        name = preset_name or guess_preset(state_dict or {})
        if name is None:
            raise GigatokError(
                f"{checkpoint} does not match any tokenizer preset",
                hint="name the preset and pass the file as checkpoint (--checkpoint FILE)",
            )
        return tokenizer_preset(name).config, f"tokenizer preset {name!r}"
    cfg, own = tokenizer_config_of(checkpoint)
    saved = meta.get("preset")
    if preset_name is not None and saved is not None and saved != preset_name:
        raise GigatokError(
            f"{checkpoint} holds tokenizer {saved!r}, not {preset_name!r}",
            hint=f"use --tokenizer {saved}" if own else "omit the preset: the file describes itself",
        )
    return cfg, f"tokenizer preset {own!r}" if own else "the tokenizer config in its metadata"


def _ready(model: VQTokenizer, device: str | torch.device, dtype: torch.dtype) -> VQTokenizer:
    """On ``device`` in ``dtype``, eval mode, channels_last on CUDA (faster convolutions there)."""
    model = model.to(device=device, dtype=dtype).eval()
    return model.use_channels_last() if model.device.type == "cuda" else model
