"""The tokenizer side of code extraction: which weights, the encoder half only, a batch -> codes.

As the official ``extract_codes_c2i.py`` (docs/recipes.md#gpt) the decoder is deleted; here it is never even
allocated: the model is built on the meta device, the decoder half removed, and only the encoder
is materialised and loaded strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gigatok_core.config import TokenizerConfig
from gigatok_core.data.codes_format import CodesTokenizer


def _decoder_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    return ("decoder.", f"{model._vit_names[1]}.", "post_quant_conv.")


def _strip_decoder(model: torch.nn.Module) -> None:
    """Delete the decoder half (CNN decoder, ViT decoder, post-quant conv), as the official script."""
    for name in ("decoder", model._vit_names[1], "post_quant_conv"):
        delattr(model, name)


def resolve_tokenizer_checkpoint(path: str | Path) -> Path:
    """The weights file behind ``--checkpoint``: a file as given; for a folder, its newest exported
    tokenizer (``*.safetensors`` with gigatok metadata of kind 'tokenizer'), else the ``ema`` (or
    ``model``) weights of its latest training checkpoint (a run folder or a step folder,
    :func:`gigatok_core.weights.resolve_weights`, which also takes hub ids)."""
    from gigatok_core.weights import resolve_weights

    return resolve_weights(path, "--checkpoint", kind="tokenizer")


def tokenizer_architecture(tokenizer: str, checkpoint: Path | None) -> tuple[TokenizerConfig, str]:
    """(architecture to build, what to call it in errors) for preset ``tokenizer`` and the resolved
    weights file ``checkpoint``: the file's own config when it describes itself (a gigatok-trained
    tokenizer may have overridden the preset's codebook size or token count,
    :func:`gigatok_core.tokenizer.load.checkpoint_config`), else the preset's."""
    from gigatok_core.registry import tokenizer_preset
    from gigatok_core.tokenizer.load import checkpoint_config

    preset = tokenizer_preset(tokenizer)
    if checkpoint is None:
        return preset.config, f"tokenizer preset {preset.name!r}"
    return checkpoint_config(checkpoint, preset.name)


def tokenizer_record(
    tokenizer: str, checkpoint: str | Path | None = None
) -> tuple[CodesTokenizer, Path | None]:
    """The manifest's record of a tokenizer (preset, weights file and its sha256, codebook size and
    tokens of the checkpoint's architecture) and the resolved file.

    Without ``checkpoint`` the released file is named by the preset (its registered sha256, if any).
    """
    from gigatok_core.registry import tokenizer_preset
    from gigatok_core.utils.fileio import sha256_file

    preset = tokenizer_preset(tokenizer)
    ckpt = resolve_tokenizer_checkpoint(checkpoint) if checkpoint is not None else None
    cfg, _ = tokenizer_architecture(preset.name, ckpt)
    preset_sha = preset.weights_record.sha256 if preset.weights_record else None
    record = CodesTokenizer(
        codebook_size=cfg.codebook_size,
        num_tokens=cfg.num_latent_tokens,
        preset=preset.name,
        checkpoint=str(ckpt.resolve()) if ckpt else None,
        sha256=sha256_file(ckpt) if ckpt else preset_sha,
    )
    return record, ckpt


def load_encoder(
    tokenizer: str, *, checkpoint: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, CodesTokenizer]:
    """The tokenizer's encoder half (eval mode) and the record of which weights it holds.

    With weights (a checkpoint, or the preset's released file) the checkpoint's architecture is
    built on the meta device, the decoder deleted, then only the encoder is allocated and loaded
    strictly; the decoder is never built. A preset without released weights (``tiny``) gets its
    seeded random weights.
    """
    from gigatok_core.checkpoints.files import extract_state_dict, load_strict, read_checkpoint
    from gigatok_core.registry import tokenizer_preset
    from gigatok_core.tokenizer import build_tokenizer, load_tokenizer

    preset = tokenizer_preset(tokenizer)
    record, ckpt = tokenizer_record(tokenizer, checkpoint)
    if ckpt is None and preset.weights is None:  # seeded random weights: built whole, then cut
        model = load_tokenizer(preset.name, device="cpu")
        _strip_decoder(model)
        return model.to(device), record
    if ckpt is None:
        from gigatok_core.weights import fetch_weights

        ckpt = fetch_weights(preset.weights)
    cfg, label = tokenizer_architecture(preset.name, ckpt)
    state_dict, _ = extract_state_dict(read_checkpoint(ckpt), source=str(ckpt))
    model = build_tokenizer(cfg, device="meta")
    prefixes = _decoder_prefixes(model)
    _strip_decoder(model)
    model = model.to_empty(device=device)
    load_strict(
        model,
        state_dict,
        source=str(ckpt),
        expected=label,
        drop=dict.fromkeys(prefixes, "decoder: extract-codes only encodes"),
    )
    return model.eval(), record


def encode_batch(model: torch.nn.Module, images: torch.Tensor, amp_dtype: torch.dtype) -> torch.Tensor:
    """Images (B, crops, 3, S, S) in [-1, 1] -> codes (B, crops, T) int64."""
    b, crops = images.shape[:2]
    x = images.flatten(0, 1).to(model.device, non_blocking=True)  # (B·crops, 3, S, S)
    with torch.inference_mode():
        with torch.autocast(model.device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            h = model.encode_latent(x)  # (B·crops, D, 1, T)
        codes = model.quantize(h.float()).codes  # nearest code in fp32: (B·crops, T)
    return codes.view(b, crops, -1).cpu()
