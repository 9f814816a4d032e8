"""The weights cache on disk: where files live, the manifest of what was verified, look-ups.

Layout under :func:`cache_dir` (``$GIGATOK_CACHE`` or platformdirs' ``user_cache_dir("gigatok")``)::

    manifest.json                  what was accepted: sizes, sha256, origin (one entry per weights key)
    weights/<file>                 an aux file as downloaded (also: a model file between download and conversion)
    weights/<stem>.safetensors     the weights entry of a tokenizer / GPT checkpoint (what the models load)
    weights/<file>.part            an interrupted download, resumed with an HTTP Range request
    weights/<file>.lock            exists only while a process fetches <file> (removed on release)

Integrity policy: a file is hashed in full when it enters the cache (download, import, reuse of
another cache) and its size, sha256 and mtime are written to the manifest. Every later use only
compares size and mtime with the manifest (re-hashing multi-GB files on every load is too slow);
an mtime change triggers a full re-hash, and ``gigatok cache verify`` re-hashes everything.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs

from gigatok_core import registry
from gigatok_core.hub.lock import RemovableLock
from gigatok_core.registry import WeightsRecord
from gigatok_core.utils.fileio import CHUNK, atomic_write, write_json

_TRUE = ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The cache folder: ``$GIGATOK_CACHE`` or the platform's user cache dir."""
    return Path(os.environ.get("GIGATOK_CACHE") or platformdirs.user_cache_dir("gigatok"))


def weights_dir() -> Path:
    return cache_dir() / "weights"


def raw_path(rec: WeightsRecord) -> Path:
    """The file as downloaded."""
    return weights_dir() / rec.file


def stored_path(rec: WeightsRecord) -> Path:
    """What :func:`gigatok_core.hub.fetch_weights` returns: safetensors for models, the file for aux."""
    if rec.kind == "aux":
        return raw_path(rec)
    return weights_dir() / (Path(rec.file).stem + ".safetensors")


def part_path(rec: WeightsRecord) -> Path:
    return weights_dir() / (rec.file + ".part")


def file_lock(rec: WeightsRecord) -> RemovableLock:
    """One lock per file, so parallel processes / torchrun ranks download it once (no file is left)."""
    return RemovableLock(weights_dir() / (rec.file + ".lock"))


def offline() -> bool:
    """``GIGATOK_OFFLINE=1`` (or Hugging Face's ``HF_HUB_OFFLINE=1``): never touch the network."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE for var in ("GIGATOK_OFFLINE", "HF_HUB_OFFLINE")
    )


# ---------------------------------------------------------------------------------------------
# Copies into the cache (hashed on the way)
# ---------------------------------------------------------------------------------------------
def copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` atomically (:func:`~gigatok_core.utils.fileio.atomic_write`); returns the
    sha256 of the bytes, computed on the way (one read of a multi-GB file, not two)."""
    h = hashlib.sha256()
    with open(src, "rb") as fi, atomic_write(dst, "wb") as fo:
        while chunk := fi.read(CHUNK):
            h.update(chunk)
            fo.write(chunk)
    return h.hexdigest()


