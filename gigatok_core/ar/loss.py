"""The GPT's token loss (docs/recipes.md#gpt): cross-entropy over all positions of the class-conditional model.

Input = [class, tokens[0:N-1]], targets = tokens[0:N]: the class slot predicts token 0 and token
j-1 predicts token j. Class dropout (the null class for CFG) lives in the model's class embedding
in train mode, not here.

The logits are flattened to (B·N, V) with the vocabulary last, as the official ``gpt_1d.py``
``Transformer.forward`` does: cross-entropy over a (B, V, N) view (vocabulary in the middle) reads
memory with a stride of N and costs about 2.5x as much, forward and backward, on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _logits_and_targets(
    model: torch.nn.Module, labels: torch.Tensor, codes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(labels, codes[:, :-1])  # (B, N, V); row j predicts token j
    return logits.float().flatten(0, 1), codes.flatten()  # (B·N, V) float32 (no copy if it is), (B·N,)


def token_losses(model: torch.nn.Module, labels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (B, N): input = [class, codes[:, :-1]], targets = codes."""
    logits, targets = _logits_and_targets(model, labels, codes)
    return F.cross_entropy(logits, targets, reduction="none").view(codes.shape)


def token_loss(model: torch.nn.Module, labels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every token of the batch (the official training loss), a scalar."""
    logits, targets = _logits_and_targets(model, labels, codes)
    return F.cross_entropy(logits, targets)  # the mean over B·N tokens, as the official loss
