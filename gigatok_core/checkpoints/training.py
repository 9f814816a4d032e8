"""Training checkpoints: a folder per step, written atomically, with a ``latest`` pointer written last.

Weights groups are self-describing safetensors (:func:`gigatok_core.checkpoints.files.save_weights`); the
rest of the training state is a ``weights_only``-loadable ``state.pt``. Used by the trainers
(``gigatok_core.train``) and by linear probing (``gigatok_core.probe``), hence its place here.
"""

from __future__ import annotations

import errno
import logging
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from gigatok_core.checkpoints.files import META_FORMAT, save_weights
from gigatok_core.errors import GigatokError

log = logging.getLogger("gigatok")

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


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested state (what a checkpoint of it writes, roughly)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _disk_error(err: OSError, target: Path, previous: Path | None, need: int) -> GigatokError:
    from gigatok_core.utils.fileio import free_bytes, human_bytes

    kept = (
        f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
    )
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(target.parent)
        has = f", {human_bytes(free)} free there" if free is not None else ""
        return GigatokError(
            f"the disk is full: checkpoint {target} needs about {human_bytes(need)}{has} ({kept})",
            hint=f"free at least {human_bytes(need)} on the disk holding {target.parent} (or lower --keep), "
            "then run the same command again to resume",
        )
    return GigatokError(
        f"checkpoint {target} could not be written: {err.strerror or err} ({kept})",
        hint=f"check that {target.parent} is writable, then run the same command again to resume",
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

    from gigatok_core import __version__
    from gigatok_core.utils.fileio import atomic_write, temp_dir, write_json, write_text_atomic

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
        tmp = temp_dir(root, prefix=f".{target.name}.")
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
        need = _tensor_bytes(dict(weights)) + _tensor_bytes(dict(state))
        raise _disk_error(err, target, previous, need) from None
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
            log.warning("the latest checkpoint was unreadable; loaded %s instead", folder.name)
        return ckpt
    raise GigatokError(
        f"no checkpoint under {first.parent} is readable",
        hint="the files were damaged: start the run again with --overwrite",
    )
