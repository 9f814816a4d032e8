"""The CNN halves of the tokenizer: encoder (256x256 -> 16x16) and decoder (16x16 -> 256x256).

See docs/tokenizer.md#module-names, #encoder, #decoder. Module and attribute names equal the official ones
(``conv_blocks.{i}.res.{j}``, ``mid.{j}``, ``adaptive.{i}.gamma`` ...) so official checkpoints
load unchanged. The decoder uses adaptive GroupNorm (style = its own 16x16 input) and a
depth-to-space upsampler in DCR channel order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

GN_GROUPS = 32
GN_EPS = 1e-6


def stable_group_norm(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.group_norm`` that never takes PyTorch's CPU kernel for channels_last inputs.

    That kernel computes the variance in one pass (E[x^2] - E[x]^2, summed one by one) and loses all
    precision when a group's mean is large against its spread: for mean 4 and std 0.01 its error
    is 45, where the NCHW kernel (Welford with cascade sums) errs by 5e-5. NHWC tensors reach the
    CNN decoder from the transformer (a permuted view), so on CPU they are made NCHW here (on CUDA
    torch itself makes GroupNorm inputs NCHW before its Welford kernel).
    """
    if x.device.type == "cpu" and not x.is_contiguous():
        x = x.contiguous()
    return F.group_norm(x, GN_GROUPS, weight, bias, GN_EPS)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state_dict keys) computed by :func:`stable_group_norm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stable_group_norm(x, self.weight, self.bias)


def group_norm(channels: int, affine: bool = True) -> GroupNorm:
    return GroupNorm(GN_GROUPS, channels, eps=GN_EPS, affine=affine)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """h = conv2(drop(swish(GN2(conv1(swish(GN1(x))))))); out = shortcut(x) + h."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        if in_ch != out_ch:
            self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        inplace = not torch.is_grad_enabled()  # inference: reuse buffers (memory traffic dominates)
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=inplace)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return h.add_(x) if inplace else x + h


class Downsample(nn.Module):
    """Pad one zero column right and one zero row bottom, then a 3x3 stride-2 conv (no padding)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class D2SUpsample(nn.Module):
    """3x3 conv C -> 4C, then depth-to-space (block 2) in **DCR** order (docs/tokenizer.md#decoder, #pitfalls).

    Input channel ``(i*2 + j)*C + c`` goes to output channel ``c`` at ``(2y+i, 2x+j)``;
    ``F.pixel_shuffle`` would use channel ``c*4 + i*2 + j`` instead.
    """

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, 4 * ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        y = self.conv1(x)
        if y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous():
            # Shuffle in NHWC order so the copy moves whole runs of C channels (3x faster on CPU);
            # the result is channels_last too.
            nhwc = rearrange(y.permute(0, 2, 3, 1), "b h w (i j c) -> b (h i) (w j) c", i=2, j=2)
            return nhwc.permute(0, 3, 1, 2)
        return rearrange(y, "b (i j c) h w -> b c (h i) (w j)", i=2, j=2)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine, modulated by the channel statistics of a style map.

    scale = gamma(sqrt(var_unbiased(style) + eps)), bias = beta(mean(style)), both per channel.
    The official code computes the **unbiased** variance (divisor HW - 1), whatever its comment says.
    """

    def __init__(self, style_ch: int, ch: int) -> None:
        super().__init__()
        self.gamma = nn.Linear(style_ch, ch)
        self.beta = nn.Linear(style_ch, ch)

    def forward(self, x: torch.Tensor, style_std: torch.Tensor, style_mean: torch.Tensor) -> torch.Tensor:
        # x (B, C, H, W); style_std/style_mean (B, S)
        h = stable_group_norm(x)
        scale = self.gamma(style_std)[:, :, None, None]  # (B, C, 1, 1)
        bias = self.beta(style_mean)[:, :, None, None]
        return torch.addcmul(bias, h, scale)


def style_stats(style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(std, mean) per channel of ``style`` (B, S, H, W), unbiased variance, computed in fp32."""
    flat = style.flatten(2).float()  # (B, S, HW)
    var, mean = torch.var_mean(flat, dim=2, correction=1)
    return torch.sqrt(var + GN_EPS).to(style.dtype), mean.to(style.dtype)


class _Level(nn.Module):
    """One resolution level: ``res`` blocks, then an optional resampler."""

    def __init__(self, blocks: list[ResnetBlock]) -> None:
        super().__init__()
        self.res = nn.ModuleList(blocks)


# ---------------------------------------------------------------------------------------------
# Encoder / decoder
# ---------------------------------------------------------------------------------------------
class CNNEncoder(nn.Module):
    """(B, 3, H, W) -> (B, z_channels, H/16, W/16) for ch_mult of length 5."""

    def __init__(
        self,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: int,
        z_channels: int,
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_mult = (1, *ch_mult)
        self.conv_blocks = nn.ModuleList()
        block_out = ch
        for i, mult in enumerate(ch_mult):
            block_in, block_out = ch * in_mult[i], ch * mult
            blocks = [
                ResnetBlock(block_in if j == 0 else block_out, block_out, dropout)
                for j in range(num_res_blocks)
            ]
            level = _Level(blocks)
            if i < len(ch_mult) - 1:
                level.downsample = Downsample(block_out)
            self.conv_blocks.append(level)
        self.mid = nn.ModuleList([ResnetBlock(block_out, block_out, dropout) for _ in range(2)])
        self.norm_out = group_norm(block_out)
        self.conv_out = nn.Conv2d(block_out, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            for block in level.res:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))


class CNNDecoder(nn.Module):
    """(B, z_channels, h, w) -> (B, 3, 16h, 16w); adaptive GN driven by the input itself."""

    def __init__(
        self,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: int,
        z_channels: int,
        dropout: float = 0.0,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.ModuleList([ResnetBlock(block_in, block_in, dropout) for _ in range(2)])
        self.conv_blocks = nn.ModuleList()
        adaptive = []
        for i, mult in enumerate(reversed(ch_mult)):
            block_out = ch * mult
            adaptive.append(AdaptiveGroupNorm(z_channels, block_in))
            blocks = [
                ResnetBlock(block_in if j == 0 else block_out, block_out, dropout)
                for j in range(num_res_blocks)
            ]
            level = _Level(blocks)
            if i < len(ch_mult) - 1:
                level.upsample = D2SUpsample(block_out)
            self.conv_blocks.append(level)
            block_in = block_out
        self.adaptive = nn.ModuleList(adaptive)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, Z, h, w) -> (B, 3, 16h, 16w)
        std, mean = style_stats(z)  # the same style tensor feeds every level
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level, ada in zip(self.conv_blocks, self.adaptive, strict=True):
            h = ada(h, std, mean)
            for block in level.res:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))
