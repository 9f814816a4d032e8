"""Get a verified local file for a weights record: cache, other caches, import, download.

``fetch_weights(name)`` is what the models call. Order of attempts, under a per-file lock (so
parallel processes and torchrun ranks download once; the others wait and reuse):

1. our cache: size and mtime match the manifest (a changed mtime -> full re-hash);
2. a file already in our ``weights/`` folder (interrupted conversion, copied by hand), then copies
   in the Hugging Face or torch hub caches (hardlinked or copied, verified like a download);
3. unless offline, each source in order (``.part`` + resume + verify + atomic rename).

A file is accepted when its size / sha256 / sha256 prefix match what the record pins and, for a
tokenizer or GPT checkpoint, its weights entry fits the preset's keys and shapes; the entry is
then converted to safetensors and the original removed.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import Timeout

from gigatok_core import registry
from gigatok_core.errors import GigatokError
from gigatok_core.hub import cache, catalog, structure
from gigatok_core.hub.sources import SourceFailed, fetch_source, human_urls, local_candidates
from gigatok_core.hub.structure import ShapesFn
from gigatok_core.hub.transfer import session
from gigatok_core.registry import WeightsRecord


class Rejected(Exception):
    """A candidate file failed verification (it has been deleted from our cache)."""


log = logging.getLogger("gigatok")


def _say(progress: bool, msg: str) -> None:
    if progress:
        from rich.console import Console

        Console(stderr=True).print(msg, highlight=False)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def fetch_weights(
    name: str, *, progress: bool = True, shapes: ShapesFn | None = None, or_option: str | None = None
) -> Path:
    """Local path of the verified file registered as ``name`` in presets/weights.yaml.

    Tokenizer and GPT checkpoints come back as safetensors holding their weights entry (read by
    :func:`gigatok_core.checkpoint.read_checkpoint` as ``{"model": tensors}``); aux files as
    downloaded. ``shapes`` replaces the preset's expected keys/shapes (tests). ``or_option`` names
    the command-line option that takes a local file instead; a failure's hint mentions it.
    """
    try:
        return fetch_record(registry.weights_record(name), key=name, progress=progress, shapes=shapes)
    except GigatokError as err:
        if or_option:
            err.hint = f"{err.hint}; or pass {or_option}" if err.hint else f"pass {or_option}"
        raise


def fetch_record(
    rec: WeightsRecord, *, key: str | None = None, progress: bool = True, shapes: ShapesFn | None = None
) -> Path:
    """:func:`fetch_weights` for a record (registered or not)."""
    key = key or rec.file
    progress = progress and os.environ.get("LOCAL_RANK", "0") == "0"  # one bar per machine under torchrun
    found = _quick(rec, key)
    if found is not None:
        return found
    with _locked(rec, progress):
        found = _check_cached(rec, key, shapes)
        if found is not None:
            return found
        return _obtain(rec, key, progress, shapes)


def import_weights(path: str | Path, preset: str, *, shapes: ShapesFn | None = None) -> Path:
    """Verify a file downloaded by hand as ``preset``'s weights and copy it into the cache."""
    key = catalog.import_target(preset)
    rec = registry.weights_record(key)
    src = Path(path)
    if not src.is_file():
        raise GigatokError(f"{src} does not exist", hint="pass the path of the file you downloaded")
    _check_import_name(src, rec, key)
    if src.suffix == ".safetensors" and rec.kind != "aux":
        return _import_converted(src, rec, key, shapes)
    with _locked(rec, False):
        raw = cache.raw_path(rec)
        incoming = raw.with_name(raw.name + ".import")
        sha = cache.copy_hashing(src, incoming)
        problem = _identity_problem(rec, incoming.stat().st_size, sha)
        if problem:  # checked before anything in the cache is replaced
            incoming.unlink(missing_ok=True)
            raise GigatokError(
                f"{src} was not imported as {preset} ({rec.file}): {problem}",
                hint=f"make sure it is {rec.file} from {', '.join(human_urls(rec.sources[0]))}",
            )
        os.replace(incoming, raw)
        try:
            return _accept(rec, key, raw, sha, origin=f"import:{src.name}", shapes=shapes)
        except Rejected as err:
            raise GigatokError(
                f"{src} was not imported as {preset} ({rec.file}): {err}",
                hint=f"make sure it is {rec.file} from {', '.join(human_urls(rec.sources[0]))}; "
                "a Drive error page saved as a file is not a checkpoint",
            ) from None


