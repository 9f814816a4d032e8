"""The cache without a network: reuse of Hugging Face / torch hub caches, manual imports, the
structural check, safetensors conversion, --verify / --clear, Drive page parsing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import fixture_path
from hub_server import FAKE_SHAPES, QUOTA_PAGE, drive_warning_page, fake_checkpoint

from gigatok_core import registry, weights
from gigatok_core.checkpoints.files import read_checkpoint
from gigatok_core.config.source import is_hub_ref
from gigatok_core.errors import GigatokError
from gigatok_core.hub import (
    cache,
    clear_weights,
    fetch_record,
    fetch_weights,
    import_weights,
    structure,
    verify_cache,
)
from gigatok_core.hub.gdrive import drive_urls, parse_drive_page
from gigatok_core.hub.hf import HubRef, parse_hub_ref, resolve_hub_ref
from gigatok_core.registry import WeightsRecord

DATA = b"weights of an auxiliary network" * 1000
SHA = hashlib.sha256(DATA).hexdigest()


def fake_shapes(rec: WeightsRecord) -> dict:
    return FAKE_SHAPES


# ---------------------------------------------------------------------------------------------
# Other caches (offline mode stays on: no network is needed)
# ---------------------------------------------------------------------------------------------
def test_hf_cache_file_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "hf"
    repo = hub / "models--org--repo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    blob = repo / "blobs" / SHA
    blob.parent.mkdir()
    blob.write_bytes(DATA)
    snap = repo / "snapshots" / "abc123" / "sub"
    snap.mkdir(parents=True)
    (snap / "w.bin").symlink_to(blob)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    rec = WeightsRecord(file="w.bin", kind="aux", sources=("hf://org/repo/sub/w.bin",), sha256=SHA)
    path = fetch_record(rec, progress=False)
    assert path == cache.weights_dir() / "w.bin" and path.read_bytes() == DATA
    assert cache.manifest_entry("w.bin")["origin"].endswith("w.bin")


def test_hf_cache_file_with_wrong_hash_is_refused_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blob whose bytes are not the sha256 it is named by (what the Hub published) is deleted."""
    repo = tmp_path / "home" / "hub" / "models--org--repo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("c" * 40)
    blob = repo / "blobs" / SHA
    blob.parent.mkdir()
    blob.write_bytes(DATA + b"!")
    snap = repo / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap / "w.bin").symlink_to(blob)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    rec = WeightsRecord(file="w.bin", kind="aux", sources=("hf://org/repo/w.bin@main",))
    with pytest.raises(GigatokError, match=r"offline mode is on.*failed verification"):
        fetch_record(rec, progress=False)
    assert not blob.exists() and not (snap / "w.bin").exists()  # never reused
    assert not (cache.weights_dir() / "w.bin").exists()


def test_torch_hub_cache_file_is_reused_with_prefix_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"net-{SHA[:8]}.pth"
    ckpts = tmp_path / "torch" / "hub" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / name).write_bytes(DATA)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rec = WeightsRecord(
        file=name, kind="aux", sources=(f"https://example.invalid/{name}",), sha256_prefix=SHA[:8]
    )
    assert fetch_record(rec, progress=False).read_bytes() == DATA
    bad = WeightsRecord(
        file=name, kind="aux", sources=(f"https://example.invalid/{name}",), sha256_prefix="00000000"
    )
    clear_weights_record(bad)
    with pytest.raises(GigatokError, match="does not start with 00000000"):
        fetch_record(bad, progress=False)


def clear_weights_record(rec: WeightsRecord) -> None:
    cache.stored_path(rec).unlink(missing_ok=True)
    cache.drop_entry(rec.file)


# ---------------------------------------------------------------------------------------------
# Manual import (the Drive-quota workaround)
# ---------------------------------------------------------------------------------------------
def test_import_good_file_converts_to_safetensors(tmp_path: Path) -> None:
    body, _, ema = fake_checkpoint()
    src = tmp_path / "VQ_SS256_e100.pt"
    src.write_bytes(body)
    path = import_weights(src, "s-s", shapes=fake_shapes)
    assert path == cache.weights_dir() / "VQ_SS256_e100.safetensors"
    assert src.read_bytes() == body  # the user's file is untouched
    sd = read_checkpoint(path)["model"]
    assert {k: tuple(v.shape) for k, v in sd.items()} == FAKE_SHAPES
    assert all(torch.equal(sd[k], ema[k]) for k in ema)
    entry = cache.manifest_entry("VQ_SS256_e100.pt")
    assert (
        entry["sha256"] == hashlib.sha256(body).hexdigest() and entry["origin"] == "import:VQ_SS256_e100.pt"
    )
    # offline now works: the cache answers
    assert fetch_weights("VQ_SS256_e100.pt", progress=False) == path


