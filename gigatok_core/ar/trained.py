"""What a gigatok-trained GPT carries with it: its preset, its tokenizer, its class names.

Every GPT checkpoint gigatok writes records ``meta["preset"]``, ``meta["tokenizer"]`` (the
tokenizer its codes were extracted with: a preset and/or a checkpoint with its sha256, its absolute
path and its path relative to the run folder) and ``meta["classes"]`` (the class folder names its
labels stand for). :func:`resolve_pairing` turns a request (``--gpt``, ``--tokenizer``,
``--gpt-checkpoint``, ``--tokenizer-checkpoint``, any of them left out) into the exact weights that
will generate and decode, so ``--gpt-checkpoint RUN_DIR`` alone is enough, from any folder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_GPT = "gpt-b"
log = logging.getLogger("gigatok")
_WNID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class Pairing:
    """The weights a sampling request resolves to (see :func:`resolve_pairing`)."""

    gpt: str  # GPT preset
    tokenizer: str  # tokenizer preset
    release: Any  # the GPTRelease of released weights, else None
    gpt_checkpoint: Path | None  # the GPT weights file (a run folder resolved to its newest weights)
    tokenizer_checkpoint: Path | None  # the tokenizer weights file; None: the preset's own weights
    tokenizer_weights: str  # in words: which tokenizer weights decode, and why
    class_names: tuple[str, ...] | None  # the run's own classes; None: ImageNet's


def own_class_names(classes: Sequence[str] | None) -> tuple[str, ...] | None:
    """A run's class names, or None when they are ImageNet's 1000 (wnid folders or plain indices),
    whose readable names the samples then use."""
    if not classes:
        return None
    names = tuple(str(c) for c in classes)
    if len(names) == 1000 and (
        all(_WNID.fullmatch(n) for n in names) or names == tuple(str(i) for i in range(1000))
    ):
        return None
    return names


def _recorded_tokenizer(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    rec = meta.get("tokenizer") if meta else None
    return rec if isinstance(rec, dict) else None


def recorded_tokenizer_file(checkpoint: str | Path, rec: Mapping[str, Any]) -> Path:
    """The tokenizer checkpoint a GPT run recorded, found from anywhere and checked by its hash."""
    from gigatok_core.weights import find_recorded, record_fields, run_folder_of

    path, relative, sha = record_fields(rec)
    return find_recorded(
        path,
        relative,
        sha,
        base=run_folder_of(checkpoint),
        what=f"the tokenizer checkpoint {checkpoint} was trained on codes of",
        hint="pass that tokenizer's weights with --tokenizer-checkpoint FILE|RUN_DIR",
    )


def paired_tokenizer_checkpoint(checkpoint: str | Path, tokenizer: str | None) -> Path | None:
    """The tokenizer checkpoint a gigatok GPT checkpoint recorded, when ``tokenizer`` (an explicit
    preset, or None) is its preset; None for a preset's released weights, an official file, or
    another preset asked for (said loudly: those weights were not what the GPT learned from)."""
    from gigatok_core.config.source import describe_checkpoint

    rec = _recorded_tokenizer(describe_checkpoint(checkpoint, kind="gpt"))
    if rec is None or not rec.get("checkpoint"):
        return None
    if tokenizer is not None and rec.get("preset") not in (None, tokenizer):
        log.warning(
            "%s was trained on codes of tokenizer checkpoint %s (preset %s); decoding with the %s "
            "preset's own weights instead, as --tokenizer asks",
            checkpoint, rec["checkpoint"], rec.get("preset"), tokenizer,
        )  # fmt: skip
        return None
    return recorded_tokenizer_file(checkpoint, rec)


def resolve_pairing(
    gpt: str | None,
    tokenizer: str | None = None,
    gpt_checkpoint: str | Path | None = None,
    tokenizer_checkpoint: str | Path | None = None,
) -> Pairing:
    """The weights that generate and decode for a request; nothing is loaded.

    - ``gpt`` left out: the preset a gigatok ``gpt_checkpoint`` records, else ``gpt-b``;
    - ``tokenizer`` left out: the GPT's (the run's record, else the paper pairing);
    - ``tokenizer_checkpoint`` left out: the checkpoint the run recorded (found by absolute path,
      else relative to the run folder, and checked by sha256) when it is of the tokenizer preset
      used, else the preset's released (``tiny``: seeded random) weights, said loudly when a trained
      GPT decodes through random or other weights than it learned from.
    Every weights option goes through :func:`gigatok_core.weights.resolve_weights`.
    """
    from gigatok_core.ar.load import resolve_gpt, split_gpt_name
    from gigatok_core.config.source import describe_checkpoint, weights_file
    from gigatok_core.registry import tokenizer_preset
    from gigatok_core.weights import local_weights, resolve_weights

    if gpt_checkpoint is not None:
        gpt_checkpoint = local_weights(gpt_checkpoint, "GPT checkpoint")  # a hub id: its local copy
    meta = None
    if gpt_checkpoint is not None:
        meta = describe_checkpoint(gpt_checkpoint, kind="gpt", what="GPT checkpoint")
    if gpt is None:
        saved = (meta or {}).get("preset")
        gpt = saved if isinstance(saved, str) else DEFAULT_GPT
    gpt, tokenizer = split_gpt_name(gpt, tokenizer)
    _, tok_name, release = resolve_gpt(gpt, tokenizer, gpt_checkpoint)
    gpt_file = weights_file(gpt_checkpoint, "GPT checkpoint", kind="gpt") if gpt_checkpoint else None
    rec = _recorded_tokenizer(meta)
    if tokenizer_checkpoint is not None:
        tok_file: Path | None = resolve_weights(
            tokenizer_checkpoint, "tokenizer checkpoint", kind="tokenizer"
        )
        words = f"{tok_file} (--tokenizer-checkpoint)"
    elif gpt_checkpoint is not None and rec is not None and rec.get("checkpoint"):
        tok_file = paired_tokenizer_checkpoint(gpt_checkpoint, tokenizer)
        words = (
            f"{tok_file} (recorded by the GPT run)"
            if tok_file
            else f"the {tok_name} preset's released weights (not the run's recorded checkpoint)"
        )
    else:
        tok_file = None
        words = f"the {tok_name} preset's released weights"
    if tok_file is None and tokenizer_preset(tok_name).weights is None:
        words = f"the {tok_name} preset's seeded RANDOM weights"
        # codes extracted with those same random weights decode right; anything else is said loudly
        same = rec is not None and rec.get("preset") == tok_name and not rec.get("checkpoint")
        if gpt_checkpoint is not None and not same and not (rec or {}).get("checkpoint"):
            log.warning(
                "decoding with %s, not the tokenizer the GPT's codes came from: the images show "
                "nothing the GPT learned; pass --tokenizer-checkpoint FILE|RUN_DIR",
                words,
            )
    names = own_class_names((meta or {}).get("classes"))
    return Pairing(gpt, tok_name, release, gpt_file, tok_file, words, names)