def _import_converted(src: Path, rec: WeightsRecord, key: str, shapes: ShapesFn | None) -> Path:
    """Import a checkpoint already converted by gigatok (the cache's ``.safetensors``, e.g. copied from
    another machine): its keys and shapes are checked, then it is stored and recorded as found."""
    expected = (shapes or structure.preset_shapes)(rec)
    try:
        found_shapes = structure.safetensors_shapes(src)
    except Exception as err:  # not a safetensors file at all
        raise GigatokError(
            f"{src} is not a readable safetensors file ({str(err).splitlines()[0][:200]})",
            hint=f"import the original {rec.file}, or a .safetensors from a gigatok cache",
        ) from None
    if expected is not None:
        structure.check_shapes(found_shapes, expected, source=src.name, what=catalog.display_name(key))
    with _locked(rec, False):
        stored = cache.stored_path(rec)
        incoming = stored.with_name(stored.name + ".import")
        cache.copy_hashing(src, incoming)
        os.replace(incoming, stored)
        cache.drop_entry(key)
        found = _check_cached(rec, key, shapes)
    if found is None:
        raise GigatokError(f"{src} was not imported as {catalog.display_name(key)}")
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
                f"{src.name} is the release file of {catalog.display_name(other)}, not of "
                f"{catalog.display_name(key)} ({rec.file})",
                hint=f"import it with --preset {catalog.display_name(other)}",
            )
    log.info(
        "importing %s as %s (%s): the names differ, so make sure it is that file", src.name, key, rec.file
    )


def cached_path(key: str) -> Path | None:
    """The cached file for ``key`` if present and unchanged (no hashing)."""
    return _quick(registry.weights_record(key), key)


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
            sha = cache.sha256_file(stored)
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


def clear_weights(keys: list[str]) -> list[Path]:
    """Delete ``keys``' files (original, safetensors, partial download) from the cache."""
    removed = []
    for key in keys:
        rec = registry.weights_record(key)
        with _locked(rec, False):
            stored, raw = cache.stored_path(rec), cache.raw_path(rec)
            leftovers = [  # of a killed conversion or import
                *stored.parent.glob(f"{glob.escape(stored.name)}.tmp*"),
                *(p.with_name(p.name + ".import") for p in (raw, stored)),
            ]
            for p in {raw, stored, cache.part_path(rec), *leftovers}:
                if p.is_file():
                    p.unlink()
                    removed.append(p)
            cache.drop_entry(key)
    return removed


# ---------------------------------------------------------------------------------------------
# Cache checks
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(rec: WeightsRecord, progress: bool) -> Iterator[None]:
    lock = cache.file_lock(rec)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(progress, f"[dim]waiting for another process fetching {rec.file}…[/]")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _quick(rec: WeightsRecord, key: str) -> Path | None:
    """Size + mtime against the manifest; no side effects."""
    stored, entry = cache.stored_path(rec), cache.manifest_entry(key)
    if entry is None or entry.get("stored") != stored.name or not stored.is_file():
        return None
    st = stored.stat()
    if (st.st_size, st.st_mtime_ns) == (entry["stored_size"], entry["stored_mtime_ns"]):
        return stored
    return None


def _check_cached(rec: WeightsRecord, key: str, shapes: ShapesFn | None) -> Path | None:
    """Under the lock: accept an unchanged file, re-hash a touched one, drop a corrupted one,
    verify a stored file that the manifest does not know (copied in by hand)."""
    if (found := _quick(rec, key)) is not None:
        return found
    stored, entry = cache.stored_path(rec), cache.manifest_entry(key)
    if not stored.is_file():
        return None
    sha = cache.sha256_file(stored)
    if entry is not None and entry.get("stored") == stored.name:
        if sha == entry["stored_sha256"]:
            cache.update_entry(key, stored_mtime_ns=stored.stat().st_mtime_ns)
            return stored
        stored.unlink()  # corrupted since it was recorded: never use it
        cache.drop_entry(key)
        return None
    if rec.kind == "aux":  # an aux file dropped into the cache by hand: verify like a download
        try:
            return _accept(rec, key, stored, sha, origin="found in cache", shapes=shapes)
        except Rejected:
            return None
    expected = (shapes or structure.preset_shapes)(rec)
    try:
        if expected is not None:
            structure.check_shapes(
                structure.safetensors_shapes(stored),
                expected,
                source=stored.name,
                what=catalog.display_name(key),
            )
    except GigatokError:
        stored.unlink()
        return None
    cache.record_entry(
        key,
        {
            "kind": rec.kind,
            "origin": "found in cache",
            "size": None,
            "sha256": None,
            "stored": stored.name,
            "stored_sha256": sha,
            **cache.stat_fields(stored),
            "structure_checked": expected is not None,
        },
    )
    cache.raw_path(rec).unlink(missing_ok=True)  # a conversion killed before its clean-up left the .pt
    return stored


