"""PatchGAN discriminator (taming-transformers ``NLayerDiscriminator``; docs/recipes.md#discriminators).

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
https://arxiv.org/abs/1611.07004. Keys ``main.{0,2,3,5,6,8,9,11}.*`` as in the official
discriminator state_dict (22 keys with ndf 64 and 3 layers).

    (B,3,256,256) -> conv s2 -> conv s2 + BN -> conv s2 + BN -> conv s1 + BN -> conv s1 -> (B,1,30,30)
"""

from __future__ import annotations

import torch
from torch import nn


class PatchGAN(nn.Module):
    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, kernel: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):  # the last of these keeps stride 1
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, kernel, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Official init: conv weights N(0, 0.02), BN weights N(1, 0.02), BN biases 0; the conv
        biases keep torch's default (docs/recipes.md#details-pinned-by-the-training-fixture)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, 1, h, w) logits