def test_import_wrong_preset_is_refused(tmp_path: Path) -> None:
    body, _, _ = fake_checkpoint(scale=2)  # "another preset": different shapes
    src = tmp_path / "other.pt"
    src.write_bytes(body)
    with pytest.raises(GigatokError) as info:
        import_weights(src, "s-b", shapes=fake_shapes)
    assert "not imported as s-b" in info.value.message and "shape mismatches" in info.value.message
    assert cache.manifest_entry("VQ_SB256_e200.pt") is None
    assert sorted(p.name for p in cache.weights_dir().iterdir()) == []  # not even a lock file


def test_import_html_page_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "page.pt"
    src.write_text(QUOTA_PAGE)
    with pytest.raises(GigatokError, match="is a web page"):
        import_weights(src, "gpt-b@s-s", shapes=fake_shapes)


def test_real_tiny_shaped_structure_check(tmp_path: Path) -> None:
    tiny = registry.tokenizer_preset("tiny").config
    expected = weights.tokenizer_shapes(tiny)
    assert any(k.startswith("s1to2decoder.distill_mlp.") for k in expected)  # with_distill=True
    src = tmp_path / "tiny.pt"
    torch.save({"model": {k: torch.zeros(s) for k, s in expected.items()}}, src)
    path = import_weights(src, "s-s", shapes=lambda rec: weights.tokenizer_shapes(tiny))
    assert structure.safetensors_shapes(path) == expected
    broken = {k: torch.zeros(s) for k, s in list(expected.items())[1:]}
    torch.save({"model": broken}, src)
    with pytest.raises(GigatokError, match="1 missing keys"):
        import_weights(src, "s-s", shapes=lambda rec: weights.tokenizer_shapes(tiny))


def test_preset_shapes_match_official_key_fixtures() -> None:
    tok = weights.expected_shapes(registry.weights_record("VQ_SS256_e100.pt"))
    keys = json.loads(fixture_path("tok_state_dict_keys.json").read_text())["presets"]["VQ_SS256"]["keys"]
    assert tok == {name: tuple(shape) for name, shape, _ in keys}
    gpt = weights.expected_shapes(registry.weights_record("GPT_B256_e300_VQ_SS.pt"))
    keys = json.loads(fixture_path("gpt_state_dict_keys.json").read_text())["GPT-B"]["state_dict"]
    assert gpt == {name: tuple(shape) for name, shape, _ in keys}
    assert weights.expected_shapes(registry.weights_record("vgg16-397923af.pth")) is None


