"""Writing files so that a reader never sees half of one, and hashing them.

Every file gigatok writes (images, JSON settings, npz arrays (:func:`write_npz`), checkpoints,
cache entries) goes through :func:`atomic_write`: a temp file in the destination folder, flushed and fsynced, then
``os.replace`` over the target. A crash or a full disk leaves the previous file (or none) in place,
never a truncated one. Files get the usual permissions (``0666 & ~umask``), not ``mkstemp``'s 0600,
and folders made through :func:`temp_dir` ``0777 & ~umask``, not ``mkdtemp``'s 0700.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20


def human_bytes(n: float) -> str:
    """``1.2 GB``-style sizes for messages (decimal units, as ``df -H``)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # unreachable


def free_bytes(path: str | Path) -> int | None:
    """Free space on the disk holding ``path`` (its nearest existing parent); None if unknown."""
    import shutil

    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on a clean exit it replaces ``path`` atomically.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8). On an exception the temp file is removed and
    ``path`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside ``path`` for writers that need a file *name* (safetensors' ``save_file``);
    on a clean exit it is fsynced, given the usual permissions and renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temp_dir(parent: str | Path, *, prefix: str, suffix: str = ".tmp") -> Path:
    """A new, uniquely named folder in ``parent`` with a folder's usual permissions
    (``0777 & ~umask``), not ``mkdtemp``'s 0700: what is renamed into place from it (a checkpoint's
    step folder) reads like any folder the user made."""
    path = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(path, 0o777 & ~_umask())
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: str | Path, obj: Any, *, sort_keys: bool = False) -> None:
    """Write ``obj`` as indented, strict JSON (no NaN/inf) with a final newline, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")


def write_npz(path: str | Path, arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` as an ``.npz`` (one ``<key>.npy`` member each, ``np.load``-able), atomically.

    Written member by member rather than through ``np.savez(file, **arrays)``, whose own parameter
    names (``file``, ``allow_pickle``) would clash with keys such as image stems. Object arrays
    are refused (they would need pickle to read back).
    """
    import zipfile

    import numpy as np

    with atomic_write(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
