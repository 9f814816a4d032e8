"""Files from the Hugging Face Hub, through ``huggingface_hub`` (its cache, resume, mirrors, tokens).

Two uses:

- registry sources ``hf://OWNER/REPO/path/in/repo[@REVISION]`` (the official GigaTok files on
  ``YuuTennYi/GigaTok``), fetched by :mod:`gigatok_core.hub.fetch` before the Drive fallback;
- weights references a person types wherever weights are taken (``--checkpoint``,
  ``--gpt-checkpoint``, ``--tokenizer-checkpoint``, ``--init``, ``load_tokenizer``, ``load_gpt``):
  ``hf://OWNER/REPO[@REVISION]`` (the repo's ``model.safetensors``, as ``gigatok train export
  --to-hub`` writes it) or ``hf://OWNER/REPO/file.safetensors[@REVISION]``;
  :func:`resolve_hub_ref` turns one into a verified local file.

The client reads ``HF_HOME`` / ``HF_HUB_CACHE`` (the shared cache), ``HF_ENDPOINT`` (mirrors),
``HF_TOKEN`` or a ``hf auth login`` token (private repos); ``HF_HUB_OFFLINE=1`` or
``GIGATOK_OFFLINE=1`` use the cache only. These are read on every call (the library reads some of
them once, at import).

Integrity: for a file stored with Git LFS the Hub publishes its sha256 (the ``X-Linked-Etag`` of a
``resolve`` answer; the blob's name in the cache). Every file is hashed once after download and
compared with it; a mismatch deletes the cached copy and is refused. A verified blob is recorded
(size, mtime, sha256) in our cache manifest, so later uses do not hash multi-GB files again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from gigatok_core.config.source import is_hub_ref
from gigatok_core.errors import GigatokError
from gigatok_core.utils.fileio import sha256_file

SCHEME = "hf://"
DEFAULT_FILE = "model.safetensors"  # what `gigatok train export --to-hub` writes
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class HubRef:
    """One file of a Hub model repository."""

    repo: str  # OWNER/NAME
    filename: str
    revision: str | None = None  # None: the default branch (main)

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo}/{self.filename}{rev}"

    @property
    def url(self) -> str:
        return f"{endpoint()}/{self.repo}/resolve/{self.revision or 'main'}/{self.filename}"


class HubError(GigatokError):
    """A Hub file could not be had; ``missing`` when the Hub answered that it does not exist."""

    def __init__(
        self, message: str, *, hint: str | None = None, missing: bool = False, offline_miss: bool = False
    ) -> None:
        super().__init__(message, hint=hint)
        self.missing, self.offline_miss = missing, offline_miss


# ---------------------------------------------------------------------------------------------
# Settings read on each call
# ---------------------------------------------------------------------------------------------
def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_cache() -> Path:
    """The shared Hugging Face cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ~/.cache)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


# ---------------------------------------------------------------------------------------------
# Parsing references
# ---------------------------------------------------------------------------------------------
def parse_hub_ref(ref: str | os.PathLike[str], *, default_file: str = DEFAULT_FILE) -> HubRef:
    """``hf://OWNER/REPO[/path/in/repo][@REVISION]`` -> :class:`HubRef` (a bare repo means
    ``default_file``). Raises :class:`GigatokError` for a malformed id."""
    text = str(ref)
    body = re.sub(r"^hf:/+", "", text)
    body, _, revision = body.partition("@")
    parts = [p for p in body.split("/")]
    bad = len(parts) < 2 or not all(parts) or not all(_NAME.fullmatch(p) for p in parts[:2])
    if bad or (_ and not revision):
        raise GigatokError(
            f"{text!r} is not a Hugging Face Hub reference",
            hint="write hf://OWNER/REPO, hf://OWNER/REPO@REVISION or hf://OWNER/REPO/file.safetensors",
        )
    return HubRef("/".join(parts[:2]), "/".join(parts[2:]) or default_file, revision or None)


# ---------------------------------------------------------------------------------------------
# Download + verification
# ---------------------------------------------------------------------------------------------
def published_sha256(path: Path) -> str | None:
    """The sha256 the Hub published for a file of its cache: an LFS file's blob is named by it
    (a file kept in git proper is named by its git hash, which is not a sha256 of the bytes)."""
    name = Path(os.path.realpath(path)).name
    return name if _SHA256.fullmatch(name) else None


@dataclass(frozen=True)
class HubFile:
    path: Path  # in the shared Hugging Face cache
    sha256: str  # of its bytes (checked against the published one when there is one)
    published: bool  # the Hub published that sha256 (an LFS file); else trusted on first use


