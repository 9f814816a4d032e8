"""The FID Inception-v3: the TensorFlow 2015-12-05 graph used by every FID number, in PyTorch.

The architecture follows torchvision's ``Inception3`` layout (1008 classes, no aux logits) so the
standard ported weights ``pt_inception-2015-12-05-6726825d.pth`` load unchanged, with the blocks of
the TF graph, which differ from torchvision's in their pooling branches:

- every average-pool branch (Mixed_5b..5d, 6b..6e, 7b) excludes the padding from the average
  (TF ``avg_pool`` with SAME padding), i.e. ``count_include_pad=False``;
- the last block (Mixed_7c, ``mixed_10`` in TF) uses a 3x3 *max* pool in its pool branch.

Inputs are uint8-range pixels; the graph resizes them to 299x299 with TF1's legacy
``ResizeBilinear`` (:func:`tf1_resize_bilinear`) and scales them with ``(x - 128) / 128``.
Outputs (ADM evaluator, https://github.com/openai/guided-diffusion/tree/main/evaluations):

- ``pool``: ``pool_3:0``, 2048 values (FID, precision/recall);
- ``spatial``: ``mixed_6/conv:0[..., :7]`` flattened in NHWC order, 17*17*7 = 2023 values (sFID);
- ``logits``: ``pool @ W`` with the 2048x1008 ``softmax/logits/MatMul`` weight, **no bias** (IS).

Which ported module ``mixed_6/conv`` is: the TF graph names its Inception blocks ``mixed``,
``mixed_1``, ``mixed_2`` (5b, 5c, 5d), ``mixed_3`` (6a), ``mixed_4`` .. ``mixed_7`` (6b .. 6e),
``mixed_8`` (7a), ``mixed_9``/``mixed_10`` (7b/7c), and the bare ``conv`` inside a block is its
1x1 branch, whose tensor is the ReLU output (conv -> batchnorm -> relu). So
``mixed_6/conv`` = ``Mixed_6d.branch1x1`` after its ReLU, (B, 192, 17, 17), first 7 channels.
The block mapping agrees with a public TF-to-PyTorch conversion of this graph's constants, which
maps ``mixed_6/conv/conv2d_params`` and ``mixed_6/conv/batchnorm`` to ``Mixed_6d.branch1x1``, and
with independent PyTorch ports of ADM's evaluator. That the tensor is taken after the ReLU is read
from the graph's naming (the bare scope name is the block's output op). **Not verified numerically**:
``bench/eval_adm.py`` checks sFID against ADM's published 6.1404 on a machine with the ADM files.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
NUM_CLASSES = 1008
SPATIAL_CHANNELS = 7  # ADM keeps mixed_6/conv[..., :7]
FEATURE_DIMS = {"pool": 2048, "spatial": 17 * 17 * SPATIAL_CHANNELS, "logits": NUM_CLASSES}


# ---------------------------------------------------------------------------------------------
# TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False)
# ---------------------------------------------------------------------------------------------
def _tf1_axis(
    in_size: int, out_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (lower, upper) and the float32 lerp weight of TF1's legacy scaler.

    ``src = dst * (in / out)`` in float32 (no half-pixel offset); ``lower = floor(src)``,
    ``upper = min(ceil(src), in - 1)``, ``lerp = src - floor(src)``.
    """
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lower_f = torch.floor(src)
    lower = lower_f.long().clamp(0, in_size - 1)
    upper = torch.ceil(src).long().clamp(max=in_size - 1)
    lerp = src - lower_f
    return lower.to(device), upper.to(device), lerp.to(device)


