"""Downloads against a local HTTP server: direct files, Google Drive flows, resume, corruption,
concurrency and offline mode (no internet is ever used)."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import random
from pathlib import Path

import pytest
import torch
from conftest import bump_mtime
from hub_server import (
    FAKE_SHAPES,
    QUOTA_PAGE,
    FileServer,
    Route,
    drive_warning_page,
    fake_checkpoint,
    fetch_worker,
)

from gigatok_core.checkpoints.files import read_checkpoint
from gigatok_core.errors import GigatokError
from gigatok_core.hub import cache, fetch_record
from gigatok_core.registry import WeightsRecord

AUX = random.Random(0).randbytes(1_200_000)  # fixed bytes: every run tests the same payload
AUX_SHA = hashlib.sha256(AUX).hexdigest()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GIGATOK_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with FileServer() as srv:
        monkeypatch.setenv("GIGATOK_GDRIVE_URL", srv.url)
        yield srv


def aux_record(srv: FileServer, *, sha: str | None = AUX_SHA, name: str = "aux.bin") -> WeightsRecord:
    return WeightsRecord(file=name, kind="aux", sources=(f"{srv.url}/files/{name}",), sha256=sha)


def fake_shapes(rec: WeightsRecord) -> dict:
    return FAKE_SHAPES


# ---------------------------------------------------------------------------------------------
# Plain URLs
# ---------------------------------------------------------------------------------------------
def test_direct_file_is_downloaded_verified_and_reused(server: FileServer) -> None:
    server.routes["/files/aux.bin"] = Route(body=AUX)
    rec = aux_record(server)
    path = fetch_record(rec, progress=True)
    assert path == cache.weights_dir() / "aux.bin" and path.read_bytes() == AUX
    assert not cache.part_path(rec).exists()
    entry = cache.manifest_entry("aux.bin")
    assert entry["sha256"] == AUX_SHA and entry["stored_size"] == len(AUX)
    assert fetch_record(rec, progress=False) == path
    assert len(server.transfers("/files/aux.bin")) == 1  # the second call used the cache


def test_dropped_connection_resumes_with_range(server: FileServer) -> None:
    server.routes["/files/aux.bin"] = Route(body=AUX, drop_after=600_000)
    path = fetch_record(aux_record(server), progress=False)
    assert path.read_bytes() == AUX
    ranges = server.transfers("/files/aux.bin")
    assert len(ranges) == 2 and ranges[0] is None
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 600_000  # what arrived before the drop was kept


def test_server_ignoring_range_restarts_from_zero(server: FileServer) -> None:
    rec = aux_record(server)
    cache.weights_dir().mkdir(parents=True)
    cache.part_path(rec).write_bytes(b"x" * 5000)  # a stale .part with wrong bytes
    server.routes["/files/aux.bin"] = Route(body=AUX, ignore_range=True)
    assert fetch_record(rec, progress=False).read_bytes() == AUX
    assert server.transfers("/files/aux.bin") == ["bytes=5000-"]


def test_corrupted_download_is_rejected_and_not_cached(server: FileServer) -> None:
    # Flip the last byte: overwriting it with a constant leaves the body unchanged whenever the
    # payload already ends in that constant (with os.urandom bytes, 1 run in 256 failed).
    server.routes["/files/aux.bin"] = Route(body=AUX[:-1] + bytes([AUX[-1] ^ 0xFF]))
    rec = aux_record(server)
    with pytest.raises(GigatokError, match="sha256"):
        fetch_record(rec, progress=False)
    assert not any(cache.weights_dir().iterdir())  # no .part, no file, no lock file
    assert cache.manifest_entry("aux.bin") is None


def test_second_source_used_when_first_is_corrupt(server: FileServer) -> None:
    server.routes["/a/aux.bin"] = Route(body=b"garbage" * 10)
    server.routes["/b/aux.bin"] = Route(body=AUX)
    rec = WeightsRecord(
        file="aux.bin",
        kind="aux",
        sources=(f"{server.url}/a/aux.bin", f"{server.url}/b/aux.bin"),
        sha256=AUX_SHA,
    )
    assert fetch_record(rec, progress=False).read_bytes() == AUX


def test_cached_file_corrupted_later_is_refetched(server: FileServer) -> None:
    server.routes["/files/aux.bin"] = Route(body=AUX)
    rec = aux_record(server, sha=None)  # nothing pinned: the first download's hash is recorded
    path = fetch_record(rec, progress=False)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, wrong bytes
    bump_mtime(path)  # a new mtime even if the rewrite fell in the download's clock tick
    assert fetch_record(rec, progress=False).read_bytes() == AUX
    assert len(server.transfers("/files/aux.bin")) == 2


def test_html_instead_of_file_is_an_error(server: FileServer) -> None:
    server.routes["/files/aux.bin"] = Route(html="<html><body>Log in to the captive portal</body></html>")
    with pytest.raises(GigatokError, match="web page"):
        fetch_record(aux_record(server, sha=None), progress=False)
    assert not (cache.weights_dir() / "aux.bin").exists()


# ---------------------------------------------------------------------------------------------
# Google Drive
# ---------------------------------------------------------------------------------------------
def test_drive_virus_scan_form_flow_and_safetensors(server: FileServer) -> None:
    body, _, ema = fake_checkpoint()
    server.routes["/download"] = Route(
        html=drive_warning_page("FID", f"{server.url}/confirmed"), require={"id": "FID"}
    )
    server.routes["/confirmed"] = Route(body=body, require={"id": "FID", "uuid": "1234-abcd", "confirm": "t"})
    rec = WeightsRecord(file="VQ_fake.pt", kind="tokenizer", sources=("gdrive://FID",))
    path = fetch_record(rec, progress=False, shapes=fake_shapes)
    assert path.name == "VQ_fake.safetensors"
    assert not (cache.weights_dir() / "VQ_fake.pt").exists()  # the pickle is not kept
    sd = read_checkpoint(path)["model"]
    assert set(sd) == set(ema) and all(torch.equal(sd[k], ema[k]) for k in ema)  # ema preferred
    assert cache.manifest_entry("VQ_fake.pt")["entry"] == "ema"


def test_drive_gpt_prefers_model_and_uc_fallback(server: FileServer) -> None:
    body, model, _ = fake_checkpoint("gpt")
    # no /download route: the usercontent URL answers 404 (an HTML error page), /uc has the file
    server.routes["/uc"] = Route(body=body, require={"id": "GID"})
    rec = WeightsRecord(file="GPT_fake.pt", kind="gpt", sources=("gdrive://GID",))
    sd = read_checkpoint(fetch_record(rec, progress=False, shapes=fake_shapes))["model"]
    assert all(torch.equal(sd[k], model[k]) for k in model)  # `model` (module. stripped), never ema


def test_drive_quota_page_is_an_error_and_never_saved(server: FileServer) -> None:
    server.routes["/download"] = Route(html=QUOTA_PAGE)
    server.routes["/uc"] = Route(html=QUOTA_PAGE)
    rec = WeightsRecord(file="VQ_SS256_e100.pt", kind="tokenizer", sources=("gdrive://QID",))
    with pytest.raises(GigatokError) as info:
        fetch_record(rec, key="VQ_SS256_e100.pt", progress=False, shapes=fake_shapes)
    assert "quota" in info.value.message
    assert (
        "gigatok cache import FILE --preset s-s" in info.value.hint
        and "drive.google.com/file/d/QID" in info.value.hint
    )
    assert [p.name for p in cache.weights_dir().iterdir()] == []


def test_drive_file_of_wrong_shape_is_rejected(server: FileServer) -> None:
    body, _, _ = fake_checkpoint(scale=2)
    server.routes["/download"] = Route(body=body)
    rec = WeightsRecord(file="VQ_fake.pt", kind="tokenizer", sources=("gdrive://FID",))
    with pytest.raises(GigatokError, match="shape mismatches"):
        fetch_record(rec, progress=False, shapes=fake_shapes)
    assert cache.manifest_entry("VQ_fake.pt") is None
    assert not (cache.weights_dir() / "VQ_fake.safetensors").exists()


# ---------------------------------------------------------------------------------------------
# Concurrency and offline mode
# ---------------------------------------------------------------------------------------------
@pytest.mark.spawn
def test_four_processes_download_once(server: FileServer) -> None:
    server.routes["/files/aux.bin"] = Route(body=AUX, delay=0.15)  # ~0.7 s transfer
    rec = aux_record(server)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=fetch_worker, args=(rec, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert {path for path, _ in got} == {str(cache.weights_dir() / "aux.bin")}
    assert all(data == AUX for _, data in got)
    assert len(server.transfers("/files/aux.bin")) == 1


@pytest.mark.parametrize("var", ["GIGATOK_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_names_file_urls_and_command(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.delenv("GIGATOK_OFFLINE", raising=False)
    monkeypatch.setenv(var, "1")
    from gigatok_core.hub import fetch_weights

    with pytest.raises(GigatokError) as info:
        fetch_weights("GPT_B256_e300_VQ_SS.pt", progress=False)
    err = info.value
    assert "GPT_B256_e300_VQ_SS.pt" in err.message and "offline" in err.message
    assert "https://drive.google.com/file/d/1VTaBPP-UUE6wc148vQQejfYNVjyYm4IS/view" in err.message
    assert (
        "gigatok download gpt-b@s-s" in err.hint
        and "gigatok cache import FILE --preset gpt-b@s-s" in err.hint
    )


def test_partial_download_is_kept_for_a_later_resume(
    server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gigatok_core.hub.transfer as transfer

    monkeypatch.setattr(transfer, "RETRIES", 0)
    monkeypatch.setattr(
        transfer.download, "__kwdefaults__", {**transfer.download.__kwdefaults__, "retries": 0}
    )
    server.routes["/files/aux.bin"] = Route(body=AUX, drop_after=600_000)
    rec = aux_record(server)
    with pytest.raises(GigatokError) as info:
        fetch_record(rec, progress=False)
    assert "resumed" in info.value.hint
    kept = cache.part_path(rec).stat().st_size
    assert 0 < kept <= 600_000
    assert Path(fetch_record(rec, progress=False)).read_bytes() == AUX  # the next call resumes
    assert server.transfers("/files/aux.bin")[-1] == f"bytes={kept}-"


def test_part_longer_than_file_gets_416_and_restarts(server: FileServer) -> None:
    rec = aux_record(server)
    cache.weights_dir().mkdir(parents=True)
    cache.part_path(rec).write_bytes(b"y" * (len(AUX) + 10))
    server.routes["/files/aux.bin"] = Route(body=AUX)
    assert fetch_record(rec, progress=False).read_bytes() == AUX
    assert server.transfers("/files/aux.bin") == [f"bytes={len(AUX) + 10}-", None]


def test_complete_part_is_used_not_downloaded_again(server: FileServer) -> None:
    rec = aux_record(server)  # a process killed between the last byte and the rename leaves this
    cache.weights_dir().mkdir(parents=True)
    cache.part_path(rec).write_bytes(AUX)
    server.routes["/files/aux.bin"] = Route(body=AUX)
    assert fetch_record(rec, progress=False).read_bytes() == AUX
    assert server.transfers("/files/aux.bin") == [f"bytes={len(AUX)}-"]  # one 416, no second transfer


def test_corrupt_manifest_is_ignored_not_a_traceback(server: FileServer) -> None:
    rec = aux_record(server)
    server.routes["/files/aux.bin"] = Route(body=AUX)
    cache.cache_dir().mkdir(parents=True, exist_ok=True)
    for garbage in (b"\xff\xfe\x00junk", b"[]", b'{"files": {"x": {"stored": "a"}}}'):
        (cache.cache_dir() / "manifest.json").write_bytes(garbage)
        assert cache.read_manifest()["files"] == {}
        assert fetch_record(rec, progress=False).read_bytes() == AUX


def test_drive_confirmation_loop_is_a_clear_refusal(server: FileServer) -> None:
    loop = drive_warning_page("LID", f"{server.url}/download")  # confirming gives the same page again
    server.routes["/download"] = Route(html=loop)
    server.routes["/uc"] = Route(html=loop)
    rec = WeightsRecord(file="VQ_loop.pt", kind="tokenizer", sources=("gdrive://LID",))
    with pytest.raises(GigatokError) as info:
        fetch_record(rec, progress=False, shapes=fake_shapes)
    assert "unexpected web page" in info.value.message and "cache import" in info.value.hint


def test_unreachable_source_names_the_url_once_and_leaves_nothing(
    server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import gigatok_core.hub.transfer as transfer

    monkeypatch.setattr(
        transfer.download, "__kwdefaults__", {**transfer.download.__kwdefaults__, "retries": 0}
    )
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/files/aux.bin"
    rec = WeightsRecord(file="aux.bin", kind="aux", sources=(url,), sha256=AUX_SHA)
    with pytest.raises(GigatokError) as info:
        fetch_record(rec, progress=False)
    err = info.value
    assert err.message.count(url) == 1 and err.message.count(f"port={port}") == 0, err.message
    assert "Connection refused" in err.message or "refused" in err.message.lower()
    assert ".part" not in err.hint and "check the network" in err.hint  # nothing to resume
    assert list(cache.weights_dir().iterdir()) == []  # no .part, no 0-byte .lock


def test_file_lock_is_exclusive_and_leaves_no_file(tmp_path: Path) -> None:
    import threading
    import time

    from gigatok_core.hub.lock import RemovableLock

    path, counter = tmp_path / "x.lock", tmp_path / "count"
    counter.write_text("0")

    def work() -> None:
        for _ in range(20):
            with RemovableLock(path):  # a read-sleep-write race unless the lock holds across removal
                n = int(counter.read_text())
                time.sleep(0.0005)
                counter.write_text(str(n + 1))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert counter.read_text() == "80" and not path.exists()
    held = RemovableLock(path)
    assert held.acquire(blocking=False) and path.exists()
    assert RemovableLock(path).acquire(blocking=False) is False  # taken: no wait, no second holder
    held.release()
    assert not path.exists()
