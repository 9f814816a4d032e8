"""Google Drive downloads: the large-file confirmation flow and its error pages.

For a file too large to be virus-scanned, Drive answers the download URL with an HTML page whose
``<form id="download-form">`` holds the real download URL (``action``) and hidden inputs
(``id``, ``export``, ``confirm``, ``uuid``); submitting it (a GET) streams the file. Older
``drive.google.com/uc`` pages give a ``<a id="uc-download-link" href="...confirm=...">`` instead.
Other pages are errors: the daily quota ("Too many users have viewed or downloaded this file
recently"), no permission (a sign-in or "request access" page), or a missing file. Those pages are
classified here and never saved as a file.

``GIGATOK_GDRIVE_URL`` replaces both Drive hosts (the tests point it at a local server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from gigatok_core.hub.transfer import HtmlPage, Transfer, TransferError, download

USERCONTENT = "https://drive.usercontent.google.com"
LEGACY = "https://drive.google.com"


def drive_urls(file_id: str) -> list[str]:
    """The download URLs tried in order (the usercontent host, then the legacy ``uc`` endpoint)."""
    base = os.environ.get("GIGATOK_GDRIVE_URL", "").rstrip("/")
    first, second = (base, base) if base else (USERCONTENT, LEGACY)
    return [
        f"{first}/download?{urlencode({'id': file_id, 'export': 'download', 'confirm': 't'})}",
        f"{second}/uc?{urlencode({'export': 'download', 'id': file_id})}",
    ]


def view_url(file_id: str) -> str:
    """The page a person opens in a browser to download the file by hand."""
    return f"https://drive.google.com/file/d/{file_id}/view"


# ---------------------------------------------------------------------------------------------
# Page parsing
# ---------------------------------------------------------------------------------------------
class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []  # {"id", "action", "inputs": {name: value}}
        self.links: list[tuple[str, str]] = []  # (id, href)
        self.text: list[str] = []
        self._form: dict | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = {"id": a.get("id", ""), "action": a.get("action", ""), "inputs": {}}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            if a.get("type", "text").lower() not in ("submit", "button", "image", "reset"):
                self._form["inputs"][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append((a.get("id", ""), a["href"]))
        elif tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.text.append(data.strip())


@dataclass
class DrivePage:
    """What a Drive HTML answer means: a ``download_url`` to follow, or a ``problem``."""

    download_url: str | None = None
    problem: str = "unknown"  # quota | permission | missing | unknown
    detail: str = ""
    inputs: dict[str, str] = field(default_factory=dict)


_QUOTA = ("quota exceeded", "too many users have viewed or downloaded", "download quota")
_PERMISSION = ("you need access", "request access", "need permission", "sign in", "access denied")
_MISSING = ("not found", "does not exist", "file is in the trash", "no longer available")


def parse_drive_page(html: str, base_url: str, status: int = 200) -> DrivePage:
    """Classify a Drive HTML page; for a confirmation page build the URL its form submits."""
    p = _PageParser()
    p.feed(html)
    p.close()
    for form in p.forms:
        action = form["action"]
        if (
            form["id"] == "download-form"
            or "export=download" in action
            or action.rstrip("/").endswith("/download")
        ):
            parts = urlsplit(urljoin(base_url, action))
            query = dict(parse_qsl(parts.query)) | form["inputs"]
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
            return DrivePage(download_url=url, problem="", inputs=dict(form["inputs"]))
    for link_id, href in p.links:
        if link_id == "uc-download-link" or ("export=download" in href and "confirm=" in href):
            return DrivePage(download_url=urljoin(base_url, href), problem="")
    text = " ".join(p.text)
    low = text.lower()
    detail = text[:300]
    if any(s in low for s in _QUOTA):
        return DrivePage(problem="quota", detail=detail)
    if status in (401, 403) or any(s in low for s in _PERMISSION) or "accounts.google.com" in html:
        return DrivePage(problem="permission", detail=detail)
    if status == 404 or any(s in low for s in _MISSING):
        return DrivePage(problem="missing", detail=detail)
    return DrivePage(problem="unknown", detail=detail)


# ---------------------------------------------------------------------------------------------
# The flow
# ---------------------------------------------------------------------------------------------
class DriveRefused(Exception):
    """Drive answered every URL with a page that is not the file."""

    def __init__(self, file_id: str, pages: list[DrivePage]) -> None:
        order = ("quota", "permission", "missing", "unknown")
        problems = [pg.problem if pg.problem in order else "unknown" for pg in pages]
        self.problem = min(problems, key=order.index) if problems else "unknown"
        what = {
            "quota": "the file's download quota is exceeded (too many users downloaded it recently)",
            "permission": "the file is not shared publicly (Drive asks to sign in or request access)",
            "missing": "the file does not exist any more",
            "unknown": "Drive answered with an unexpected web page",
        }[self.problem]
        super().__init__(f"Google Drive refused {view_url(file_id)}: {what}")
        self.file_id = file_id


def fetch_drive(file_id: str, part: Path, *, label: str, progress: bool, sess: requests.Session) -> Transfer:
    """Download a Drive file into ``part``. Raises :class:`DriveRefused` or ``TransferError``."""
    pages: list[DrivePage] = []
    errors: list[TransferError] = []
    for url in drive_urls(file_id):
        try:
            return download(url, part, label=label, progress=progress, sess=sess)
        except HtmlPage as page:
            info = parse_drive_page(page.text, page.url, page.status)
        except TransferError as err:
            if err.status in (401, 403, 404):
                pages.append(
                    DrivePage(problem="missing" if err.status == 404 else "permission", detail=str(err))
                )
            else:
                errors.append(err)
            continue
        if info.download_url is None:
            pages.append(info)
            continue
        try:
            return download(info.download_url, part, label=label, progress=progress, sess=sess)
        except HtmlPage as page:  # e.g. the quota page after confirming
            again = parse_drive_page(page.text, page.url, page.status)
            # a second confirmation page (expired token, cookies refused) is a refusal too
            pages.append(again if again.problem else DrivePage(problem="unknown", detail="confirmation loop"))
        except TransferError as err:
            errors.append(err)
    if pages:
        raise DriveRefused(file_id, pages)
    raise errors[-1] if errors else TransferError(f"no Drive URL answered for {file_id}")
