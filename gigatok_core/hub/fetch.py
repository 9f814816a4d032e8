"""Get a verified local file for a weights record: cache, other caches, download.

``fetch_weights(name, shapes=...)`` is what the models call (through :mod:`gigatok_core.weights`,
which passes the structural check). Order of attempts, under a per-file lock (so parallel processes
and torchrun ranks download once; the others wait and reuse):

1. our cache: size and mtime match the manifest (a changed mtime -> full re-hash);
2. a file already in our ``weights/`` folder (interrupted conversion, copied by hand), then a copy
   in torch hub's cache (hardlinked or copied, verified like a download);
3. each source in order, with a one-line note when one falls through to the next: the Hugging
   Face Hub through ``huggingface_hub`` (:mod:`gigatok_core.hub.hf`: the shared HF cache, offline
   too, checked against the sha256 the Hub publishes), then, unless offline, Google Drive or
   HTTPS (``.part`` + resume + verify + atomic rename).

A file is accepted when its size / sha256 / sha256 prefix match what the record pins and, for a
tokenizer or GPT checkpoint, its weights entry fits ``shapes(record)`` (when given); the entry is
then converted to safetensors and the original removed. Import, verify and clear live in
:mod:`gigatok_core.hub.manage`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from gigatok_core import registry
from gigatok_core.errors import GigatokError
from gigatok_core.hub import cache, hf, structure
from gigatok_core.hub.sources import SourceFailed, fetch_source, human_urls, local_candidates, source_label
from gigatok_core.hub.structure import ShapesFn
from gigatok_core.hub.transfer import session
from gigatok_core.registry import WeightsRecord
from gigatok_core.utils.fileio import sha256_file


class Rejected(Exception):
    """A candidate file failed verification (it has been deleted from our cache)."""


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
    :func:`gigatok_core.checkpoints.files.read_checkpoint` as ``{"model": tensors}``); aux files as
    downloaded. ``shapes(record)`` gives the keys/shapes a model checkpoint must have (None: no
    structural check; :func:`gigatok_core.weights.fetch_weights` passes the presets' check).
    ``or_option`` names the command-line option that takes a local file instead; a failure's hint
    mentions it.
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
    found = cache.quick_path(rec, key)
    if found is not None:
        return found
    with locked(rec, progress):
        found = check_cached(rec, key, shapes)
        if found is not None:
            return found
        return _obtain(rec, key, progress, shapes)


# ---------------------------------------------------------------------------------------------
# Cache checks
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def locked(rec: WeightsRecord, progress: bool) -> Iterator[None]:
    """Hold ``rec``'s file lock (say so when another process has it); its file is removed after."""
    lock = cache.file_lock(rec)
    if not lock.acquire(blocking=False):
        _say(progress, f"[dim]waiting for another process fetching {rec.file}…[/]")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def check_cached(rec: WeightsRecord, key: str, shapes: ShapesFn | None) -> Path | None:
    """Under the lock: accept an unchanged file, re-hash a touched one, drop a corrupted one,
    verify a stored file that the manifest does not know (copied in by hand)."""
    if (found := cache.quick_path(rec, key)) is not None:
        return found
    stored, entry = cache.stored_path(rec), cache.manifest_entry(key)
    if not stored.is_file():
        return None
    sha = sha256_file(stored)
    if entry is not None and entry.get("stored") == stored.name:
        if sha == entry["stored_sha256"]:
            cache.update_entry(key, stored_mtime_ns=stored.stat().st_mtime_ns)
            return stored
        stored.unlink()  # corrupted since it was recorded: never use it
        cache.drop_entry(key)
        return None
    if rec.kind == "aux":  # an aux file dropped into the cache by hand: verify like a download
        try:
            return accept(rec, key, stored, sha, origin="found in cache", shapes=shapes)
        except Rejected:
            return None
    expected = shapes(rec) if shapes else None
    try:
        if expected is not None:  # shapes of a model: torch is loaded by now
            from gigatok_core.checkpoints.files import check_shapes

            check_shapes(
                structure.safetensors_shapes(stored),
                expected,
                source=stored.name,
                what=registry.display_name(key),
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
            sha = sha256_file(raw) if cand == raw else (cache.link_or_copy(cand, raw) or sha256_file(raw))
            found = accept(rec, key, raw, sha, origin=str(cand), shapes=shapes)
            _say(progress, f"reused {cand}")
            return found
        except Rejected as err:
            notes.append(f"{cand} was not used: {err}")
    offline = cache.offline()
    failures: list[SourceFailed] = []
    sess = None
    for i, src in enumerate(rec.sources):
        if src.startswith("hf://"):  # through huggingface_hub: its cache (offline too), resume, mirrors
            try:
                got = hf.download(hf.parse_hub_ref(src), offline=offline, progress=progress)
            except hf.HubError as err:
                if not err.offline_miss:  # offline and not in the HF cache: the offline error says it
                    failures.append(SourceFailed(src, err.message, resumable=not err.missing))
                _fall_through(progress, rec, src, err, rec.sources[i + 1 :], offline)
                continue
            raw.parent.mkdir(parents=True, exist_ok=True)
            cache.link_or_copy(got.path.resolve(), raw)  # the blob (a snapshot entry is a symlink)
            sha = got.sha256
            try:
                return accept(rec, key, raw, sha, origin=src, shapes=shapes, published=got.published)
            except Rejected as err:
                failures.append(SourceFailed(src, f"downloaded file rejected: {err}"))
            continue
        if offline:
            continue
        sess = sess or session()
        try:
            got_http = fetch_source(src, cache.part_path(rec), label=rec.file, progress=progress, sess=sess)
        except SourceFailed as err:
            failures.append(err)
            continue
        cache.part_path(rec).replace(raw)
        try:
            return accept(rec, key, raw, got_http.sha256, origin=src, shapes=shapes)
        except Rejected as err:
            failures.append(SourceFailed(src, f"downloaded file rejected: {err}"))
    if offline:
        raise _offline_error(rec, key, notes + [str(f) for f in failures])
    raise _download_error(rec, key, failures, notes)


def _fall_through(
    progress: bool, rec: WeightsRecord, src: str, err: hf.HubError, rest: tuple[str, ...], offline: bool
) -> None:
    """The one-line note when the Hub does not give a file and another source is tried."""
    nxt = next((s for s in rest if not offline or s.startswith("hf://")), None)
    if nxt is None:
        return
    why = "is not on" if err.missing else "could not be had from"
    _say(
        progress,
        f"[dim]note:[/] {rec.file} {why} the {source_label(src)}; trying {source_label(nxt)}",
    )


def identity_problem(rec: WeightsRecord, size: int, sha: str) -> str | None:
    """Why a file of this size and sha256 is not ``rec``'s (pinned size / hash), or None."""
    if rec.size is not None and size != rec.size:
        return f"size {size} != expected {rec.size}"
    if rec.sha256 and sha != rec.sha256:
        return f"sha256 {sha} != expected {rec.sha256}"
    if rec.sha256_prefix and not sha.startswith(rec.sha256_prefix):
        return f"sha256 {sha[:16]}… does not start with {rec.sha256_prefix} (the hash in its name)"
    return None


def hash_basis(rec: WeightsRecord, published: bool = False) -> str:
    """How a file's identity is known: published (by the Hub, for LFS files), pinned (in the
    registry), prefix (the hash prefix in its name) or first use (trusted and recorded)."""
    if published:
        return "published"
    if rec.sha256:
        return "pinned"
    return "prefix" if rec.sha256_prefix else "first use"


def accept(
    rec: WeightsRecord,
    key: str,
    raw: Path,
    sha: str,
    *,
    origin: str,
    shapes: ShapesFn | None,
    published: bool = False,
) -> Path:
    """Verify ``raw`` (already in our cache), convert a model checkpoint, record it. Raises
    :class:`Rejected` after deleting ``raw``. ``published``: ``sha`` was checked against the
    sha256 the Hub publishes."""
    size = raw.stat().st_size
    problem = identity_problem(rec, size, sha)
    if problem:
        raw.unlink(missing_ok=True)
        raise Rejected(problem)
    entry = {
        "kind": rec.kind,
        "origin": origin,
        "size": size,
        "sha256": sha,
        "hash": hash_basis(rec, published),
    }
    if rec.kind == "aux":
        entry.update(stored=raw.name, stored_sha256=sha, structure_checked=False, **cache.stat_fields(raw))
        cache.record_entry(key, entry)
        return raw
    stored = cache.stored_path(rec)
    expected = shapes(rec) if shapes else None
    try:
        used = structure.convert(
            raw,
            stored,
            kind=rec.kind,
            expected=expected,
            what=registry.display_name(key),
            metadata={"source_sha256": sha},
        )
    except GigatokError as err:
        raw.unlink(missing_ok=True)
        raise Rejected(err.message) from None
    entry.update(
        stored=stored.name,
        stored_sha256=sha256_file(stored),
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
def where_to_get(rec: WeightsRecord) -> str:
    return ", ".join(u for src in rec.sources for u in human_urls(src))


def _offline_error(rec: WeightsRecord, key: str, notes: list[str]) -> GigatokError:
    name = registry.display_name(key)
    extra = f" ({'; '.join(notes)})" if notes else ""
    return GigatokError(
        f"{rec.file} is not in the cache ({cache.weights_dir()}, nor in the Hugging Face cache) and "
        "offline mode is on "
        f"(GIGATOK_OFFLINE / HF_HUB_OFFLINE){extra}; it comes from {where_to_get(rec)}",
        hint=f"on a machine with internet run `gigatok download {name}` and copy "
        f"{cache.stored_path(rec).name} into {cache.weights_dir()}, or download the file by hand "
        f"and run `gigatok cache import FILE --preset {name}`",
    )


def _download_error(
    rec: WeightsRecord, key: str, failures: list[SourceFailed], notes: list[str]
) -> GigatokError:
    """One message naming each source once, and a hint that promises a resume only when a ``.part``
    with bytes in it exists."""
    name = registry.display_name(key)
    by_hand = (
        f"download {rec.file} by hand from {where_to_get(rec)} and run "
        f"`gigatok cache import FILE --preset {name}`"
    )
    what = "; ".join([str(f) for f in failures] + notes)
    part = cache.part_path(rec)
    kept = part.stat().st_size if part.is_file() else 0
    drive = [f for f in failures if f.drive_problem]
    if drive:
        hint = (
            f"open {where_to_get(rec)} in a browser, download {rec.file}, then run "
            f"`gigatok cache import FILE --preset {name}`"
        )
        if any(f.drive_problem == "quota" for f in drive):
            hint += " (or retry in 24 hours: Drive resets the quota daily)"
    elif kept:
        hint = (
            f"check the network and run the command again: the partial download {part} "
            f"({kept} bytes) is resumed; or {by_hand}"
        )
    elif any(f.resumable for f in failures):
        hint = f"check the network and run the command again; or {by_hand}"
    else:
        hint = by_hand
    return GigatokError(f"could not download {rec.file}: {what}", hint=hint)
