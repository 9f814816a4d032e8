"""Reading official checkpoint files safely and loading them strictly.

Official files are dicts holding ``ema`` / ``model`` / ``state_dict`` (weights), often a pickled
``argparse.Namespace`` under ``args``, and training-only entries (optimizer, discriminator, steps).
We read them with ``torch.load(weights_only=True)``, allow-listing only ``argparse.Namespace``, and
load strictly: every key must match, and the keys we deliberately drop are named.
Files we write ourselves are safetensors (weights) plus a JSON-able header.
"""

from __future__ import annotations

import argparse
import errno
import logging
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from gigatok_core.errors import GigatokError

PREFIXES = ("module.", "_orig_mod.")
# Which entry holds the weights, in the official loaders' order: tokenizers prefer the EMA
# (spec tokenizer §6), the GPT loaders ignore it (spec ar §3).
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
        hint="check that the checkpoint belongs to this preset (see `gigatok download --list`)",
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

    from safetensors.torch import save_file

    from gigatok_core import __version__
    from gigatok_core.fileio import atomic_path

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
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata={META_KEY: json.dumps(header, sort_keys=True)})


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


# ---------------------------------------------------------------------------------------------
# Training checkpoints: a directory per step, a `latest` pointer written last.
#   CKPT_ROOT/step-00001000/{model,ema,disc,...}.safetensors   weights groups (save_weights, meta inside)
#                          /state.pt                           optimizers, schedulers, scaler, RNG, data
#                                                              position (weights_only-loadable)
#                          /meta.json                          config dict, step, version, world size
#   CKPT_ROOT/latest                                           "step-00001000\n"
# ---------------------------------------------------------------------------------------------
LATEST = "latest"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
STEP_DIR = re.compile(r"^step-(\d{8,})$")


class TrainingCheckpoint(NamedTuple):
    """A loaded training checkpoint: weights groups, the training state, the meta dict, its folder."""

    weights: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any]
    meta: dict[str, Any]
    path: Path | None = None


def _check_plain(obj: Any, where: str = "state") -> None:
    """Refuse values ``torch.load(weights_only=True)`` would not read back (a programming error)."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor, torch.Size, torch.dtype)):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is not a str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} holds a {type(obj).__name__}, which weights_only loading refuses")


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """The complete-looking ``step-*`` folders under ``root``, oldest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def _disk_error(err: OSError, target: Path, previous: Path | None) -> GigatokError:
    kept = (
        f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
    )
    if err.errno == errno.ENOSPC:
        return GigatokError(
            f"the disk is full: checkpoint {target.name} could not be written ({kept})",
            hint=f"free space on the disk holding {target.parent}, or lower --keep, then resume the run",
        )
    return GigatokError(
        f"checkpoint {target.name} could not be written: {err.strerror or err} ({kept})",
        hint=f"check that {target.parent} is writable, then resume the run",
    )


