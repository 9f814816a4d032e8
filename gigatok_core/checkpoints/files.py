"""Reading official checkpoint files safely and loading them strictly.

Official files are dicts holding ``ema`` / ``model`` / ``state_dict`` (weights), often a pickled
``argparse.Namespace`` under ``args``, and training-only entries (optimizer, discriminator, steps).
We read them with ``torch.load(weights_only=True)``, allow-listing only ``argparse.Namespace``, and
load strictly: every key must match, and the keys we deliberately drop are named.
Files we write ourselves are safetensors (weights) plus a JSON-able header. Training checkpoint
folders (one per step, with a ``latest`` pointer) live in :mod:`gigatok_core.checkpoints.training`.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gigatok_core.errors import GigatokError

PREFIXES = ("module.", "_orig_mod.")
# Which entry holds the weights, in the official loaders' order: tokenizers prefer the EMA
# (docs/tokenizer.md#checkpoints), the GPT loaders ignore it (docs/ar.md#checkpoints).
TOKENIZER_ENTRIES = ("ema", "model", "state_dict")
GPT_ENTRIES = ("model", "module", "state_dict")


log = logging.getLogger("gigatok")


def error_reason(err: BaseException, limit: int = 200) -> str:
    """The first sentence of an exception's message, on one line (never cut mid-word; never empty)."""
    text = " ".join(str(err).split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".") if text else ""
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + " ..."
    return first or type(err).__name__


def check_checkpoint_file(path: str | Path, what: str = "checkpoint") -> Path:
    """``path`` as a Path when it is a non-empty file; else a :class:`GigatokError` that says why.

    A folder is named as a folder (not "does not exist"); a 0-byte file, what an interrupted
    manual download leaves, is named as empty.
    """
    path = Path(path)
    if path.is_dir():
        raise GigatokError(
            f"{what} {path} is a folder, not a file",
            hint="pass the weights file itself (where a tokenizer or GPT checkpoint is expected, a "
            "training run folder is accepted too, and it must contain checkpoints/)",
        )
    if not path.is_file():
        raise GigatokError(
            f"{what} {path} does not exist", hint="check the path, or omit it to use the preset's weights"
        )
    if path.stat().st_size == 0:
        raise GigatokError(
            f"{what} {path} is empty (0 bytes)",
            hint="an interrupted download leaves an empty file: delete it and download it again",
        )
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file without executing code from it.

    ``.safetensors`` files give ``{"model": tensors}``; anything else goes through
    ``torch.load(weights_only=True)`` with ``argparse.Namespace`` allowed (official files pickle one).
    """
    path = check_checkpoint_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return {"model": load_file(str(path))}
        except (SafetensorError, OSError) as err:
            raise GigatokError(
                f"{path} is not a readable safetensors file ({error_reason(err)})",
                hint="the file may be truncated: delete it and download it again",
            ) from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):  # legacy (non-zip) format cannot be memory-mapped
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:  # not a pickle at all (an image, a text file ...)
            raise GigatokError(
                f"{path} is not a PyTorch checkpoint",
                hint="expected a .pt/.pth file holding 'ema', 'model' or 'state_dict' weights, or .safetensors",
            ) from None
        raise GigatokError(
            f"{path} contains objects that are not plain weights ({found.group(1)}), so it was not loaded",
            hint="only official GigaTok checkpoints and files written by gigatok are accepted; never load untrusted pickles",
        ) from None
    except Exception as err:  # garbage bytes fail in many ways (KeyError, struct.error ...)
        raise GigatokError(
            f"{path} is not a readable PyTorch checkpoint ({error_reason(err)})",
            hint="the file may be truncated or corrupted: delete it and download it again",
        ) from None
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": dict(obj)}  # a bare state_dict
    if not isinstance(obj, Mapping):
        raise GigatokError(
            f"{path} holds a {type(obj).__name__}, not a checkpoint dict",
            hint="expected a dict with 'ema', 'model' or 'state_dict'",
        )
    return dict(obj)


def extract_state_dict(
    ckpt: Mapping[str, Any],
    prefer: Iterable[str] = ("ema", "model", "state_dict"),
    source: str = "checkpoint",
) -> tuple[dict[str, torch.Tensor], str]:
    """Pick the weights entry (first of ``prefer`` present) and strip ``module.``/``_orig_mod.``.

    Returns (state_dict, the entry name used).
    """
    prefer = tuple(prefer)
    for key in prefer:
        sd = ckpt.get(key)
        if isinstance(sd, Mapping) and sd:
            return strip_prefixes(sd), key
    raise GigatokError(
        f"{source} has none of the entries {', '.join(map(repr, prefer))} (it has: {', '.join(map(str, ckpt)) or 'nothing'})",
        hint="pass an official GigaTok checkpoint or a file written by gigatok",
    )


def strip_prefixes(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Remove DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes from every key."""
    out = {}
    for key, value in sd.items():
        changed = True
        while changed:
            changed = False
            for p in PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p) :], True
        out[key] = value
    return out