# ---------------------------------------------------------------------------------------------
# Getting the file
# ---------------------------------------------------------------------------------------------
def _obtain(rec: WeightsRecord, key: str, progress: bool, shapes: ShapesFn | None) -> Path:
    raw, notes = cache.raw_path(rec), []
    candidates = ([raw] if raw.is_file() and rec.kind != "aux" else []) + local_candidates(rec)
    for cand in candidates:
        try:
            sha = (
                cache.sha256_file(raw)
                if cand == raw
                else (cache.link_or_copy(cand, raw) or cache.sha256_file(raw))
            )
            found = _accept(rec, key, raw, sha, origin=str(cand), shapes=shapes)
            _say(progress, f"reused {cand}")
            return found
        except Rejected as err:
            notes.append(f"{cand} was not used: {err}")
    if cache.offline():
        raise _offline_error(rec, key, notes)
    failures: list[SourceFailed] = []
    sess = session()
    for src in rec.sources:
        try:
            got = fetch_source(src, cache.part_path(rec), label=rec.file, progress=progress, sess=sess)
        except SourceFailed as err:
            failures.append(err)
            continue
        cache.part_path(rec).replace(raw)
        try:
            return _accept(rec, key, raw, got.sha256, origin=src, shapes=shapes)
        except Rejected as err:
            failures.append(SourceFailed(src, f"downloaded file rejected: {err}"))
    raise _download_error(rec, key, failures, notes)


def _identity_problem(rec: WeightsRecord, size: int, sha: str) -> str | None:
    """Why a file of this size and sha256 is not ``rec``'s (pinned size / hash), or None."""
    if rec.size is not None and size != rec.size:
        return f"size {size} != expected {rec.size}"
    if rec.sha256 and sha != rec.sha256:
        return f"sha256 {sha} != expected {rec.sha256}"
    if rec.sha256_prefix and not sha.startswith(rec.sha256_prefix):
        return f"sha256 {sha[:16]}… does not start with {rec.sha256_prefix} (the hash in its name)"
    return None


def _accept(
    rec: WeightsRecord, key: str, raw: Path, sha: str, *, origin: str, shapes: ShapesFn | None
) -> Path:
    """Verify ``raw`` (already in our cache), convert a model checkpoint, record it. Raises
    :class:`Rejected` after deleting ``raw``."""
    size = raw.stat().st_size
    problem = _identity_problem(rec, size, sha)
    if problem:
        raw.unlink(missing_ok=True)
        raise Rejected(problem)
    entry = {"kind": rec.kind, "origin": origin, "size": size, "sha256": sha}
    if rec.kind == "aux":
        entry.update(stored=raw.name, stored_sha256=sha, structure_checked=False, **cache.stat_fields(raw))
        cache.record_entry(key, entry)
        return raw
    stored = cache.stored_path(rec)
    expected = (shapes or structure.preset_shapes)(rec)
    try:
        used = structure.convert(
            raw,
            stored,
            kind=rec.kind,
            expected=expected,
            what=catalog.display_name(key),
            metadata={"source_sha256": sha},
        )
    except GigatokError as err:
        raw.unlink(missing_ok=True)
        raise Rejected(err.message) from None
    entry.update(
        stored=stored.name,
        stored_sha256=cache.sha256_file(stored),
        entry=used,
        structure_checked=expected is not None,
        **cache.stat_fields(stored),
    )
    cache.record_entry(key, entry)
    raw.unlink()  # the safetensors holds everything the models need
    return stored


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def _where_to_get(rec: WeightsRecord) -> str:
    return ", ".join(u for src in rec.sources for u in human_urls(src))


def _offline_error(rec: WeightsRecord, key: str, notes: list[str]) -> GigatokError:
    name = catalog.display_name(key)
    extra = f" ({'; '.join(notes)})" if notes else ""
    return GigatokError(
        f"{rec.file} is not in the cache ({cache.weights_dir()}) and offline mode is on "
        f"(GIGATOK_OFFLINE / HF_HUB_OFFLINE){extra}; it comes from {_where_to_get(rec)}",
        hint=f"on a machine with internet run `gigatok download {name}` and copy "
        f"{cache.stored_path(rec).name} into {cache.weights_dir()}, or download the file by hand "
        f"and run `gigatok download --import FILE --preset {name}`",
    )


def _download_error(
    rec: WeightsRecord, key: str, failures: list[SourceFailed], notes: list[str]
) -> GigatokError:
    name = catalog.display_name(key)
    what = "; ".join([str(f) for f in failures] + notes)
    drive = [f for f in failures if f.drive_problem]
    if drive:
        hint = (
            f"open {_where_to_get(rec)} in a browser, download {rec.file}, then run "
            f"`gigatok download --import FILE --preset {name}`"
        )
        if any(f.drive_problem == "quota" for f in drive):
            hint += " (or retry in 24 hours: Drive resets the quota daily)"
    elif any(f.resumable for f in failures):
        hint = (
            f"check the network and run the command again: the partial download "
            f"{cache.part_path(rec)} is resumed; or download {rec.file} by hand from "
            f"{_where_to_get(rec)} and run `gigatok download --import FILE --preset {name}`"
        )
    else:
        hint = f"download it by hand from {_where_to_get(rec)} and run `gigatok download --import FILE --preset {name}`"
    return GigatokError(f"could not download {rec.file}: {what}", hint=hint)
