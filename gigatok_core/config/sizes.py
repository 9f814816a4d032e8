"""The one size table: size names -> (width, depth, heads), for the ViTs and for the GPTs."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# The size table (docs/tokenizer.md#sizes-and-presets): name -> (width, depth, heads). MLP ratio 4, head dim 64.
# ---------------------------------------------------------------------------------------------
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (256, 4, 4),
    "small": (512, 6, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "xl": (1280, 36, 20),
    "xxl": (1536, 48, 24),
    "xxxl": (2560, 48, 40),
}

# GPT sizes (docs/ar.md#architecture): name -> (dim, n_layer, n_head).
GPT_SIZES: dict[str, tuple[int, int, int]] = {
    "gpt-b": (768, 12, 12),
    "gpt-l": (1024, 24, 16),
    "gpt-xl": (1280, 36, 20),
    "gpt-xxl": (1536, 48, 24),
    "gpt-xxxl": (2560, 48, 40),
    "gpt-1b": (2048, 22, 32),
    "gpt-3b": (3200, 24, 32),
    "gpt-7b": (4096, 32, 32),
}