def link_or_copy(src: Path, dst: Path) -> str | None:
    """Hardlink ``src`` at ``dst`` (same file system) or copy it; returns the sha256 when copied.
    A link is made beside ``dst`` and renamed over it (atomic like :func:`copy_hashing`)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        return copy_hashing(src, dst)
    os.replace(tmp, dst)
    return None


# ---------------------------------------------------------------------------------------------
# The manifest: {"version": 1, "files": {key: entry}}
#   entry = {kind, origin, size, sha256,            <- the file as it entered the cache
#            stored, stored_size, stored_sha256, stored_mtime_ns,   <- the file the models load
#            entry, structure_checked, time}
# ---------------------------------------------------------------------------------------------
def _manifest_path() -> Path:
    return cache_dir() / "manifest.json"


@contextlib.contextmanager
def _manifest_locked() -> Iterator[dict[str, Any]]:
    cache_dir().mkdir(parents=True, exist_ok=True)
    with RemovableLock(cache_dir() / "manifest.json.lock"):
        data = read_manifest()
        yield data
        write_json(_manifest_path(), data, sort_keys=True)


MANIFEST_FIELDS = ("stored", "stored_size", "stored_mtime_ns", "stored_sha256")


def read_manifest() -> dict[str, Any]:
    """The manifest; unreadable or malformed parts are dropped (their files are checked again on use)."""
    try:
        data = json.loads(_manifest_path().read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        return {"version": 1, "files": {}}
    files = data.get("files")
    data["files"] = {
        k: v
        for k, v in (files.items() if isinstance(files, dict) else [])
        if isinstance(v, dict) and all(f in v for f in MANIFEST_FIELDS)
    }
    return data


def manifest_entry(key: str) -> dict[str, Any] | None:
    return read_manifest()["files"].get(key)


def record_entry(key: str, entry: dict[str, Any]) -> None:
    entry = {**entry, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with _manifest_locked() as data:
        data["files"][key] = entry


def update_entry(key: str, **fields: Any) -> None:
    with _manifest_locked() as data:
        if key in data["files"]:
            data["files"][key].update(fields)


def drop_entry(key: str) -> None:
    with _manifest_locked() as data:
        data["files"].pop(key, None)


def leftovers(path: Path) -> list[Path]:
    """Temp files of an interrupted atomic write of ``path`` (``.<name>.*.tmp``, older ``<name>.tmp*``)."""
    esc = glob.escape(path.name)
    return [*path.parent.glob(f".{esc}.*.tmp"), *path.parent.glob(f"{esc}.tmp*")]


def stat_fields(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"stored_size": st.st_size, "stored_mtime_ns": st.st_mtime_ns}


# ---------------------------------------------------------------------------------------------
# Look-ups (no hashing, no side effects)
# ---------------------------------------------------------------------------------------------
def quick_path(rec: WeightsRecord, key: str) -> Path | None:
    """``rec``'s stored file when its size and mtime match the manifest entry ``key``, else None."""
    stored, entry = stored_path(rec), manifest_entry(key)
    if entry is None or entry.get("stored") != stored.name or not stored.is_file():
        return None
    st = stored.stat()
    if (st.st_size, st.st_mtime_ns) == (entry["stored_size"], entry["stored_mtime_ns"]):
        return stored
    return None


def cached_path(key: str) -> Path | None:
    """The cached file of registered weights ``key`` if present and unchanged (no hashing)."""
    return quick_path(registry.weights_record(key), key)


def cache_state(rec: WeightsRecord, key: str) -> str:
    """yes, unverified (present but not as recorded: checked on next use), partial <bytes>, or no."""
    if quick_path(rec, key) is not None:
        return "yes"
    if stored_path(rec).is_file():
        return "unverified"  # changed since recorded, or put there by hand
    part = part_path(rec)
    if part.is_file():
        return f"partial {part.stat().st_size}"  # bytes so far; the next download resumes
    return "no"


# ---------------------------------------------------------------------------------------------
# Hub blobs verified against their published sha256 (``{"hub_blobs": {path: {size, mtime_ns,
# sha256}}}``): a later use of an unchanged blob is not hashed again
# ---------------------------------------------------------------------------------------------
def verified_blob(path: str) -> dict[str, Any] | None:
    blobs = read_manifest().get("hub_blobs")
    entry = blobs.get(path) if isinstance(blobs, dict) else None
    return entry if isinstance(entry, dict) and "sha256" in entry else None


def record_blob(path: str, *, size: int, mtime_ns: int, sha256: str) -> None:
    with _manifest_locked() as data:
        blobs = data.get("hub_blobs") if isinstance(data.get("hub_blobs"), dict) else {}
        blobs[path] = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}
        data["hub_blobs"] = blobs


def forget_blob(path: str) -> None:
    with _manifest_locked() as data:
        if isinstance(data.get("hub_blobs"), dict):
            data["hub_blobs"].pop(path, None)
