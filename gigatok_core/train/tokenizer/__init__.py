"""Tokenizer training with the official GigaTok recipe (docs/tokenizer.md#quantizer, #semantic-regularization, docs/recipes.md#tokenizer, docs/fidelity.md#tokenizer-training).

- :mod:`.loss`: the VQ loss, generator and discriminator sides (``VQLoss``, ``LossSettings``);
- :mod:`.patchgan`, :mod:`.dinodisc` (+ :mod:`.diffaug`): the two discriminators;
- :mod:`.frozen`: the DINOv2 teacher and the DINO ViT-S/16 backbone, built with timm and loaded
  strictly from plain weight files;
- :mod:`.schedule`: ``cosine_v2`` and the official LR timing; :mod:`.optim`: AdamW groups, EMA;
- :mod:`.trainer`: one official training step (``TokenizerTrainer``).
"""

from gigatok_core.train.tokenizer.loss import LossSettings, VQLoss
from gigatok_core.train.tokenizer.patchgan import PatchGAN
from gigatok_core.train.tokenizer.schedule import OfficialLR, cosine_v2
from gigatok_core.train.tokenizer.trainer import OptimSettings, TokenizerTrainer

__all__ = [
    "LossSettings",
    "OfficialLR",
    "OptimSettings",
    "PatchGAN",
    "TokenizerTrainer",
    "VQLoss",
    "cosine_v2",
]
