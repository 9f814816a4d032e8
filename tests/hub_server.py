"""A local HTTP server for the hub tests (127.0.0.1, a thread, stops itself after a deadline).

Routes map a path to a :class:`Route`: bytes served with Range support, optionally throttled,
dropping the connection once after ``drop_after`` bytes, or ignoring Range; or an HTML page.
Every GET is logged as (path, query, Range header) so tests can count transfers, and every request
as (method, path) in ``calls``.

It also speaks the part of the Hugging Face Hub protocol that ``huggingface_hub`` uses (point
``HF_ENDPOINT`` at it), for the repositories in ``hub`` (:class:`HubRepo`):

- ``HEAD``/``GET /{owner}/{name}/resolve/{revision}/{path}``: ``X-Repo-Commit``, ``ETag``, and for
  LFS files (weights) ``X-Linked-Etag`` = the sha256 and ``X-Linked-Size``; errors as the Hub
  sends them (``X-Error-Code``: ``RepoNotFound`` with 401 for a missing or private repo without
  the token, ``RevisionNotFound``, ``EntryNotFound`` with 404);
- uploads: ``POST /api/repos/create``, ``/api/validate-yaml`` (a model card's front matter),
  ``/api/models/{repo}/preupload/{rev}`` (every file
  "regular", so its bytes travel base64 in the commit), ``/api/models/{repo}/commit/{rev}``
  (NDJSON) and ``/api/models/{repo}/branch/{branch}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")


@dataclass
class HubRepo:
    """A model repository: ``branches[name] = {path: bytes}``; ``tampered`` paths are served with
    one byte changed while the published sha256 stays the original's."""

    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    private: bool = False
    token: str | None = None  # the token that may read (and write) it
    tampered: set[str] = field(default_factory=set)
    commits: dict[str, str] = field(default_factory=dict)  # branch -> commit id
    down: bool = False  # answer 503 (a Hub outage)

    def commit_of(self, rev: str) -> str | None:
        """The commit a revision (branch or commit id) names, or None."""
        if rev in self.branches:
            return self.commits.setdefault(rev, hashlib.sha1(f"{rev}-0".encode()).hexdigest())
        return rev if rev in self.commits.values() else None

    def files_at(self, rev: str) -> dict[str, bytes]:
        if rev in self.branches:
            return self.branches[rev]
        return next(self.branches[b] for b, c in self.commits.items() if c == rev)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


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
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request
        self.hub: dict[str, HubRepo] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                server.calls.append(("HEAD", urlsplit(self.path).path))
                if not server._hub_file(self, head=True):
                    self.send_error(404)

            def do_POST(self) -> None:
                server.calls.append(("POST", urlsplit(self.path).path))
                server._hub_post(self)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                rng = self.headers.get("Range")
                server.log.append((parts.path, query, rng))
                server.calls.append(("GET", parts.path))
                if server._hub_file(self, head=False):
                    return
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

    # -----------------------------------------------------------------------------------------
    # The Hub protocol
    # -----------------------------------------------------------------------------------------
    def _hub_error(
        self, h: BaseHTTPRequestHandler, status: int, code: str, commit: str | None = None
    ) -> None:
        body = json.dumps({"error": code}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _authorized(self, h: BaseHTTPRequestHandler, repo: HubRepo) -> bool:
        return not repo.private or h.headers.get("Authorization") == f"Bearer {repo.token}"

    def _hub_file(self, h: BaseHTTPRequestHandler, *, head: bool) -> bool:
        """Serve ``/{owner}/{name}/resolve/{rev}/{path}`` of a hub repo; False when not such a URL."""
        parts = urlsplit(h.path).path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return False
        repo_id, rev, path = "/".join(parts[:2]), unquote(parts[3]), unquote("/".join(parts[4:]))
        repo = self.hub.get(repo_id)
        if repo is not None and repo.down:
            self._hub_error(h, 503, "ServiceUnavailable")
            return True
        if repo is None or not self._authorized(h, repo):
            self._hub_error(h, 401, "RepoNotFound")
            return True
        commit = repo.commit_of(rev)
        if commit is None:
            self._hub_error(h, 404, "RevisionNotFound")
            return True
        files = repo.files_at(rev)
        if path not in files:
            self._hub_error(h, 404, "EntryNotFound", commit)
            return True
        data = files[path]
        lfs = path.endswith(LFS_SUFFIXES)
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        if path in repo.tampered:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        rng = h.headers.get("Range")
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng and not head else 0
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", commit)
        h.send_header("ETag", f'"{etag}"')
        if lfs:
            h.send_header("X-Linked-Etag", f'"{etag}"')
            h.send_header("X-Linked-Size", str(len(data)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        if not head:
            h.wfile.write(data[start:])
        return True

    def _hub_post(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        auth = h.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

        def answer(status: int, obj: object) -> None:
            data = json.dumps(obj).encode()
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        if token is None:
            answer(401, {"error": "Invalid username or password."})
            return
        if path == "/api/validate-yaml":  # the model card's front matter, checked before a commit
            import yaml

            content = json.loads(body)["content"]
            head = content.split("---")[1] if content.startswith("---") else ""
            try:
                ok = isinstance(yaml.safe_load(head) or {}, dict)
            except yaml.YAMLError:
                ok = False
            answer(200 if ok else 400, {"errors": [] if ok else [{"message": "bad YAML"}], "warnings": []})
            return
        if path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req.get('organization') or 'me'}/{req['name']}"
            if repo_id in self.hub:
                answer(409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})
                return
            private = bool(req.get("private")) or req.get("visibility") == "private"  # older / newer clients
            self.hub[repo_id] = HubRepo(private=private, token=token)
            answer(200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id})
            return
        parts = path.split("/")  # /api/models/{owner}/{name}/{op}/{rev...}
        if len(parts) < 7 or parts[:3] != ["", "api", "models"]:
            answer(404, {"error": "not found"})
            return
        repo_id, op, rev = f"{parts[3]}/{parts[4]}", parts[5], unquote("/".join(parts[6:]))
        repo = self.hub.get(repo_id)
        if repo is None or repo.token != token:
            answer(404 if repo is None else 403, {"error": "Repository not found"})
            return
        if op == "branch":
            repo.branches.setdefault(rev, dict(repo.branches["main"]))
            answer(200, {})
        elif op == "preupload":
            files = json.loads(body).get("files", [])
            answer(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        elif op == "commit":
            if rev not in repo.branches:
                answer(404, {"error": f"Invalid rev id: {rev}"})
                return
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    repo.branches[rev][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            n = sum(len(b) for b in repo.branches[rev].values())
            repo.commits[rev] = hashlib.sha1(f"{rev}-{n}-{time.time()}".encode()).hexdigest()
            answer(
                200,
                {
                    "commitUrl": f"{self.url}/{repo_id}/commit/{repo.commits[rev]}",
                    "commitOid": repo.commits[rev],
                },
            )
        else:
            answer(404, {"error": "not found"})

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
