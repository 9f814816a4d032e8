"""GPTs trained by gigatok: a run folder, one of its checkpoint folders, or an exported file.

They describe themselves (``meta["config"]``, ``meta["tokenizer"]``: the tokenizer the codes were
extracted with, a preset and/or a checkpoint path with its sha256), so ``--gpt-checkpoint RUN_DIR``
needs no ``--gpt``/``--tokenizer`` flags. Run folders give their EMA weights when the run kept them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gigatok_core.config import GPTConfig
from gigatok_core.errors import GigatokError


@dataclass(frozen=True)
class TrainedGPT:
    path: Path
    config: GPTConfig
    preset: str | None
    tokenizer: dict[str, Any]  # {"preset", "checkpoint", "sha256", "codebook_size", "num_tokens"}


def trained_gpt(checkpoint: str | Path) -> TrainedGPT | None:
    """The description of a gigatok-trained GPT at ``checkpoint``; None for other files (official .pt)."""
    from gigatok_core.checkpoint import latest_checkpoint, read_weights_meta

    path = Path(checkpoint)
    if path.is_dir():
        folder = latest_checkpoint(path, quiet=True)
        if folder is None:
            raise GigatokError(
                f"{path} is a folder without training checkpoints",
                hint="pass a run folder written by `gigatok train gpt`, or a checkpoint file",
            )
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    elif path.suffix == ".safetensors" and path.is_file():
        meta = read_weights_meta(path)
    else:
        return None
    if not meta or meta.get("kind") != "gpt" or not meta.get("tokenizer"):
        if meta and meta.get("kind") not in (None, "gpt"):
            raise GigatokError(f"{path} holds a {meta['kind']} checkpoint, not a GPT", hint="pass a GPT run")
        return None
    return TrainedGPT(path, GPTConfig.from_checkpoint(path), meta.get("preset"), dict(meta["tokenizer"]))


def state_dict(trained: TrainedGPT) -> dict[str, torch.Tensor]:
    """The weights to sample with: a run's EMA when kept (else its model), or the exported file's."""
    if trained.path.is_dir():
        from gigatok_core.train.export import run_weights

        return run_weights(trained.path)[0]
    from safetensors.torch import load_file

    return load_file(str(trained.path))


def paired_tokenizer(trained: TrainedGPT, tokenizer: str | None) -> tuple[str, Path | None]:
    """(tokenizer preset, tokenizer checkpoint or None) the GPT was trained with.

    An explicit ``tokenizer`` preset wins. A local tokenizer checkpoint is found by its recorded
    path and checked against its recorded sha256.
    """
    from gigatok_core.fileio import sha256_file

    rec = trained.tokenizer
    name = tokenizer or rec.get("preset")
    ckpt = Path(rec["checkpoint"]) if rec.get("checkpoint") else None
    if ckpt is not None and tokenizer is None:
        if not ckpt.exists():
            raise GigatokError(
                f"{trained.path} was trained on codes of the tokenizer checkpoint {ckpt}, which no longer exists",
                hint="pass --tokenizer PRESET --tokenizer-checkpoint FILE",
            )
        if ckpt.is_file() and rec.get("sha256") and sha256_file(ckpt) != rec["sha256"]:
            raise GigatokError(
                f"the tokenizer checkpoint {ckpt} changed since {trained.path}'s codes were extracted (sha256 differs)",
                hint="pass the original file with --tokenizer-checkpoint",
            )
    if name is None:
        raise GigatokError(
            f"{trained.path} does not name its tokenizer preset", hint="pass --tokenizer PRESET"
        )
    return name, (ckpt if tokenizer is None else None)


def paired_tokenizer_checkpoint(checkpoint: str | Path, tokenizer: str | None) -> Path | None:
    """The local tokenizer checkpoint a gigatok-trained GPT was paired with (None: a preset's weights)."""
    trained = trained_gpt(checkpoint)
    return None if trained is None else paired_tokenizer(trained, tokenizer)[1]
