"""Cache maintenance: import a file downloaded by hand, re-verify, clear.

``import_weights(path, preset, shapes=...)`` is the Drive-quota workaround (``gigatok cache
import FILE --preset NAME``): the file is checked like a download (pinned size / hash, the
structural check ``shapes`` when given) before anything in the cache is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from gigatok_core import registry
from gigatok_core.errors import GigatokError
from gigatok_core.hub import cache, structure
from gigatok_core.hub.fetch import Rejected, accept, check_cached, identity_problem, locked, where_to_get
from gigatok_core.hub.structure import ShapesFn
from gigatok_core.registry import WeightsRecord
from gigatok_core.utils.fileio import sha256_file

log = logging.getLogger("gigatok")


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------
def import_weights(path: str | Path, preset: str, *, shapes: ShapesFn | None = None) -> Path:
    """Verify a file downloaded by hand as ``preset``'s weights and copy it into the cache."""
    key = registry.import_target(preset)
    rec = registry.weights_record(key)
    src = Path(path)
    if not src.is_file():
        raise GigatokError(f"{src} does not exist", hint="pass the path of the file you downloaded")
    _check_import_name(src, rec, key)
    if src.suffix == ".safetensors" and rec.kind != "aux":
        return _import_converted(src, rec, key, shapes)
    with locked(rec, False):
        raw = cache.raw_path(rec)
        incoming = raw.with_name(raw.name + ".import")
        sha = cache.copy_hashing(src, incoming)
        problem = identity_problem(rec, incoming.stat().st_size, sha)
        if problem:  # checked before anything in the cache is replaced
            incoming.unlink(missing_ok=True)
            raise GigatokError(
                f"{src} was not imported as {preset} ({rec.file}): {problem}",
                hint=f"make sure it is {rec.file} from {where_to_get(rec)}",
            )
        os.replace(incoming, raw)
        try:
            return accept(rec, key, raw, sha, origin=f"import:{src.name}", shapes=shapes)
        except Rejected as err:
            raise GigatokError(
                f"{src} was not imported as {preset} ({rec.file}): {err}",
                hint=f"make sure it is {rec.file} from {where_to_get(rec)}; "
                "a Drive error page saved as a file is not a checkpoint",
            ) from None


def _import_converted(src: Path, rec: WeightsRecord, key: str, shapes: ShapesFn | None) -> Path:
    """Import a checkpoint already converted by gigatok (the cache's ``.safetensors``, e.g. copied from
    another machine): its keys and shapes are checked, then it is stored and recorded as found."""
    expected = shapes(rec) if shapes else None
    try:
        found_shapes = structure.safetensors_shapes(src)
    except Exception as err:  # not a safetensors file at all
        raise GigatokError(
            f"{src} is not a readable safetensors file ({str(err).splitlines()[0][:200]})",
            hint=f"import the original {rec.file}, or a .safetensors from a gigatok cache",
        ) from None
    if expected is not None:  # shapes of a model: torch is loaded by now
        from gigatok_core.checkpoints.files import check_shapes

        check_shapes(found_shapes, expected, source=src.name, what=registry.display_name(key))
    with locked(rec, False):
        stored = cache.stored_path(rec)
        incoming = stored.with_name(stored.name + ".import")
        cache.copy_hashing(src, incoming)
        os.replace(incoming, stored)
        cache.drop_entry(key)
        found = check_cached(rec, key, shapes)
    if found is None:
        raise GigatokError(f"{src} was not imported as {registry.display_name(key)}")
    return found


def _check_import_name(src: Path, rec: WeightsRecord, key: str) -> None:
    """Refuse another release's file: several presets share their shapes (the GPT-B releases, b-l and
    b-l-dino) and have no pinned hash, so its name is what tells such a file apart."""
    if src.name in (rec.file, cache.stored_path(rec).name):
        return
    for other in registry.weights_names():
        orec = registry.weights_record(other)
        if orec.file != rec.file and src.name in (orec.file, cache.stored_path(orec).name):
            raise GigatokError(
                f"{src.name} is the release file of {registry.display_name(other)}, not of "
                f"{registry.display_name(key)} ({rec.file})",
                hint=f"import it with --preset {registry.display_name(other)}",
            )
    log.info(
        "importing %s as %s (%s): the names differ, so make sure it is that file", src.name, key, rec.file
    )


# ---------------------------------------------------------------------------------------------
# Verify and clear
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyResult:
    key: str
    status: str  # ok | corrupt | missing | not cached
    detail: str = ""


def verify_cache(keys: list[str] | None = None) -> list[VerifyResult]:
    """Re-hash cached files against the manifest; corrupted or missing ones are forgotten (and
    deleted), so the next use fetches them again."""
    files = cache.read_manifest()["files"]
    out = []
    for key in keys if keys is not None else sorted(files):
        entry = files.get(key)
        if entry is None:
            out.append(VerifyResult(key, "not cached"))
            continue
        stored = cache.weights_dir() / entry["stored"]
        lock = cache.file_lock(registry.weights_record(key)) if key in registry.weights_names() else None
        with lock or contextlib.nullcontext():
            if not stored.is_file():
                cache.drop_entry(key)
                out.append(VerifyResult(key, "missing", str(stored)))
                continue
            sha = sha256_file(stored)
            if sha != entry["stored_sha256"]:
                stored.unlink()
                cache.drop_entry(key)
                out.append(
                    VerifyResult(
                        key,
                        "corrupt",
                        f"sha256 {sha[:12]}… != recorded {entry['stored_sha256'][:12]}…; deleted",
                    )
                )
                continue
            cache.update_entry(key, stored_mtime_ns=stored.stat().st_mtime_ns)
            out.append(VerifyResult(key, "ok", sha))
    return out


def _files_of(rec: WeightsRecord) -> list[Path]:
    """Every file the cache may hold for ``rec``: original, safetensors, partial download, and the
    leftovers of a killed conversion, copy or import. All inside :func:`cache.weights_dir`."""
    stored, raw = cache.stored_path(rec), cache.raw_path(rec)
    leftovers = [
        *cache.leftovers(stored),
        *cache.leftovers(raw),
        *(p.with_name(p.name + ".import") for p in (raw, stored)),
    ]
    return sorted({raw, stored, cache.part_path(rec), *leftovers})


def cached_files(keys: list[str] | None = None) -> list[Path]:
    """The files :func:`clear_weights` would delete for ``keys`` (every registered file when None):
    what to show before asking."""
    keys = registry.weights_names() if keys is None else keys
    return [p for key in keys for p in _files_of(registry.weights_record(key)) if p.is_file()]


def clear_weights(keys: list[str] | None = None) -> list[Path]:
    """Delete ``keys``' files (every registered file when None) from the cache. Only the registry's
    own file names inside the weights folder are touched: anything else there is left alone."""
    removed = []
    for key in registry.weights_names() if keys is None else keys:
        rec = registry.weights_record(key)
        with locked(rec, False):
            for p in _files_of(rec):
                if p.is_file():
                    p.unlink()
                    removed.append(p)
            cache.drop_entry(key)
    return removed
