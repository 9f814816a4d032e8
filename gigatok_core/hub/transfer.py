"""HTTP transfer of one URL into a ``.part`` file: streaming, resume, retries, a progress bar.

- An existing ``.part`` is continued with ``Range: bytes=<size>-``. A ``206`` whose
  ``Content-Range`` starts there is appended; a ``200`` (server ignored the Range) or a ``206``
  starting elsewhere restarts from zero; a ``416`` whose ``Content-Range: bytes */N`` says the
  file has exactly the ``.part``'s size means it is complete; any other ``416`` restarts.
- A dropped connection (short body, reset, timeout) or a 429/5xx is retried with resume, a few
  times with backoff; after that the ``.part`` stays for the next call to resume.
- An HTML response is never written: it is returned to the caller as :class:`HtmlPage` (Google
  Drive answers with a confirmation or an error page instead of the file).
- The sha256 is computed while streaming (the kept prefix of a resumed ``.part`` is hashed first).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from gigatok_core.utils.fileio import CHUNK, sha256_file

TIMEOUT = (15, 60)  # (connect, read) seconds
RETRIES = 4
RETRY_STATUS = (429, 500, 502, 503, 504)
HTML_LIMIT = 2 << 20  # read at most 2 MiB of an HTML page
STREAM_CHUNK = 256 << 10  # bytes received before a dropped connection are kept up to this granularity
USER_AGENT = "gigatok-vision (+https://github.com/SilentView/GigaTok)"


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transfer:
    url: str
    size: int
    sha256: str


class HtmlPage(Exception):
    """The server sent a web page instead of the file (nothing was written)."""

    def __init__(self, url: str, status: int, text: str) -> None:
        super().__init__(f"{url} answered with an HTML page (HTTP {status})")
        self.url, self.status, self.text = url, status, text


class TransferError(Exception):
    """The URL could not be fetched; ``retryable`` when a later attempt may succeed (``.part`` kept).

    The message is the reason only: the caller names the source (so the URL is printed once)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status, self.retryable = status, retryable


class _Short(Exception):
    pass


def session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


# ---------------------------------------------------------------------------------------------
# One URL -> .part
# ---------------------------------------------------------------------------------------------
def download(
    url: str,
    part: Path,
    *,
    label: str,
    progress: bool = True,
    sess: requests.Session | None = None,
    retries: int = RETRIES,
    backoff: float = 0.5,
) -> Transfer:
    """Stream ``url`` into ``part`` (resuming what is there). Raises :class:`HtmlPage` or
    :class:`TransferError`; on success ``part`` holds exactly the file."""
    sess = sess or session()
    part.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            return _attempt(url, part, label=label, progress=progress, sess=sess)
        except TransferError as err:
            if not err.retryable:
                raise
            last = err
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            _Short,
        ) as err:
            last = err
    raise TransferError(f"gave up after {retries + 1} attempts ({_describe(last)})", retryable=True)


def _attempt(url: str, part: Path, *, label: str, progress: bool, sess: requests.Session) -> Transfer:
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with sess.get(url, headers=headers, stream=True, timeout=TIMEOUT) as resp:
        if resp.status_code == 416 and offset:
            m = re.match(r"bytes\s+\*/(\d+)", resp.headers.get("Content-Range", "").strip())
            if (
                m and int(m.group(1)) == offset
            ):  # the .part is already the whole file (killed before the rename)
                return Transfer(url=resp.url, size=offset, sha256=sha256_file(part))
            part.unlink()  # our .part is not a prefix the server knows: restart
            raise TransferError("range not satisfiable, restarting", status=416, retryable=True)
        if resp.status_code in RETRY_STATUS:
            raise TransferError(f"HTTP {resp.status_code}", status=resp.status_code, retryable=True)
        if "text/html" in resp.headers.get("Content-Type", "").lower():
            raise HtmlPage(resp.url, resp.status_code, _read_text(resp))
        if resp.status_code >= 400:
            raise TransferError(f"HTTP {resp.status_code} {resp.reason}", status=resp.status_code)

        total: int | None
        if resp.status_code == 206:
            start, total = _content_range(resp.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink(missing_ok=True)
                raise TransferError(f"resumed at byte {start}, not {offset}; restarting", retryable=True)
        else:  # 200: the whole file (a server that ignores Range restarts us from zero)
            offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None

        h = _prefix_hash(part) if offset else hashlib.sha256()
        size = offset
        with open(part, "ab" if offset else "wb") as f, _Bar(label, total, offset, progress) as bar:
            for chunk in resp.iter_content(STREAM_CHUNK):
                f.write(chunk)
                h.update(chunk)
                size += len(chunk)
                bar.advance(len(chunk))
        if total is not None and size != total:
            raise _Short(f"connection closed after {size} of {total} bytes")
        return Transfer(url=resp.url, size=size, sha256=h.hexdigest())


def _prefix_hash(path: Path) -> Any:
    """The sha256 object fed with a kept ``.part`` (the resumed bytes continue it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h


def _describe(err: Exception | None) -> str:
    """Why a connection failed, without the URL (requests' messages repeat host and path)."""
    inner = err.args[0] if isinstance(err, requests.RequestException) and err.args else err
    reason = getattr(inner, "reason", None) or inner  # urllib3's MaxRetryError -> NewConnectionError
    text = re.sub(r"^\w+\(host='[^']*', port=\d+\): ", "", str(reason))  # "HTTPConnection(host=..)"
    return text or type(err).__name__


def _content_range(value: str) -> tuple[int, int | None]:
    m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", value.strip())
    if not m:
        return -1, None
    return int(m.group(1)), (int(m.group(3)) if m.group(3) != "*" else None)


def _read_text(resp: requests.Response) -> str:
    data = b""
    for chunk in resp.iter_content(64 << 10):
        data += chunk
        if len(data) >= HTML_LIMIT:
            break
    return data.decode(resp.encoding or "utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Progress bar (rich, on stderr; a no-op when progress=False)
# ---------------------------------------------------------------------------------------------
class _Bar:
    def __init__(self, label: str, total: int | None, done: int, enabled: bool) -> None:
        self.label, self.total, self.done, self.enabled = label, total, done, enabled

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, completed=self.done)
        return self

    def advance(self, n: int) -> None:
        if self.enabled:
            self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()
