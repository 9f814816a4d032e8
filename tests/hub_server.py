"""A local HTTP server for the hub tests (127.0.0.1, a thread, stops itself after a deadline).

Routes map a path to a :class:`Route`: bytes served with Range support, optionally throttled,
dropping the connection once after ``drop_after`` bytes, or ignoring Range; or an HTML page.
Every request is logged as (path, query, Range header) so tests can count transfers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Route:
    body: bytes = b""
    html: str | None = None  # serve this page (text/html) instead of body
    status: int = 200
    drop_after: int | None = None  # close the connection after this many bytes (once)
    ignore_range: bool = False
    delay: float = 0.0  # seconds between 64 KiB chunks
    require: dict[str, str] = field(default_factory=dict)  # query params that must be present


class FileServer:
    def __init__(self, lifetime: float = 60.0) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, dict[str, str], str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                rng = self.headers.get("Range")
                server.log.append((parts.path, query, rng))
                route = server.routes.get(parts.path)
                if route is None or any(query.get(k) != v for k, v in route.require.items()):
                    self.send_error(404)
                    return
                if route.html is not None:
                    data = route.html.encode()
                    self.send_response(route.status)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                server._serve_bytes(self, route, rng)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._deadline = threading.Timer(lifetime, self.httpd.shutdown)
        self._deadline.daemon = True

    def _serve_bytes(self, h: BaseHTTPRequestHandler, route: Route, rng: str | None) -> None:
        body, start = route.body, 0
        if rng and not route.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(body)}")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            h.send_response(route.status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body) - start))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        sent, pos = 0, start
        while pos < len(body):
            chunk = body[pos : pos + (64 << 10)]
            if route.drop_after is not None and sent + len(chunk) > route.drop_after:
                h.wfile.write(chunk[: route.drop_after - sent])
                h.wfile.flush()
                route.drop_after = None  # only once
                h.close_connection = True
                return
            h.wfile.write(chunk)
            sent += len(chunk)
            pos += len(chunk)
            if route.delay:
                time.sleep(route.delay)

    def transfers(self, path: str) -> list[str | None]:
        """The Range headers of the requests for ``path`` (one item per request)."""
        return [rng for p, _, rng in self.log if p == path]

    def __enter__(self) -> FileServer:
        self._thread.start()
        self._deadline.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._deadline.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()


def drive_warning_page(file_id: str, action: str) -> str:
    """The shape of Drive's "can't scan this file for viruses" page (a form with hidden inputs)."""
    return f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>
<style>.x{{color:red}}</style><script>var a = "<form>";</script></head><body>
<div class="uc-main"><p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<p>big.pt (1.2G) is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="1234-abcd">
</form></div></body></html>"""


QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<div class="uc-main"><p class="uc-error-caption">Sorry, you can't view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try
accessing the file again later. If the file you are trying to access is particularly large or is shared
with many people, it may take up to 24 hours to be able to view or download the file.</p></div></body></html>"""


def fetch_worker(rec: object, barrier: object, results: object) -> None:
    """multiprocessing target: wait for the others, fetch, report (path, bytes)."""
    from gigatok_core.hub import fetch_record

    barrier.wait(timeout=60)  # type: ignore[attr-defined]
    path = fetch_record(rec, progress=False)  # type: ignore[arg-type]
    results.put((str(path), path.read_bytes()))  # type: ignore[attr-defined]


def fake_checkpoint(kind: str = "tokenizer", *, scale: int = 1) -> tuple[bytes, dict, dict]:
    """An official-style checkpoint (bytes), its ``model`` and ``ema`` entries.

    Keys carry the ``module.`` prefix and the file pickles an ``argparse.Namespace`` like the
    official trainers. ``scale`` changes the shapes (a checkpoint of "another preset")."""
    import argparse
    import io

    import torch

    g = torch.Generator().manual_seed(1)
    model = {
        "enc.weight": torch.randn(4 * scale, 3, generator=g),
        "enc.bias": torch.randn(4 * scale, generator=g),
        "codebook": torch.randn(16, 8, generator=g),
    }
    ema = {k: v + 1 for k, v in model.items()}
    ckpt = {
        "model": {f"module.{k}": v for k, v in model.items()},
        "ema": ema,
        "steps": 5,
        "optimizer": {"state": {}},
        "args": argparse.Namespace(lr=1e-4),
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue(), model, ema


FAKE_SHAPES = {"enc.weight": (4, 3), "enc.bias": (4,), "codebook": (16, 8)}
