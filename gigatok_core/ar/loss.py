"""The GPT's token loss (docs/recipes.md#gpt): cross-entropy over all positions of the class-conditional model.

Input = [class, tokens[0:N-1]], targets = tokens[0:N]: the class slot predicts token 0 and token
j-1 predicts token j. Class dropout (the null class for CFG) lives in the model's class embedding
in train mode, not here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_losses(model: torch.nn.Module, labels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (B, N): input = [class, codes[:, :-1]], targets = codes."""
    logits = model(labels, codes[:, :-1])  # (B, N, V); row j predicts token j
    return F.cross_entropy(logits.float().transpose(1, 2), codes, reduction="none")  # (B, N)


def token_loss(model: torch.nn.Module, labels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every token of the batch (the official training loss), a scalar."""
    return token_losses(model, labels, codes).mean()
