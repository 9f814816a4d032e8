"""The local tokenizer a gigatok-trained GPT was paired with (a run folder, checkpoint or export).

Every GPT checkpoint gigatok writes records ``meta["tokenizer"]``: the tokenizer its codes were
extracted with, a preset and/or a checkpoint path with its sha256. The preset is picked up by
:func:`gigatok_core.ar.load.resolve_gpt`; a local tokenizer checkpoint is found here, by its recorded
path and checked against its recorded hash, so ``--gpt-checkpoint RUN_DIR`` needs no
``--tokenizer-checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

from gigatok_core.errors import GigatokError


def paired_tokenizer_checkpoint(checkpoint: str | Path, tokenizer: str | None) -> Path | None:
    """The tokenizer checkpoint recorded by a gigatok GPT checkpoint; None for a preset's released
    weights, an official file, or when ``tokenizer`` (an explicit preset) was given."""
    from gigatok_core.config.source import describe_checkpoint
    from gigatok_core.fileio import sha256_file

    meta = describe_checkpoint(checkpoint, kind="gpt")
    rec = meta.get("tokenizer") if meta else None
    if tokenizer is not None or not isinstance(rec, dict) or not rec.get("checkpoint"):
        return None
    path = Path(rec["checkpoint"])
    if not path.exists():
        raise GigatokError(
            f"{checkpoint} was trained on codes of the tokenizer checkpoint {path}, which no longer exists",
            hint="pass --tokenizer PRESET --tokenizer-checkpoint FILE",
        )
    if path.is_file() and rec.get("sha256") and sha256_file(path) != rec["sha256"]:
        raise GigatokError(
            f"the tokenizer checkpoint {path} changed since {checkpoint}'s codes were extracted (sha256 differs)",
            hint="pass the original file with --tokenizer-checkpoint",
        )
    return path