def check_shapes(
    found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]], *, source: str, what: str
) -> None:
    """Raise a :class:`GigatokError` unless ``found`` has exactly ``expected``'s keys and shapes."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [
        f"{k}: file {tuple(found[k])} vs expected {tuple(expected[k])}"
        for k in expected
        if k in found and tuple(found[k]) != tuple(expected[k])
    ]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} shape mismatches (first: {wrong[0]})")
    if missing:
        parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    raise GigatokError(
        f"{source} does not fit {what}: " + "; ".join(parts),
        hint="check that the checkpoint belongs to this preset (see `gigatok cache list`)",
    )


def load_strict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    expected: str,
    drop: Mapping[str, str] | None = None,
) -> list[str]:
    """Load ``state_dict`` into ``model``; every key must match in name and shape.

    ``drop`` maps key prefixes the model deliberately does not have to the reason (for example
    ``{"s1to2decoder.distill_mlp.": "training-only head"}``); those keys are removed and returned.
    Anything else missing, unexpected or mis-shaped raises a :class:`GigatokError` naming ``source``
    and ``expected``.
    """
    drop = dict(drop or {})
    sd = dict(state_dict)
    dropped = [k for k in sd if any(k.startswith(p) for p in drop)]
    for k in dropped:
        del sd[k]
    own = model.state_dict()
    check_shapes(
        {k: tuple(v.shape) for k, v in sd.items()},
        {k: tuple(v.shape) for k, v in own.items()},
        source=source,
        what=expected,
    )
    model.load_state_dict(sd, strict=True)
    for prefix, reason in drop.items():
        keys = [k for k in dropped if k.startswith(prefix)]
        if keys:
            log.info("%s: left out %d keys under %s* (%s)", source, len(keys), prefix, reason)
    return dropped


# ---------------------------------------------------------------------------------------------
# Self-describing weight files: safetensors whose metadata carries the config.
#   metadata = {"gigatok": json.dumps(meta)}, meta = {"format": 1, "kind": "tokenizer" | "gpt" | ...,
#   "preset": name or None, "config": architecture dict, "gigatok_version": ..., ...}
# ---------------------------------------------------------------------------------------------
META_KEY = "gigatok"
META_FORMAT = 1


def save_weights(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Write ``tensors`` to a safetensors file atomically, with ``meta`` (JSON) in its header.

    Tensors are written as they are (no copy of the whole model: a 2.9B-parameter checkpoint
    stays affordable); only a tensor sharing storage with an earlier one is cloned, since
    safetensors refuses shared storage.
    """
    import json

    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from gigatok_core import __version__
    from gigatok_core.utils.fileio import atomic_path

    header = {"format": META_FORMAT, "gigatok_version": __version__, **dict(meta)}
    plain: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        value = value.detach().to("cpu").contiguous()
        ptr = value.untyped_storage().data_ptr() if value.numel() else None
        if ptr is not None and ptr in seen:
            value = value.clone()
        elif ptr is not None:
            seen.add(ptr)
        plain[key] = value
    try:
        with atomic_path(path) as tmp:
            save_file(plain, str(tmp), metadata={META_KEY: json.dumps(header, sort_keys=True)})
    except SafetensorError as err:  # the writer's I/O errors (a full disk) are not OSErrors
        raise _write_error(err, path) from None


def _write_error(err: Exception, path: str | Path) -> OSError:
    """An OSError (errno, path) for a safetensors write failure such as
    ``IoError(Os { code: 28, kind: StorageFull, ... })``: callers report it as any disk error."""
    import errno
    import os
    import re

    found = re.search(r"code: (\d+)", str(err))
    code = int(found.group(1)) if found else errno.EIO
    return OSError(code, os.strerror(code) if found else f"could not write ({str(err)[:200]})", str(path))


def read_weights_meta(path: str | Path) -> dict[str, Any] | None:
    """The gigatok metadata of a safetensors file, or None when it has none (a foreign file)."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as err:
        raise GigatokError(
            f"{path} is not a readable safetensors file ({error_reason(err)})",
            hint="the file may be truncated: delete it and write or download it again",
        ) from None
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise GigatokError(f"{path} has unreadable gigatok metadata", hint="re-export the file") from None
    return meta if isinstance(meta, dict) else None
