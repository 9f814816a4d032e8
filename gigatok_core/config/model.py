"""Typed architecture configs for the tokenizer and the GPT (sizes from :mod:`.sizes`).

A config says *what the architecture is*; where its weights live is a separate record
(:mod:`gigatok_core.registry`). Configs are plain dataclasses validated in ``__post_init__`` and
merged with OmegaConf, so ``preset -> --config file.yaml -> key=value`` overrides share one grammar
and unknown keys are errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from gigatok_core.config.build import build_config, check
from gigatok_core.config.preset_files import declared
from gigatok_core.config.sizes import GPT_SIZES, VIT_SIZES

C = TypeVar("C", bound="Architecture")


class Architecture:
    """The litgpt-style constructors of an architecture config, once for both: ``KIND`` names the
    presets (``presets/tokenizers.yaml`` or ``presets/gpt.yaml``) and the checkpoints it reads."""

    KIND: ClassVar[str]

    @classmethod
    def from_name(cls: type[C], name: str, **overrides: Any) -> C:
        """Preset ``name`` with field overrides: ``TokenizerConfig.from_name("s-s", codebook_size=1024)``,
        ``GPTConfig.from_name("gpt-b", n_layer=2)``."""
        return build_config(cls, declared(cls.KIND, name)["config"], overrides=overrides)

    @classmethod
    def from_file(cls: type[C], path: str | Path, **overrides: Any) -> C:
        """A YAML file of this config's fields."""
        return build_config(cls, config_file=path, overrides=overrides)

    @classmethod
    def from_checkpoint(cls: type[C], path: str | Path) -> C:
        """The architecture a checkpoint was trained with: gigatok metadata, a run folder or an official file."""
        from gigatok_core.config.source import config_from_checkpoint

        return config_from_checkpoint(cls, path, kind=cls.KIND)


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
@dataclass
class TokenizerConfig(Architecture):
    """Architecture of a GigaTok VQ tokenizer (1D latent queries, or the 2D variant).

    Field names follow the official YAML where one exists. ``encoder_size``/``decoder_size`` are
    size names from :data:`VIT_SIZES`; ``*_width``/``*_depth``/``*_heads`` override one entry
    (used by the ``tiny`` preset and by tests that shrink a real preset).
    """

    KIND: ClassVar[str] = "tokenizer"

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
        check(self.arch in ("1d", "2d"), f"arch must be '1d' or '2d', got {self.arch!r}")
        for side in ("encoder", "decoder"):
            size = getattr(self, f"{side}_size")
            check(size in VIT_SIZES, f"{side}_size {size!r} is not one of {sorted(VIT_SIZES)}")
            for part in ("width", "depth", "heads"):
                value = getattr(self, f"{side}_{part}")
                check(value is None or value > 0, f"{side}_{part} must be positive, got {value}")
            width, _, heads = self.vit_shape(side)
            check(width % heads == 0, f"{side} width {width} is not divisible by {heads} heads")
        check(
            self.decoder_size != "xxxl" or self.decoder_width is not None,
            "the official 1D decoder has no 'xxxl' size",
        )
        check(
            self.transformer_layer_type in ("decoder_layer", "plain"),
            "transformer_layer_type must be 'decoder_layer' or 'plain'",
        )
        check(
            self.arch == "2d" or self.transformer_layer_type == "decoder_layer",
            "the 1D tokenizer only has the decoder_layer transformer",
        )
        check(
            self.cnn_channels > 0 and self.cnn_channels % 32 == 0,
            "cnn_channels must be a positive multiple of 32 (GroupNorm(32))",
        )
        check(len(self.ch_mult) >= 2, "ch_mult needs at least two levels")
        check(all(m > 0 for m in self.ch_mult), f"ch_mult entries must be positive, got {self.ch_mult}")
        check(self.image_size > 0, f"image_size must be positive, got {self.image_size}")
        check(
            self.encoder_res_blocks > 0 and self.decoder_res_blocks > 0,
            "encoder_res_blocks and decoder_res_blocks must be positive",
        )
        check(self.z_channels > 0, f"z_channels must be positive, got {self.z_channels}")
        check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        check(
            self.commit_beta >= 0 and self.entropy_loss_ratio >= 0,
            "commit_beta and entropy_loss_ratio must be >= 0",
        )
        check(self.distill_dim > 0, f"distill_dim must be positive, got {self.distill_dim}")
        check(self.image_size % self.downsample == 0, f"image_size must be a multiple of {self.downsample}")
        n = self.grid_size**2
        check(
            self.num_latent_tokens == n,
            f"num_latent_tokens ({self.num_latent_tokens}) must equal the CNN grid size^2 ({n})",
        )
        check(math.log2(n).is_integer(), "the number of latent tokens must be a power of two")
        check(self.codebook_size > 1 and self.codebook_dim > 0, "codebook_size/codebook_dim must be positive")
        check(
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
        given = [getattr(self, f"{side}_{part}") for part in ("width", "depth", "heads")]
        return tuple(d if g is None else g for g, d in zip(given, (width, depth, heads), strict=True))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# GPT
# ---------------------------------------------------------------------------------------------
@dataclass
class GPTConfig(Architecture):
    """Architecture of the class-conditional GPT (official gpt_1d, rope=False; docs/ar.md#architecture).

    ``size`` names a row of :data:`GPT_SIZES`; ``dim``/``n_layer``/``n_head`` (the official
    ``ModelArgs`` names) are filled from that row in ``__post_init__`` unless given (``gpt-tiny``
    and tests that shrink a real preset give them).
    """

    KIND: ClassVar[str] = "gpt"

    size: str = "gpt-b"
    dim: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    vocab_size: int = 16384
    block_size: int = 256  # image tokens
    num_classes: int = 1000
    class_dropout_prob: float = 0.1  # > 0 adds the null-class row (docs/ar.md#architecture)
    multiple_of: int = 256
    norm_eps: float = 1e-5
    token_dropout_p: float = 0.1
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1

    def __post_init__(self) -> None:
        check(self.size in GPT_SIZES, f"size {self.size!r} is not one of {sorted(GPT_SIZES)}")
        dim, n_layer, n_head = GPT_SIZES[self.size]
        self.dim = dim if self.dim is None else self.dim  # 0 is refused below, never "the size's"
        self.n_layer = n_layer if self.n_layer is None else self.n_layer
        self.n_head = n_head if self.n_head is None else self.n_head
        for name in ("dim", "n_layer", "n_head"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.dim % self.n_head == 0, f"dim {self.dim} is not divisible by {self.n_head} heads")
        check(
            self.vocab_size > 0 and self.block_size > 0 and self.num_classes > 0,
            "vocab_size, block_size and num_classes must be positive",
        )
        check(0.0 <= self.class_dropout_prob < 1.0, "class_dropout_prob must be in [0, 1)")
        for name in ("token_dropout_p", "resid_dropout_p", "ffn_dropout_p"):
            check(0.0 <= getattr(self, name) < 1.0, f"{name} must be in [0, 1)")
        check(self.multiple_of > 0 and self.norm_eps > 0, "multiple_of and norm_eps must be positive")

    @property
    def head_dim(self) -> int:
        assert self.dim is not None and self.n_head is not None  # filled in __post_init__
        return self.dim // self.n_head

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU hidden size: int(2 * 4d / 3) rounded up to a multiple of ``multiple_of``."""
        assert self.dim is not None
        hidden = int(2 * (4 * self.dim) / 3)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)
