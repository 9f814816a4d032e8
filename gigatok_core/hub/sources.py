"""Where a file can come from: source URLs (``gdrive://``, ``https://``; ``hf://`` sources go through
:mod:`gigatok_core.hub.hf`) and torch hub's cache, which may already hold an aux file
(``{TORCH_HOME or $XDG_CACHE_HOME/torch or ~/.cache/torch}/hub/checkpoints/<file>``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import requests

from gigatok_core.hub.gdrive import DriveRefused, fetch_drive, view_url
from gigatok_core.hub.hf import parse_hub_ref
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
def human_urls(src: str) -> list[str]:
    """URLs to show a person (where to download the file by hand)."""
    if src.startswith("gdrive://"):
        return [view_url(src.removeprefix("gdrive://"))]
    if src.startswith("hf://"):
        return [parse_hub_ref(src).url]
    return [src]


def source_label(src: str) -> str:
    """What a source is called in messages and ``gigatok cache list``: hub, drive or the host."""
    if src.startswith("hf://"):
        return f"Hugging Face Hub ({parse_hub_ref(src).repo})"
    if src.startswith("gdrive://"):
        return "Google Drive"
    return urlsplit(src).netloc or src


# ---------------------------------------------------------------------------------------------
# Other libraries' caches (the Hugging Face cache is read by huggingface_hub itself)
# ---------------------------------------------------------------------------------------------
def torch_hub_dir() -> Path:
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "torch"


def local_candidates(rec: WeightsRecord) -> list[Path]:
    """Files of other caches that may be ``rec`` (to be verified before use): torch hub's."""
    torch_file = torch_hub_dir() / "hub" / "checkpoints" / rec.file
    return [torch_file] if torch_file.is_file() else []


# ---------------------------------------------------------------------------------------------
# Fetching one source into a .part file
# ---------------------------------------------------------------------------------------------
def fetch_source(src: str, part: Path, *, label: str, progress: bool, sess: requests.Session) -> Transfer:
    """Download a ``gdrive://`` or ``https://`` source into ``part``; raises :class:`SourceFailed`."""
    try:
        if src.startswith("gdrive://"):
            return fetch_drive(src.removeprefix("gdrive://"), part, label=label, progress=progress, sess=sess)
        return download(src, part, label=label, progress=progress, sess=sess)
    except DriveRefused as err:
        raise SourceFailed(src, str(err), drive_problem=err.problem) from None
    except HtmlPage as page:
        raise SourceFailed(src, f"got a web page (HTTP {page.status}) instead of the file") from None
    except TransferError as err:
        raise SourceFailed(src, str(err), resumable=err.retryable) from None
    except requests.RequestException as err:
        raise SourceFailed(src, f"{type(err).__name__}: {err}", resumable=True) from None
