"""Structural check of a checkpoint (keys and shapes fit its preset) and its safetensors conversion.

A checkpoint is accepted into the cache only when its weights entry has exactly the keys and
shapes of the model its preset builds (on the meta device: no memory, no init). The weights entry
is then written once as safetensors, so every later load memory-maps it instead of unpickling.

Which entry: tokenizers prefer ``ema`` > ``model`` > ``state_dict`` (the official reconstruction
and sampling scripts, docs/tokenizer.md#checkpoints); GPTs take ``model`` > ``module`` > ``state_dict`` (the
official GPT loaders ignore ``ema``, docs/ar.md#checkpoints).

The expected shapes come from a provider ``(record) -> {key: shape} | None`` passed in by the caller:
the hub knows nothing of models. :func:`gigatok_core.weights.expected_shapes` builds them from the
presets; tests inject a small mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from gigatok_core.errors import GigatokError
from gigatok_core.registry import WeightsRecord

Shapes = Mapping[str, tuple[int, ...]]
ShapesFn = Callable[[WeightsRecord], Shapes | None]

PREFER: dict[str, tuple[str, ...]] = {
    "tokenizer": ("ema", "model", "state_dict"),
    "gpt": ("model", "module", "state_dict"),
}


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------
def convert(
    raw: Path,
    out: Path,
    *,
    kind: str,
    expected: Shapes | None,
    what: str,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Check ``raw``'s weights entry against ``expected`` and write it to ``out`` (safetensors,
    atomically). Returns the entry name used. Raises :class:`GigatokError` for a wrong file."""
    import torch

    from gigatok_core.checkpoints.files import check_shapes, extract_state_dict, read_checkpoint, save_weights
    from gigatok_core.registry import weights_meta

    with open(raw, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise GigatokError(
            f"{raw.name} is a web page (HTML), not a checkpoint",
            hint="Drive sometimes serves an error page; download the file again",
        )
    ckpt = read_checkpoint(raw)
    sd, entry = extract_state_dict(ckpt, prefer=PREFER[kind], source=raw.name)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise GigatokError(
            f"{raw.name}: entry {entry!r} holds non-tensor values (first: {bad[0]})",
            hint="this is not an official GigaTok checkpoint",
        )
    if expected is not None:
        check_shapes({k: tuple(v.shape) for k, v in sd.items()}, expected, source=raw.name, what=what)
    # Self-describing (kind, preset, config, GPT pairing): loaders never guess the preset from
    # shapes. ``raw`` keeps its registered file name in the cache.
    meta = {**weights_meta(raw.name), "entry": entry, "source_file": raw.name, **(metadata or {})}
    save_weights(out, sd, meta)  # atomic; clones only tensors that share storage
    return entry


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Keys and shapes from a safetensors header (no tensor data read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # a truncated or foreign file
        raise GigatokError(
            f"{path} is not a readable safetensors file ({err})",
            hint="delete it; it is downloaded again on the next use",
        ) from None
