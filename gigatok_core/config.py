"""Typed configs for the tokenizer and the GPT, and the one size table.

A config says *what the architecture is*; where its weights live is a separate record
(:mod:`gigatok_core.registry`). Configs are plain dataclasses validated in ``__post_init__`` and
merged with OmegaConf, so ``preset -> --config file.yaml -> key=value`` overrides share one grammar
and unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gigatok_core.errors import GigatokError

# ---------------------------------------------------------------------------------------------
# The size table (spec tokenizer §1.1): name -> (width, depth, heads). MLP ratio 4, head dim 64.
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

# GPT sizes (spec ar §2): name -> (dim, n_layer, n_head).
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


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise GigatokError(f"invalid config: {msg}")


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
@dataclass
class TokenizerConfig:
    """Architecture of a GigaTok VQ tokenizer (1D latent queries, or the 2D variant).

    Field names follow the official YAML where one exists. ``encoder_size``/``decoder_size`` are
    size names from :data:`VIT_SIZES`; ``*_width``/``*_depth``/``*_heads`` override one entry
    (used by the ``tiny`` preset and by tests that shrink a real preset).
    """

    arch: str = "1d"  # "1d" (VQVitModelPlus) or "2d" (VQVitModel2DPlus)
    image_size: int = 256
    encoder_size: str = "small"
    decoder_size: str = "small"
    encoder_width: int | None = None
    encoder_depth: int | None = None
    encoder_heads: int | None = None
    decoder_width: int | None = None
    decoder_depth: int | None = None
    decoder_heads: int | None = None
    # 2D only: "decoder_layer" (self+cross attention, the default) or "plain" (TransformerLayer).
    transformer_layer_type: str = "decoder_layer"
    # CNN parts (fixed in every released preset; shrunk only by `tiny`).
    cnn_channels: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    encoder_res_blocks: int = 2
    decoder_res_blocks: int = 3
    z_channels: int = 256
    dropout: float = 0.0
    # Latents and codebook.
    num_latent_tokens: int = 256
    codebook_size: int = 16384
    codebook_dim: int = 8
    commit_beta: float = 0.25
    entropy_loss_ratio: float = 0.0
    rot: bool = True  # rotation trick (Fifty et al. 2024)
    # Semantic regularization head (training only): decoder layer to tap and teacher width.
    distill_depth: int = 3
    distill_dim: int = 768

    def __post_init__(self) -> None:
        _check(self.arch in ("1d", "2d"), f"arch must be '1d' or '2d', got {self.arch!r}")
        for side in ("encoder", "decoder"):
            size = getattr(self, f"{side}_size")
            _check(size in VIT_SIZES, f"{side}_size {size!r} is not one of {sorted(VIT_SIZES)}")
            width, _, heads = self.vit_shape(side)
            _check(width % heads == 0, f"{side} width {width} is not divisible by {heads} heads")
        _check(
            self.decoder_size != "xxxl" or self.decoder_width is not None,
            "the official 1D decoder has no 'xxxl' size",
        )
        _check(
            self.transformer_layer_type in ("decoder_layer", "plain"),
            "transformer_layer_type must be 'decoder_layer' or 'plain'",
        )
        _check(
            self.arch == "2d" or self.transformer_layer_type == "decoder_layer",
            "the 1D tokenizer only has the decoder_layer transformer",
        )
        _check(self.cnn_channels % 32 == 0, "cnn_channels must be a multiple of 32 (GroupNorm(32))")
        _check(len(self.ch_mult) >= 2, "ch_mult needs at least two levels")
        _check(self.image_size % self.downsample == 0, f"image_size must be a multiple of {self.downsample}")
        n = self.grid_size**2
        _check(
            self.num_latent_tokens == n,
            f"num_latent_tokens ({self.num_latent_tokens}) must equal the CNN grid size^2 ({n})",
        )
        _check(math.log2(n).is_integer(), "the number of latent tokens must be a power of two")
        _check(
            self.codebook_size > 1 and self.codebook_dim > 0, "codebook_size/codebook_dim must be positive"
        )
        _check(
            1 <= self.distill_depth <= self.vit_shape("decoder")[1],
            "distill_depth must be between 1 and the decoder depth",
        )

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid_size(self) -> int:
        """Side of the CNN feature map (16 for every released preset)."""
        return self.image_size // self.downsample

    def vit_shape(self, side: str) -> tuple[int, int, int]:
        """(width, depth, heads) of the encoder or decoder transformer."""
        width, depth, heads = VIT_SIZES[getattr(self, f"{side}_size")]
        return (
            getattr(self, f"{side}_width") or width,
            getattr(self, f"{side}_depth") or depth,
            getattr(self, f"{side}_heads") or heads,
        )


# ---------------------------------------------------------------------------------------------
# GPT
# ---------------------------------------------------------------------------------------------
@dataclass
class GPTConfig:
    """Architecture of the class-conditional GPT (official gpt_1d, rope=False)."""

    size: str = "gpt-b"
    dim: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    vocab_size: int = 16384
    block_size: int = 256  # image tokens
    num_classes: int = 1000
    class_dropout_prob: float = 0.1
    multiple_of: int = 256
    norm_eps: float = 1e-5
    token_dropout_p: float = 0.1
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1

    def __post_init__(self) -> None:
        _check(self.size in GPT_SIZES, f"size {self.size!r} is not one of {sorted(GPT_SIZES)}")
        _check(self.width % self.heads == 0, f"dim {self.width} is not divisible by {self.heads} heads")
        _check(
            self.vocab_size > 0 and self.block_size > 0 and self.num_classes > 0,
            "vocab_size, block_size and num_classes must be positive",
        )

    @property
    def width(self) -> int:
        return self.dim or GPT_SIZES[self.size][0]

    @property
    def depth(self) -> int:
        return self.n_layer or GPT_SIZES[self.size][1]

    @property
    def heads(self) -> int:
        return self.n_head or GPT_SIZES[self.size][2]

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU hidden size: int(2 * 4d / 3) rounded up to a multiple of ``multiple_of``."""
        hidden = int(2 * (4 * self.width) / 3)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


# ---------------------------------------------------------------------------------------------
# One override grammar: mapping -> file -> dotlist, unknown keys rejected.
# ---------------------------------------------------------------------------------------------
C = TypeVar("C", TokenizerConfig, GPTConfig)


def build_config(
    cls: type[C],
    base: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> C:
    """Merge ``base`` (a preset's mapping), a YAML file and ``key=value`` overrides into ``cls``."""
    schema = OmegaConf.structured(cls)
    layers: list[Any] = [schema]
    try:
        if base:
            layers.append(OmegaConf.create(base))
        if config_file is not None:
            path = Path(config_file)
            if not path.is_file():
                raise GigatokError(f"config file {path} does not exist")
            layers.append(OmegaConf.load(path))
        if overrides:
            layers.append(
                OmegaConf.from_dotlist(list(overrides))
                if isinstance(overrides, list)
                else OmegaConf.create(dict(overrides))
            )
        merged = OmegaConf.merge(*layers)
        values = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        raise GigatokError(
            f"bad {cls.__name__} setting: {err.msg if hasattr(err, 'msg') else err}",
            hint=f"known keys: {known}",
        ) from None
    assert isinstance(values, dict)
    return cls(**values)


def config_to_dict(cfg: TokenizerConfig | GPTConfig) -> dict[str, Any]:
    """A plain dict (for checkpoints and the resolved-config file written next to outputs)."""
    return dataclasses.asdict(cfg)
