"""``VQTokenizer``: CNN encoder -> ViT encoder -> quantizer -> ViT decoder -> CNN decoder.

GigaTok, https://arxiv.org/abs/2504.08736. One class covers the 1D presets (official
``VQVitModelPlus``: N latent tokens read out by queries) and the 2D ones (``VQVitModel2DPlus``).
Attribute names and order equal the official state_dict (docs/tokenizer.md#module-names, #the-2d-variants).

Shapes for the released presets (B images of 256x256, N = 256 tokens, D = 8, Z = 256):
    x (B,3,256,256) -encoder-> s (B,Z,16,16) -vit enc-> (B,Z,1,N) -quant_conv-> h (B,D,1,N)
    -quantize-> z_q (B,D,1,N), codes (B,N) -post_quant_conv-> (B,Z,1,N) -vit dec-> (B,Z,16,16)
    -decoder-> (B,3,256,256)
The 2D variant keeps the (16,16) grid instead of (1,N).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gigatok_core.config import TokenizerConfig
from gigatok_core.errors import GigatokError
from gigatok_core.tokenizer.cnn import CNNDecoder, CNNEncoder
from gigatok_core.tokenizer.quantizer import QuantizerOutput, VectorQuantizer
from gigatok_core.tokenizer.transformer import Attention
from gigatok_core.tokenizer.vit import ViTDecoder1D, ViTDecoder2D, ViTEncoder1D, ViTEncoder2D

DISTILL_PREFIX = "distill_mlp."


@dataclass
class TokenizerOutput:
    """What :meth:`VQTokenizer.forward` returns (losses are None in eval, docs/tokenizer.md#the-forward-pass, docs/recipes.md#loop-and-data)."""

    recon: torch.Tensor  # (B,3,H,W) decode(rotated z_q)
    codes: torch.Tensor  # (B,N) int64
    direct_recon: torch.Tensor | None = None  # decoder(s): the aux shortcut (train, rec_loss)
    vq_loss: torch.Tensor | None = None
    commit_loss: torch.Tensor | None = None  # beta applied
    entropy_loss: torch.Tensor | None = None  # ratio applied (0 when the ratio is 0)
    usage: float | None = None  # distinct codes in the usage FIFO / codebook size
    fea_rec_loss: torch.Tensor | None = None  # MSE(rec_spatial, s.detach()) (train, rec_loss)
    distill_feat: torch.Tensor | None = None  # (B, g*g, distill_dim)

    @property
    def codebook_loss(self) -> torch.Tensor | None:
        """vq + commit + entropy (``codebook_weight`` is never applied, docs/recipes.md#generator-loss)."""
        if self.vq_loss is None:
            return None
        return self.vq_loss + self.commit_loss + self.entropy_loss


class VQTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig, *, with_distill: bool = False) -> None:
        super().__init__()
        self.config = cfg
        self.with_distill = with_distill
        z, g, n = cfg.z_channels, cfg.grid_size, cfg.num_latent_tokens
        (ew, ed, eh), (dw, dd, dh) = cfg.vit_shape("encoder"), cfg.vit_shape("decoder")
        distill_dim = cfg.distill_dim if with_distill else None
        self.encoder = CNNEncoder(cfg.cnn_channels, cfg.ch_mult, cfg.encoder_res_blocks, z, cfg.dropout)
        if cfg.arch == "1d":
            self._vit_names = ("s2to1encoder", "s1to2decoder")
            self.s2to1encoder = ViTEncoder1D(ew, ed, eh, z, g, n)
            self.s1to2decoder = ViTDecoder1D(dw, dd, dh, z, g, n, cfg.distill_depth, distill_dim)
        else:
            self._vit_names = ("s2dencoder", "s2ddecoder")
            kind = cfg.transformer_layer_type
            self.s2dencoder = ViTEncoder2D(ew, ed, eh, z, g, kind)
            self.s2ddecoder = ViTDecoder2D(dw, dd, dh, z, g, kind, cfg.distill_depth, distill_dim)
        self.decoder = CNNDecoder(cfg.cnn_channels, cfg.ch_mult, cfg.decoder_res_blocks, z, cfg.dropout)
        self.quantize = VectorQuantizer(
            cfg.codebook_size, cfg.codebook_dim, cfg.commit_beta, cfg.entropy_loss_ratio, cfg.rot
        )
        self.quant_conv = nn.Conv2d(z, cfg.codebook_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_dim, z, 1)
        self.channels_last = False  # set by use_channels_last(); images are then fed NHWC

    # -----------------------------------------------------------------------------------------
    # Helpers
    # -----------------------------------------------------------------------------------------
    @property
    def vit_encoder(self) -> nn.Module:
        return getattr(self, self._vit_names[0])

    @property
    def vit_decoder(self) -> nn.Module:
        return getattr(self, self._vit_names[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.quant_conv.weight.device

    @property
    def num_tokens(self) -> int:
        return self.config.num_latent_tokens

    def use_channels_last(self) -> VQTokenizer:
        """Store the CNN weights channels_last (NHWC) and feed images NHWC; :func:`load_tokenizer`
        does this on CUDA. On CPU it is correct but no faster: the GroupNorms must run NCHW there
        (see :func:`~gigatok_core.tokenizer.cnn.stable_group_norm`), and the layout changes cost
        what the NHWC convolutions save. Returns self."""
        self.encoder.to(memory_format=torch.channels_last)
        self.decoder.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        g = self.config.grid_size
        d = self.config.codebook_dim
        return (batch, d, 1, g * g) if self.config.arch == "1d" else (batch, d, g, g)

    def _check_images(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
            raise GigatokError(
                f"the tokenizer takes (B, 3, {size}, {size}) images, got {tuple(x.shape)}",
                hint=f"center-crop and resize the images to {size}x{size} first",
            )
        x = x.to(device=self.device, dtype=self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # -----------------------------------------------------------------------------------------
    # Encoding
    # -----------------------------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor, *, intermediates: bool = False):
        """Images (B,3,H,W) in [-1,1] -> pre-quantization latent h (B,D,1,N), not normalised.

        With ``intermediates`` returns (h, {"cnn_enc": s, "vit_enc_out": ...}).
        """
        s = self.encoder(self._check_images(x))  # (B, Z, g, g)
        v = self.vit_encoder(s)  # (B, Z, 1, N) or (B, Z, g, g)
        h = self.quant_conv(v)
        return (h, {"cnn_enc": s, "vit_enc_out": v}) if intermediates else h

    def quantize_latent(self, h: torch.Tensor) -> QuantizerOutput:
        return self.quantize(h)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B,3,H,W) float in [-1,1] -> codes (B, N) int64."""
        return self.quantize(self.encode_latent(images)).codes

    # -----------------------------------------------------------------------------------------
    # Decoding
    # -----------------------------------------------------------------------------------------
    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, N) -> normalised codebook rows laid out as the latent (official ``get_codebook_entry``)."""
        if codes.ndim != 2 or codes.shape[1] != self.num_tokens:
            raise GigatokError(f"expected codes of shape (B, {self.num_tokens}), got {tuple(codes.shape)}")
        codes = codes.to(device=self.device, dtype=torch.long)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.codebook_size):
            raise GigatokError(
                f"codes must lie in [0, {self.config.codebook_size}); got "
                f"[{int(codes.min())}, {int(codes.max())}]",
                hint="the codes were probably made with another tokenizer preset",
            )
        rows = self.quantize.lookup(codes).to(self.dtype)  # (B, N, D)
        b, _, h, w = self.latent_shape(codes.shape[0])
        return rows.transpose(1, 2).reshape(b, -1, h, w)

    def decode_spatial(self, z_q: torch.Tensor, *, distill: bool = False):
        """Latent (B,D,1,N) -> (rec_spatial (B,Z,g,g), distill features or None)."""
        if distill and not hasattr(self.vit_decoder, "distill_mlp"):
            raise GigatokError(
                "this tokenizer was built without the distill head", hint="build it with with_distill=True"
            )
        return self.vit_decoder(self.post_quant_conv(z_q.to(self.dtype)), distill=distill)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Latent (B,D,1,N) -> images (B,3,H,W), unclamped."""
        return self.decoder(self.decode_spatial(z_q)[0])

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, N) -> images (B,3,H,W) float, nominally in [-1,1] but not clamped."""
        return self.decode(self.codes_to_latent(codes))

    # -----------------------------------------------------------------------------------------
    # The official training/eval forward
    # -----------------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        *,
        rec_loss: bool | None = None,
        distill: bool | None = None,
        direct: bool | None = None,
    ) -> TokenizerOutput:
        """Encode, quantize (rotation trick), decode. In train mode also the losses (docs/recipes.md#loop-and-data).

        ``rec_loss`` (default: training) adds the aux shortcut ``decoder(s)`` and the feature
        reconstruction loss; ``direct=False`` skips the shortcut alone (a recipe without
        ``use_direct_rec_loss`` never reads it); ``distill`` (default: training with the head
        built) adds the semantic-regularization features.
        """
        rec_loss = self.training if rec_loss is None else rec_loss
        direct = rec_loss if direct is None else (direct and rec_loss)
        distill = (self.training and self.with_distill) if distill is None else distill
        h, inter = self.encode_latent(x, intermediates=True)
        q = self.quantize(h)
        rec_spatial, feat = self.decode_spatial(q.z_q, distill=distill)
        out = TokenizerOutput(
            recon=self.decoder(rec_spatial),
            codes=q.codes,
            vq_loss=q.vq_loss,
            commit_loss=q.commit_loss,
            entropy_loss=q.entropy_loss,
            usage=q.usage,
            distill_feat=feat,
        )
        if rec_loss:
            s = inter["cnn_enc"]
            if direct:  # s itself is the adaptive-GroupNorm style; not detached (docs/recipes.md#details-pinned-by-the-training-fixture)
                out.direct_recon = self.decoder(s)
            out.fea_rec_loss = F.mse_loss(rec_spatial.float(), s.detach().float())
        elif self.training:
            out.fea_rec_loss = h.new_zeros((), dtype=torch.float32)
        return out


# ---------------------------------------------------------------------------------------------
# Official initialization (for training from scratch; a checkpoint load replaces all of it)
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def init_weights(model: VQTokenizer, generator: torch.Generator | None = None) -> None:
    """The official initialization (docs/tokenizer.md#module-names): trunc-normal(0.02) Linear/Conv, zero biases, unit LayerNorms, xavier in_proj,
    width^-0.5 normal positional embeddings; quantizer and quant convs keep torch defaults."""
    skip = {
        id(m) for part in (model.quantize, model.quant_conv, model.post_quant_conv) for m in part.modules()
    }
    for m in model.modules():
        if id(m) in skip:
            continue
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.LayerNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif isinstance(m, Attention):
            nn.init.xavier_uniform_(m.in_proj_weight, generator=generator)
            m.in_proj_bias.zero_()
    for name, p in model.named_parameters():
        if name.endswith("positional_embedding"):
            p.copy_(torch.randn(p.shape, generator=generator, device=p.device) * p.shape[-1] ** -0.5)
