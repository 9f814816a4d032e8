"""Weights files recorded by one command and found again by another, from anywhere.

A codes manifest records the tokenizer checkpoint its codes came from; a GPT run records it again
(and the GPT weights a results file names). A path alone breaks twice: relative to the working
directory it fails from another folder, and absolute it fails once the tree is moved. So a record
holds the absolute path, the path relative to the folder holding the record (``relative``), and
the file's sha256; :func:`find_recorded` tries both paths and takes the one whose bytes match the
hash. The hash is the identity, the paths are hints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gigatok_core.errors import GigatokError


def relative_to(path: str | Path, base: str | Path) -> str:
    """``path`` relative to the folder ``base`` (``..`` allowed), both made absolute first."""
    return os.path.relpath(Path(path).resolve(), Path(base).resolve())


def file_record(
    path: str | Path, base: str | Path | None = None, sha256: str | None = None
) -> dict[str, Any]:
    """``{"path": absolute, "relative": from base, "sha256": ...}`` of a weights file (hashed now
    unless ``sha256`` is given)."""
    from gigatok_core.fileio import sha256_file

    path = Path(path).resolve()
    return {
        "path": str(path),
        "relative": relative_to(path, base) if base is not None else None,
        "sha256": sha256 or sha256_file(path),
    }


def find_recorded(
    path: str | None,
    relative: str | None,
    sha256: str | None,
    *,
    base: str | Path | None,
    what: str,
    hint: str,
) -> Path:
    """The recorded file: the absolute ``path``, else ``base / relative``, whichever holds the bytes
    of ``sha256`` (without a hash: the first that exists). ``what`` names the file in the error."""
    from gigatok_core.fileio import sha256_file

    tried: list[str] = []
    candidates = [Path(path)] if path else []
    if relative and base is not None:
        candidates.append(Path(base) / relative)
    changed = []
    for cand in dict.fromkeys(candidates):
        tried.append(str(cand))
        if not cand.is_file():
            continue
        if sha256 is None or sha256_file(cand) == sha256:
            return cand
        changed.append(str(cand))
    if changed:
        raise GigatokError(
            f"{what} {changed[0]} changed since it was recorded (its sha256 is not {sha256[:12]}...)",
            hint=hint,
        )
    raise GigatokError(f"{what} was not found (tried {' and '.join(tried) or 'no path'})", hint=hint)


def run_folder_of(path: str | Path) -> Path:
    """The run folder a weights path belongs to: the ancestor holding ``checkpoints/`` (a run folder,
    a step folder, a weights file in one), else the folder of a file, else the path itself."""
    path = Path(path).resolve()
    for folder in [path, *path.parents][:4]:
        if (folder / "checkpoints").is_dir():
            return folder
    return path if path.is_dir() else path.parent


def record_fields(rec: Mapping[str, Any] | None) -> tuple[str | None, str | None, str | None]:
    """(path, relative, sha256) of a tokenizer record (``checkpoint``/``checkpoint_relative``) or a
    file record (``path``/``relative``)."""
    if not rec:
        return None, None, None
    path = rec.get("checkpoint", rec.get("path"))
    relative = rec.get("checkpoint_relative", rec.get("relative"))
    return path, relative, rec.get("sha256")


def released_record(rec: Any) -> dict[str, Any]:
    """A registry weights record as results name it: the file and its registered sha256 (the
    hub verifies it when it fetches the file)."""
    return {"path": None, "file": rec.file, "sha256": rec.sha256}


def tokenizer_identity(tokenizer: str, checkpoint: str | Path | None) -> dict[str, Any]:
    """The exact tokenizer weights a result came from: a checkpoint's path and sha256, a preset's
    released file, or seeded random weights (``tiny``)."""
    from gigatok_core.registry import tokenizer_names, tokenizer_preset

    if checkpoint is not None:
        return file_record(checkpoint)
    if tokenizer not in tokenizer_names():  # a checkpoint given in place of the preset
        from gigatok_core.weights import resolve_weights

        return file_record(resolve_weights(tokenizer, "--tokenizer", kind="tokenizer"))
    rec = tokenizer_preset(tokenizer).weights_record
    if rec is not None:
        return released_record(rec)
    return {"path": None, "sha256": None, "random": f"seeded ({tokenizer})"}
