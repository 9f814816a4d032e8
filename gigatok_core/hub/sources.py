"""Where a file can come from: source URLs (``gdrive://``, ``hf://``, ``https://``) and the caches of
other libraries that may already hold it (Hugging Face hub, torch hub).

- ``hf://org/repo/path/in/repo@rev`` -> ``{HF_ENDPOINT or https://huggingface.co}/org/repo/resolve/rev/path``
  (``rev`` defaults to ``main``); its Hugging Face cache copy is
  ``{HF_HUB_CACHE or HF_HOME/hub or ~/.cache/huggingface/hub}/models--org--repo/snapshots/<commit>/path``.
- torch hub keeps downloads in ``{TORCH_HOME or $XDG_CACHE_HOME/torch or ~/.cache/torch}/hub/checkpoints/<file>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import requests

from gigatok_core.hub.gdrive import DriveRefused, fetch_drive, view_url
from gigatok_core.hub.transfer import HtmlPage, Transfer, TransferError, download
from gigatok_core.registry import WeightsRecord


class SourceFailed(Exception):
    """One source did not give the file; ``drive_problem`` is set for a refused Drive download."""

    def __init__(
        self, source: str, reason: str, *, drive_problem: str | None = None, resumable: bool = False
    ):
        super().__init__(f"{source}: {reason}")
        self.source, self.reason, self.drive_problem, self.resumable = (
            source,
            reason,
            drive_problem,
            resumable,
        )


# ---------------------------------------------------------------------------------------------
# Source strings
# ---------------------------------------------------------------------------------------------
def parse_hf(src: str) -> tuple[str, str, str]:
    """``hf://org/repo/path@rev`` -> (``org/repo``, ``path``, ``rev``)."""
    body = src.removeprefix("hf://")
    body, _, rev = body.rpartition("@") if "@" in body else (body, "", "main")
    parts = body.split("/")
    assert len(parts) >= 3, f"bad hf source {src!r}: want hf://org/repo/path[@rev]"
    return "/".join(parts[:2]), "/".join(parts[2:]), rev or "main"


def hf_url(src: str) -> str:
    repo, path, rev = parse_hf(src)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/{repo}/resolve/{rev}/{path}"


def human_urls(src: str) -> list[str]:
    """URLs to show a person (where to download the file by hand)."""
    if src.startswith("gdrive://"):
        return [view_url(src.removeprefix("gdrive://"))]
    if src.startswith("hf://"):
        return [hf_url(src)]
    return [src]


# ---------------------------------------------------------------------------------------------
# Other libraries' caches
# ---------------------------------------------------------------------------------------------
def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def torch_hub_dir() -> Path:
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "torch"


def local_candidates(rec: WeightsRecord) -> list[Path]:
    """Files of other caches that may be ``rec`` (to be verified before use)."""
    found: list[Path] = []
    for src in rec.sources:
        if not src.startswith("hf://"):
            continue
        repo, path, rev = parse_hf(src)
        root = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
        commit = rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None
        ref = root / "refs" / rev
        if commit is None and ref.is_file():
            commit = ref.read_text().strip()
        snaps = [root / "snapshots" / commit] if commit else []
        if (root / "snapshots").is_dir():
            snaps += sorted((root / "snapshots").iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        found += [s / path for s in snaps if (s / path).is_file()]
    torch_file = torch_hub_dir() / "hub" / "checkpoints" / rec.file
    if torch_file.is_file():
        found.append(torch_file)
    unique: list[Path] = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


# ---------------------------------------------------------------------------------------------
# Fetching one source into a .part file
# ---------------------------------------------------------------------------------------------
def fetch_source(src: str, part: Path, *, label: str, progress: bool, sess: requests.Session) -> Transfer:
    """Download ``src`` into ``part``; raises :class:`SourceFailed`."""
    try:
        if src.startswith("gdrive://"):
            return fetch_drive(src.removeprefix("gdrive://"), part, label=label, progress=progress, sess=sess)
        url = hf_url(src) if src.startswith("hf://") else src
        return download(url, part, label=label, progress=progress, sess=sess)
    except DriveRefused as err:
        raise SourceFailed(src, str(err), drive_problem=err.problem) from None
    except HtmlPage as page:
        raise SourceFailed(src, f"got a web page (HTTP {page.status}) instead of the file") from None
    except TransferError as err:
        raise SourceFailed(src, str(err), resumable=err.retryable) from None
    except requests.RequestException as err:
        raise SourceFailed(src, f"{type(err).__name__}: {err}", resumable=True) from None