# ---------------------------------------------------------------------------------------------
# Cache maintenance
# ---------------------------------------------------------------------------------------------
def test_verify_detects_corruption_and_clear_removes(tmp_path: Path) -> None:
    body, _, _ = fake_checkpoint()
    src = tmp_path / "f.pt"
    src.write_bytes(body)
    path = import_weights(src, "s-s", shapes=fake_shapes)
    assert [r.status for r in verify_cache()] == ["ok"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    (result,) = verify_cache()
    assert result.status == "corrupt" and not path.exists()
    assert verify_cache(["VQ_SS256_e100.pt"])[0].status == "not cached"
    import_weights(src, "s-s", shapes=fake_shapes)
    assert clear_weights(["VQ_SS256_e100.pt"]) == [path]
    assert not path.exists() and cache.manifest_entry("VQ_SS256_e100.pt") is None


def test_stored_file_copied_in_by_hand_is_checked_and_recorded(tmp_path: Path) -> None:
    rec = registry.weights_record("VQ_SS256_e100.pt")
    from safetensors.torch import save_file

    cache.weights_dir().mkdir(parents=True)
    save_file({k: torch.zeros(s) for k, s in FAKE_SHAPES.items()}, str(cache.stored_path(rec)))
    assert fetch_weights("VQ_SS256_e100.pt", progress=False, shapes=fake_shapes) == cache.stored_path(rec)
    assert cache.manifest_entry("VQ_SS256_e100.pt")["structure_checked"] is True


def test_touched_file_is_rehashed_not_refetched() -> None:
    rec = WeightsRecord(file="a.bin", kind="aux", sources=("https://example.invalid/a.bin",), sha256=SHA)
    cache.weights_dir().mkdir(parents=True)
    cache.stored_path(rec).write_bytes(DATA)  # dropped in by hand: verified against the pin
    path = fetch_record(rec, progress=False)
    import os

    os.utime(path, ns=(1, 1))
    assert fetch_record(rec, progress=False) == path  # offline: must come from the cache
    assert cache.manifest_entry("a.bin")["stored_mtime_ns"] == 1


# ---------------------------------------------------------------------------------------------
# Source strings and Drive pages
# ---------------------------------------------------------------------------------------------
def test_hub_references(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_hub_ref("hf://org/repo/a/b.pt@v1") == HubRef("org/repo", "a/b.pt", "v1")
    assert parse_hub_ref("hf://org/repo") == HubRef("org/repo", "model.safetensors", None)
    assert parse_hub_ref(Path("hf://org/repo@v2")) == HubRef(
        "org/repo", "model.safetensors", "v2"
    )  # hf:/ too
    monkeypatch.delenv("HF_ENDPOINT")
    assert parse_hub_ref("hf://org/repo/b.pt").url == "https://huggingface.co/org/repo/resolve/main/b.pt"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local/")
    assert parse_hub_ref("hf://org/repo/b.pt@abc").url == "http://mirror.local/org/repo/resolve/abc/b.pt"
    for bad in ("hf://org", "hf://org/", "hf://org/repo@", "hf://org/re po"):
        with pytest.raises(GigatokError, match="not a Hugging Face Hub reference"):
            parse_hub_ref(bad)
    assert resolve_hub_ref("runs/x") is None and resolve_hub_ref(None) is None and not is_hub_ref("s-s")


def test_drive_urls_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIGATOK_GDRIVE_URL", raising=False)
    assert drive_urls("X") == [
        "https://drive.usercontent.google.com/download?id=X&export=download&confirm=t",
        "https://drive.google.com/uc?export=download&id=X",
    ]
    monkeypatch.setenv("GIGATOK_GDRIVE_URL", "http://127.0.0.1:9/")
    assert all(u.startswith("http://127.0.0.1:9/") for u in drive_urls("X"))


def test_drive_page_parsing() -> None:
    page = parse_drive_page(
        drive_warning_page("ID1", "/download"), "https://drive.usercontent.google.com/download?id=ID1"
    )
    assert page.download_url == (
        "https://drive.usercontent.google.com/download?id=ID1&export=download&confirm=t&uuid=1234-abcd"
    )
    assert parse_drive_page(QUOTA_PAGE, "https://x/").problem == "quota"
    login = '<html><body>Sign in to continue <a href="https://accounts.google.com/ServiceLogin">go</a></body></html>'
    assert parse_drive_page(login, "https://x/").problem == "permission"
    legacy = '<html><a id="uc-download-link" href="/uc?export=download&amp;confirm=AbC&amp;id=Z">Download</a></html>'
    assert parse_drive_page(legacy, "https://drive.google.com/uc?id=Z").download_url == (
        "https://drive.google.com/uc?export=download&confirm=AbC&id=Z"
    )
    assert parse_drive_page("<html><p>something else</p></html>", "https://x/", 404).problem == "missing"


def test_refused_import_keeps_the_good_cached_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = b"the real aux file"
    rec = WeightsRecord(
        file="aux.bin",
        kind="aux",
        sources=("https://example.invalid/aux.bin",),
        sha256=hashlib.sha256(good).hexdigest(),
    )
    monkeypatch.setattr(registry, "weights_record", lambda name: rec)
    monkeypatch.setattr(registry, "import_target", lambda preset: "aux.bin")
    (tmp_path / "aux.bin").write_bytes(good)
    stored = import_weights(tmp_path / "aux.bin", "aux")
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "aux.bin").write_bytes(b"something else")
    with pytest.raises(GigatokError, match="was not imported"):
        import_weights(tmp_path / "wrong" / "aux.bin", "aux")
    assert stored.read_bytes() == good and cache.manifest_entry("aux.bin") is not None
    assert not list(cache.weights_dir().glob("*.import"))


def test_import_of_another_releases_file_is_refused(tmp_path: Path) -> None:
    body, _, _ = fake_checkpoint("gpt")
    src = tmp_path / "GPT_B256_e300_VQ_SS.pt"  # GPT-B trained on s-s: same shapes as on b-l
    src.write_bytes(body)
    with pytest.raises(GigatokError, match="is the release file of gpt-b@s-s") as info:
        import_weights(src, "gpt-b@b-l", shapes=fake_shapes)
    assert "--preset gpt-b@s-s" in info.value.hint


def test_import_of_a_converted_safetensors_from_another_cache(tmp_path: Path) -> None:
    body, _, ema = fake_checkpoint()
    src = tmp_path / "VQ_SS256_e100.pt"
    src.write_bytes(body)
    stored = import_weights(src, "s-s", shapes=fake_shapes)
    moved = tmp_path / "elsewhere" / stored.name  # what the offline hint says to copy between machines
    moved.parent.mkdir()
    moved.write_bytes(stored.read_bytes())
    (stored.parent / f"{stored.name}.tmp4242").write_bytes(b"left by a killed conversion")
    clear_weights(["VQ_SS256_e100.pt"])
    assert not stored.exists() and not list(stored.parent.glob("*.tmp*"))
    again = import_weights(moved, "s-s", shapes=fake_shapes)
    assert again == stored and cache.manifest_entry("VQ_SS256_e100.pt")["origin"] == "found in cache"
    sd = read_checkpoint(again)["model"]
    assert all(torch.equal(sd[k], ema[k]) for k in ema)
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(GigatokError, match="not a readable safetensors file"):
        import_weights(tmp_path / "bad.safetensors", "s-s", shapes=fake_shapes)