def tf1_resize_bilinear(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, size, size) as TF1 ``tf.image.resize_bilinear`` computes it.

    Interpolates along x first, then y: ``top = tl + (tr - tl) * dx``, ``bottom = bl + (br - bl) * dx``,
    ``out = top + (bottom - top) * dy`` (the TF kernel's operation order, so float32 results agree).
    """
    _, _, h, w = x.shape
    if (h, w) == (size, size):
        return x
    y0, y1, dy = _tf1_axis(h, size, x.device)
    x0, x1, dx = _tf1_axis(w, size, x.device)
    top, bottom = x[:, :, y0, :], x[:, :, y1, :]  # (B, C, size, W)
    tl, tr, bl, br = top[..., x0], top[..., x1], bottom[..., x0], bottom[..., x1]  # (B, C, size, size)
    dx = dx.to(x.dtype)
    dy = dy.to(x.dtype)[:, None]
    top = tl + (tr - tl) * dx
    bottom = bl + (br - bl) * dx
    return top + (bottom - top) * dy


# ---------------------------------------------------------------------------------------------
# Building blocks (torchvision Inception3 names, FID pooling)
# ---------------------------------------------------------------------------------------------
class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm (eps 1e-3, as in the TF graph) -> ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)  # type: ignore[arg-type]
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF avg_pool with SAME padding averages only the real pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):  # Mixed_5b/5c/5d (TF mixed, mixed_1, mixed_2)
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b5, b3, bp], dim=1)


class InceptionB(nn.Module):  # Mixed_6a (TF mixed_3): grid reduction 35 -> 17
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], dim=1)


class InceptionC(nn.Module):  # Mixed_6b..6e (TF mixed_4..mixed_7): factorised 7x7
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b7, bd, bp], dim=1)


class InceptionD(nn.Module):  # Mixed_7a (TF mixed_8): grid reduction 17 -> 8
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], dim=1)


class InceptionE(nn.Module):  # Mixed_7b (avg pool) / Mixed_7c (max pool) (TF mixed_9 / mixed_10)
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], dim=1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], dim=1)
        if self.max_pool:  # the FID graph's last block max-pools here
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], dim=1)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
class InceptionOutputs(NamedTuple):
    pool: torch.Tensor  # (B, 2048)
    spatial: torch.Tensor  # (B, 2023) = mixed_6/conv[..., :7] flattened NHWC
    logits: torch.Tensor  # (B, 1008), bias-free


class FIDInception(nn.Module):
    """Inception-v3 of the TF 2015-12-05 graph; ``forward`` takes uint8-range (B, 3, H, W) pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, NUM_CLASSES)

    def forward(self, pixels: torch.Tensor) -> InceptionOutputs:
        x = tf1_resize_bilinear(pixels.float(), 299)  # (B, 3, 299, 299)
        x = (x - 128.0) / 128.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (B, 288, 35, 35)
        x = self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))  # (B, 768, 17, 17)
        # mixed_6/conv (unverified mapping, see the module docstring): Mixed_6d's 1x1 branch.
        spatial = self.Mixed_6d.branch1x1(x)[:, :SPATIAL_CHANNELS]  # (B, 7, 17, 17)
        spatial = rearrange(spatial, "b c h w -> b (h w c)")  # NHWC flattening, (B, 2023)
        x = self.Mixed_6e(self.Mixed_6d(x))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # (B, 2048, 8, 8)
        pool = x.mean(dim=(2, 3))  # pool_3, (B, 2048)
        logits = pool @ self.fc.weight.t()  # softmax/logits/MatMul has no bias in ADM's IS
        return InceptionOutputs(pool=pool, spatial=spatial, logits=logits)


# ---------------------------------------------------------------------------------------------
# Loading the standard weights
# ---------------------------------------------------------------------------------------------
def load_fid_inception(weights: str | Path | None = None, device: torch.device | str = "cpu") -> FIDInception:
    """The FID Inception with ``pt_inception-2015-12-05-6726825d.pth`` (from the cache unless given).

    Loaded with ``weights_only=True`` and strictly; a file without the ``num_batches_tracked``
    buffers (older PyTorch exports) gets them filled in, since evaluation never reads them.
    """
    from gigatok_core.checkpoints.files import extract_state_dict, load_strict, read_checkpoint

    if weights is None:
        from gigatok_core.hub import fetch_weights

        weights = fetch_weights(WEIGHTS_NAME, or_option="--inception-weights FILE")
    model = FIDInception()
    sd, _ = extract_state_dict(read_checkpoint(weights), source=str(weights))
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = torch.zeros_like(value)
    load_strict(model, sd, source=str(weights), expected="the FID Inception-v3 (pt_inception-2015-12-05)")
    return model.to(device).eval().requires_grad_(False)
