"""Weights: every way a command names a weights file, made a verified local file.

- **Registered weights** (a preset's released file): the hub (:mod:`gigatok_core.hub`) is storage
  and knows nothing of models; it takes the check of a tokenizer or GPT checkpoint as its
  ``shapes=`` hook. This module, above the model classes and the hub, maps a registry name to the
  keys and shapes its preset builds (on the meta device: no memory, no init) and passes that in::

      from gigatok_core.weights import fetch_weights
      path = fetch_weights("VQ_SS256_e100.pt")   # verified, structure-checked, safetensors

  It imports the model *classes* (not their loaders), so ``tokenizer/load.py`` and ``ar/load.py``
  can import it without a circle.
- **Weights options** (``--checkpoint``, ``--gpt-checkpoint``, ``--init``...): one resolver,
  :func:`resolve_weights`, takes a file, a run, step or export folder, or an ``hf://`` id.
- **Recorded weights**: a codes manifest records the tokenizer checkpoint its codes came from; a
  GPT run records it again (and the GPT weights a results file names). A path alone breaks twice:
  relative to the working directory it fails from another folder, and absolute it fails once the
  tree is moved. So a record holds the absolute path, the path relative to the folder holding the
  record (``relative``), and the file's sha256; :func:`find_recorded` tries both paths and takes
  the one whose bytes match the hash. The hash is the identity, the paths are hints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gigatok_core import hub, registry
from gigatok_core.config import GPTConfig, TokenizerConfig
from gigatok_core.errors import GigatokError
from gigatok_core.registry import WeightsRecord

Shapes = Mapping[str, tuple[int, ...]]


# ---------------------------------------------------------------------------------------------
# Expected shapes (models built on the meta device)
# ---------------------------------------------------------------------------------------------
def tokenizer_shapes(cfg: TokenizerConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official-layout tokenizer for ``cfg``, distillation head included
    (official checkpoints carry it; the loaders drop it, docs/tokenizer.md#checkpoints)."""
    import torch

    from gigatok_core.tokenizer.model import VQTokenizer

    with torch.device("meta"):
        model = VQTokenizer(cfg, with_distill=True)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def gpt_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official-layout GPT for ``cfg`` (docs/ar.md#checkpoints)."""
    import torch

    from gigatok_core.ar.gpt import GPT

    with torch.device("meta"):
        model = GPT(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def expected_shapes(rec: WeightsRecord) -> Shapes | None:
    """What the preset owning ``rec`` expects, or None (an aux file or an unregistered one)."""
    owner = registry.owner_of(rec.file)
    if owner is None or rec.kind == "aux":
        return None
    kind, name = owner
    if kind == "tokenizer":
        return tokenizer_shapes(registry.tokenizer_preset(name).config)
    return gpt_shapes(registry.gpt_preset(registry.gpt_release(name).gpt).config)


# ---------------------------------------------------------------------------------------------
# The hub with the check passed in
# ---------------------------------------------------------------------------------------------
def fetch_weights(name: str, *, progress: bool = True, or_option: str | None = None) -> Path:
    """:func:`gigatok_core.hub.fetch_weights` with the structural check of ``name``'s preset."""
    return hub.fetch_weights(name, progress=progress, shapes=expected_shapes, or_option=or_option)


def import_weights(path: str | Path, preset: str) -> Path:
    """:func:`gigatok_core.hub.import_weights` with the structural check of ``preset``."""
    return hub.import_weights(path, preset, shapes=expected_shapes)


# ---------------------------------------------------------------------------------------------
# The one resolver of weights options
# ---------------------------------------------------------------------------------------------
def local_weights(ref: str | Path, what: str = "checkpoint") -> Path:
    """A weights reference made local: a path as given; a Hugging Face Hub id
    (``hf://OWNER/REPO[@REV]``, also as a Path mangles it, ``hf:/OWNER/REPO``) downloaded and
    verified by :func:`gigatok_core.hub.resolve_hub_ref` into the cache, its local file or folder.

    The hub branch is the only one that needs the network; everything after it reads local files.
    """
    from gigatok_core.config.source import is_hub_ref

    if not is_hub_ref(ref):
        return Path(ref)
    text = "hf://" + str(ref).split(":/", 1)[1].lstrip("/")
    return Path(hub.resolve_hub_ref(text))


def resolve_weights(ref: str | Path, what: str = "checkpoint", *, kind: str | None = None) -> Path:
    """The weights file behind any weights option (``--checkpoint``, ``--tokenizer-checkpoint``,
    ``--gpt-checkpoint``, ``--init``), so each takes the same things: a file; a folder (its newest
    exported ``*.safetensors`` of ``kind``, else the EMA, else model, weights of its newest training
    checkpoint: a run, ``checkpoints/`` or step folder); a hub id (:func:`local_weights`, then as
    a path). See :func:`gigatok_core.config.source.weights_file` for the local half."""
    from gigatok_core.config.source import weights_file

    return weights_file(local_weights(ref, what), what, kind=kind)


# ---------------------------------------------------------------------------------------------
# Weights recorded by one command and found again by another
# ---------------------------------------------------------------------------------------------
def relative_to(path: str | Path, base: str | Path) -> str:
    """``path`` relative to the folder ``base`` (``..`` allowed), both made absolute first."""
    return os.path.relpath(Path(path).resolve(), Path(base).resolve())


def file_record(
    path: str | Path, base: str | Path | None = None, sha256: str | None = None
) -> dict[str, Any]:
    """``{"path": absolute, "relative": from base, "sha256": ...}`` of a weights file (hashed now
    unless ``sha256`` is given)."""
    from gigatok_core.utils.fileio import sha256_file

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
    from gigatok_core.utils.fileio import sha256_file

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
