"""The vector quantizer: an l2-normalised codebook, nearest-code search and its training losses.

See docs/tokenizer.md#quantizer. Keys: ``codebook_used`` (a FIFO of recent code indices, float32 buffer) and
``embedding.weight`` (K, D), in that order. The search, the distances and the losses run in
float32 whatever the model dtype, so bf16/fp16 models pick the same codes as fp32 ones up to
the rounding of the latent itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

USAGE_WINDOW = 65536
ENTROPY_TEMPERATURE = 0.01


@dataclass
class QuantizerOutput:
    z_q: torch.Tensor  # (B, D, H, W), rotation trick (or straight-through) applied
    codes: torch.Tensor  # (B, H*W) int64, row-major over (H, W)
    vq_loss: torch.Tensor | None = None
    commit_loss: torch.Tensor | None = None
    entropy_loss: torch.Tensor | None = None
    usage: float | None = None


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------
def squared_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """|z|^2 + |e|^2 - 2 z.e for z (M, D) and codebook (K, D) -> (M, K), in float32."""
    z, codebook = z.float(), codebook.float()
    return (z.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)[None, :]) - 2.0 * (z @ codebook.t())


def rotate_to(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Rotation trick: a value equal to ``e`` whose gradient reaches ``z`` through a rotation.

    Fifty et al., "Restructuring Vector Quantization with the Rotation Trick",
    https://arxiv.org/abs/2410.06424. z, e (M, D). Also applied in eval (docs/tokenizer.md#pitfalls).
    """
    z_norm = z.norm(dim=-1, keepdim=True)
    e_norm = e.norm(dim=-1, keepdim=True)
    u = (z / (z_norm + 1e-6)).detach()
    q = (e / (e_norm + 1e-6)).detach()
    w = F.normalize(u + q, dim=-1).detach()
    out = z - 2 * (z * w).sum(-1, keepdim=True) * w + 2 * (z * u).sum(-1, keepdim=True) * q
    return out * (e_norm / (z_norm + 1e-6)).detach()


def entropy_loss(distances: torch.Tensor, temperature: float = ENTROPY_TEMPERATURE) -> torch.Tensor:
    """Per-sample entropy minus the entropy of the batch-mean code distribution (before the ratio).

    distances (M, K) squared distances; logits are -d / temperature.
    """
    logits = -distances.float() / temperature
    probs = F.softmax(logits, dim=-1)
    log_probs = F.log_softmax(logits + 1e-5, dim=-1)
    sample_entropy = (-(probs * log_probs).sum(-1)).mean()
    avg_probs = probs.mean(0)
    avg_entropy = -(avg_probs * torch.log(avg_probs + 1e-5)).sum()
    return sample_entropy - avg_entropy


# ---------------------------------------------------------------------------------------------
# Module
# ---------------------------------------------------------------------------------------------
class VectorQuantizer(nn.Module):
    def __init__(
        self, codebook_size: int, dim: int, beta: float = 0.25, entropy_ratio: float = 0.0, rot: bool = True
    ) -> None:
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.beta, self.entropy_ratio, self.rot = beta, entropy_ratio, rot
        self.register_buffer("codebook_used", torch.zeros(USAGE_WINDOW))
        self.embedding = nn.Embedding(codebook_size, dim)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
            self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))

    def normalized_codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight.float(), dim=-1)  # (K, D) float32

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Normalised codebook rows for ``codes`` (...,) -> (..., D) in float32."""
        return F.embedding(codes, self.normalized_codebook())

    def search(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (M, D) -> (normalised z float32, codes (M,), squared distances (M, K)).

        Runs in float32 even under autocast, so mixed-precision training picks the same codes.
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1)
            d = squared_distances(z, self.normalized_codebook())
        return z, torch.argmin(d, dim=1), d

    @torch.no_grad()
    def _track_usage(self, codes: torch.Tensor) -> float:
        codes = codes[-USAGE_WINDOW:].to(self.codebook_used.dtype)
        n = codes.numel()
        self.codebook_used[:-n] = self.codebook_used[n:].clone()
        self.codebook_used[-n:] = codes
        return torch.unique(self.codebook_used).numel() / self.codebook_size

    def forward(self, h: torch.Tensor) -> QuantizerOutput:
        b, _, height, width = h.shape
        flat = rearrange(h, "b d h w -> (b h w) d")  # (M, D), codes b-major then row-major
        z, codes, d = self.search(flat)
        e = self.lookup(codes)  # (M, D) float32
        out = QuantizerOutput(z_q=h, codes=codes.view(b, height * width))
        if self.training:
            out.vq_loss = torch.mean((e - z.detach()) ** 2)
            out.commit_loss = self.beta * torch.mean((e.detach() - z) ** 2)
            out.entropy_loss = (
                self.entropy_ratio * entropy_loss(d) if self.entropy_ratio > 0 else z.new_zeros(())
            )
            out.usage = self._track_usage(codes)
        z_q = rotate_to(z, e) if self.rot else z + (e - z).detach()
        out.z_q = rearrange(z_q.to(h.dtype), "(b h w) d -> b d h w", b=b, h=height)
        return out