def download(ref: HubRef, *, offline: bool | None = None, progress: bool = True) -> HubFile:
    """``ref``'s verified local file, from the shared cache or downloaded.

    Raises :class:`HubError` with one clear message for a missing repo, file or revision, a private
    repo without access, a network failure, offline mode without a cached copy, or a hash mismatch
    (the bad copy is removed from the cache first)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    from gigatok_core.hub import cache

    offline = cache.offline() if offline is None else offline
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        local = Path(
            hf_hub_download(
                ref.repo,
                ref.filename,
                revision=ref.revision,
                cache_dir=hub_cache(),
                endpoint=endpoint(),
                local_files_only=offline,
            )
        )
    except Exception as err:
        raise _explain(err, ref, offline) from None
    published = published_sha256(local)
    return HubFile(local, _verify(local, ref, published), published is not None)


def _verify(local: Path, ref: HubRef, published: str | None) -> str:
    from gigatok_core.hub import cache

    blob = Path(os.path.realpath(local))
    st = blob.stat()
    seen = cache.verified_blob(str(blob))
    if seen and (seen.get("size"), seen.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
        sha = seen["sha256"]
    else:
        sha = sha256_file(blob)
    if published is not None and sha != published:
        for p in {local, blob}:
            p.unlink(missing_ok=True)  # never leave a bad copy where the next call would reuse it
        cache.forget_blob(str(blob))
        raise HubError(
            f"{ref} failed verification: its sha256 is {sha[:16]}…, the Hub publishes {published[:16]}… "
            "(the copy was deleted)",
            hint="run the command again to download it afresh; if it fails again, the mirror "
            f"({endpoint()}) serves a different file than it lists",
        )
    cache.record_blob(str(blob), size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha)
    return sha


def _explain(err: Exception, ref: HubRef, offline: bool) -> HubError:
    """One message per failure kind (no traceback, no library jargon)."""
    from huggingface_hub import errors

    token = _has_token()
    where = f"{ref.repo} on {endpoint()}"
    if isinstance(err, errors.GatedRepoError):
        return HubError(
            f"{where} is gated: its owners must grant access before it can be downloaded",
            hint=f"request access on {endpoint()}/{ref.repo} and set HF_TOKEN (or `hf auth login`)",
        )
    if isinstance(err, errors.RepositoryNotFoundError):
        return HubError(
            f"the repository {where} does not exist, or it is private and "
            + ("your token cannot read it" if token else "no token was given"),
            hint="check the name (hf://OWNER/REPO); for a private repo set HF_TOKEN or run `hf auth login`",
            missing=True,
        )
    if isinstance(err, errors.RevisionNotFoundError):
        return HubError(
            f"{where} has no revision {ref.revision!r}",
            hint=f"use a branch, tag or commit of the repo (see {endpoint()}/{ref.repo}/tree/main), "
            "or drop @REVISION for main",
            missing=True,
        )
    if isinstance(
        err, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)
    ):  # before EntryNotFound: a subclass
        if offline:
            return HubError(
                f"{ref} is not in the Hugging Face cache ({hub_cache()}) and offline mode is on "
                "(GIGATOK_OFFLINE / HF_HUB_OFFLINE)",
                hint="run once with network access (unset the offline variables) to fill the cache",
                offline_miss=True,
            )
        return HubError(
            f"could not reach {endpoint()} for {ref} and it is not in the Hugging Face cache",
            hint="check the network (or HF_ENDPOINT) and run the command again",
        )
    if isinstance(err, errors.EntryNotFoundError):
        return HubError(
            f"{where} has no file {ref.filename!r}" + (f" at {ref.revision}" if ref.revision else ""),
            hint=f"see the files on {endpoint()}/{ref.repo}/tree/{ref.revision or 'main'}; name one "
            f"with hf://{ref.repo}/FILE",
            missing=True,
        )
    if isinstance(err, errors.HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        return HubError(
            f"{endpoint()} answered HTTP {status} for {ref}",
            hint="the Hub may be down: try again later, or set HF_ENDPOINT to a mirror",
        )
    if isinstance(err, (OSError, ValueError)):  # e.g. size check of a truncated download, disk full
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        return HubError(f"downloading {ref} failed: {first}", hint="run the command again")
    return HubError(f"downloading {ref} failed: {type(err).__name__}: {err}", hint="run the command again")


def _has_token() -> bool:
    try:
        from huggingface_hub import get_token

        return get_token() is not None
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------
# The one resolver for weights references
# ---------------------------------------------------------------------------------------------
def resolve_hub_ref(ref: object, *, progress: bool = True) -> Path | None:
    """The local file for a Hub weights reference, or None when ``ref`` is not one (a local path,
    a preset name, None): callers use ``resolve_hub_ref(x) or x``.

    ``hf://OWNER/REPO[@REV]`` gives the repo's ``model.safetensors``;
    ``hf://OWNER/REPO/file.safetensors[@REV]`` that file. Downloaded through the shared Hugging Face
    cache and verified (:func:`download`)."""
    if ref is None or not is_hub_ref(ref):
        return None
    return download(parse_hub_ref(ref), progress=progress).path