def save_checkpoint(
    directory: str | Path,
    *,
    weights: Mapping[str, Mapping[str, torch.Tensor]],
    state: Mapping[str, Any],
    meta: Mapping[str, Any],
    keep: int | None = None,
) -> Path:
    """Write ``directory/step-{meta['step']:08d}/`` atomically, then point ``directory/latest`` at it.

    The folder is written under a temp name and renamed when complete; ``latest`` is replaced last,
    so a crash at any moment leaves the previous checkpoint the latest. ``keep`` (>= 1) removes all
    but the newest ``keep`` checkpoints afterwards. A full disk raises a :class:`GigatokError` and
    leaves the previous checkpoint intact. Returns the new folder.
    """
    import json
    import shutil
    import tempfile

    from gigatok_core import __version__
    from gigatok_core.fileio import atomic_write, write_json, write_text_atomic

    step = meta.get("step")
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"meta['step'] must be a non-negative int, got {step!r}")
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    for name in weights:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in ("state", "meta"):
            raise ValueError(f"bad weights group name {name!r}")
    _check_plain(dict(state))
    full_meta = {
        "format": META_FORMAT,
        "gigatok_version": __version__,
        **dict(meta),
        "groups": sorted(weights),
    }
    json.dumps(full_meta, allow_nan=False)  # fail before writing anything when meta is not JSON

    root = Path(directory)
    target = root / f"step-{step:08d}"
    previous = latest_checkpoint(root, quiet=True)
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".step-*.tmp"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=root))
        for name, tensors in weights.items():
            save_weights(tmp / f"{name}.safetensors", tensors, {**full_meta, "group": name})
        with atomic_write(tmp / STATE_FILE, "wb") as f:  # streamed: no second copy in memory
            torch.save(dict(state), f)
        write_json(tmp / META_FILE, full_meta)
        if target.exists():  # the same step saved again (a resumed run): swap, then drop the old one
            old = root / f".{target.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
        tmp = None
        write_text_atomic(root / LATEST, target.name + "\n")
    except OSError as err:
        raise _disk_error(err, target, previous) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if keep is not None:
        for old in checkpoint_dirs(root)[:-keep]:
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(path: str | Path, *, quiet: bool = False) -> Path | None:
    """The newest checkpoint folder under ``path`` (a run folder, its ``checkpoints/`` or a step
    folder itself), following ``latest``; None when there is none."""
    path = Path(path)
    if (path / META_FILE).is_file() and STEP_DIR.match(path.name):
        return path
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    pointer = root / LATEST
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if STEP_DIR.match(name) and (root / name).is_dir():
            return root / name
        if not quiet:
            log.warning("%s names %r, which is not a checkpoint; using the newest folder", pointer, name)
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def _read_one(folder: Path, groups: Iterable[str] | None, with_state: bool) -> TrainingCheckpoint:
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("groups"), list):
            raise ValueError("meta.json is not a gigatok checkpoint description")
        wanted = meta["groups"] if groups is None else [g for g in groups if g in meta["groups"]]
        weights = {g: load_file(str(folder / f"{g}.safetensors")) for g in wanted}
        state = {}
        if with_state:
            state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError("state.pt does not hold a dict")
    except (OSError, ValueError, SafetensorError, RuntimeError, pickle.UnpicklingError, EOFError) as err:
        raise _CorruptCheckpoint(f"{folder} is not a readable checkpoint ({str(err)[:200]})") from None
    return TrainingCheckpoint(weights, state, meta, folder)


class _CorruptCheckpoint(Exception):
    pass


def load_checkpoint(
    path: str | Path, *, groups: Iterable[str] | None = None, with_state: bool = True
) -> TrainingCheckpoint:
    """Load a training checkpoint: a step folder, or the latest one of a run (``RUN_DIR`` or
    ``RUN_DIR/checkpoints``). A corrupt latest checkpoint falls back to the one before it, with a
    warning; a named step folder that is corrupt is an error. ``groups`` restricts the weights
    read (missing groups are left out); ``with_state=False`` skips ``state.pt``."""
    path = Path(path)
    if not path.exists():
        raise GigatokError(
            f"{path} does not exist", hint="pass a run folder or one of its checkpoint folders"
        )
    if STEP_DIR.match(path.name) and (path / META_FILE).exists():
        try:
            return _read_one(path, groups, with_state)
        except _CorruptCheckpoint as err:
            raise GigatokError(str(err), hint="use an earlier checkpoint folder, or the run folder") from None
    first = latest_checkpoint(path)
    if first is None:
        raise GigatokError(
            f"{path} holds no training checkpoint",
            hint="pass a run folder written by `gigatok train` (it has a checkpoints/ folder)",
        )
    first_step = int(STEP_DIR.match(first.name).group(1))  # type: ignore[union-attr]
    older = [p for p in checkpoint_dirs(first.parent) if int(p.name[5:]) < first_step]
    candidates = [first, *reversed(older)]
    for i, folder in enumerate(candidates):
        try:
            ckpt = _read_one(folder, groups, with_state)
        except _CorruptCheckpoint as err:
            log.warning("%s; trying the previous checkpoint", err)
            continue
        if i:
            log.warning("note: the latest checkpoint was unreadable; loaded %s instead", folder.name)
        return ckpt
    raise GigatokError(
        f"no checkpoint under {first.parent} is readable",
        hint="the files were damaged: start the run again with --resume never --overwrite",
    )
