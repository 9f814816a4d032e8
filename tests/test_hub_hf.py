"""The Hugging Face Hub through the real ``huggingface_hub`` client, against a local server that speaks
the Hub's protocol (``HF_ENDPOINT`` points at it; tests/hub_server.py): official files from the Hub
first and Drive on a 404, hash verification, offline use from the shared cache, ``hf://`` references
wherever weights are taken, ``train export --format hub / --to-hub`` and loading the result back with
identical outputs, and the bad inputs (one clear message each, nothing half-written)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import FAKE_SHAPES, FileServer, HubRepo, Route, fake_checkpoint
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.checkpoints.files import read_checkpoint
from gigatok_core.checkpoints.training import save_checkpoint
from gigatok_core.config import config_to_dict
from gigatok_core.errors import GigatokError
from gigatok_core.hub import cache, fetch_record, resolve_hub_ref
from gigatok_core.registry import WeightsRecord, gpt_preset, tokenizer_preset

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
CKPT, MODEL, EMA = fake_checkpoint()
OFFICIAL = "YuuTennYi/GigaTok"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GIGATOK_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with FileServer() as srv:
        monkeypatch.setenv("GIGATOK_GDRIVE_URL", srv.url)
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        yield srv


def hf_cache() -> Path:
    import os

    return Path(os.environ["HF_HUB_CACHE"])


def blobs(repo: str) -> list[Path]:
    folder = hf_cache() / f"models--{repo.replace('/', '--')}" / "blobs"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def official(name: str = "VQ_fake.pt", drive: str | None = "FID") -> WeightsRecord:
    sources = (f"hf://{OFFICIAL}/{name}", *([f"gdrive://{drive}"] if drive else []))
    return WeightsRecord(file=name, kind="tokenizer", sources=sources)


def shapes(rec: WeightsRecord) -> dict:
    return FAKE_SHAPES


# ---------------------------------------------------------------------------------------------
# Official files: Hub first, Drive as the fallback
# ---------------------------------------------------------------------------------------------
def test_official_file_comes_from_the_hub_verified(server: FileServer) -> None:
    server.hub[OFFICIAL] = HubRepo(branches={"main": {"VQ_fake.pt": CKPT}})
    path = fetch_record(official(), progress=False, shapes=shapes)
    assert read_checkpoint(path)["model"]["enc.weight"].equal(EMA["enc.weight"])  # converted, EMA
    entry = cache.manifest_entry("VQ_fake.pt")
    assert entry["origin"] == f"hf://{OFFICIAL}/VQ_fake.pt" and entry["hash"] == "published"
    assert [c for c in server.calls if "GigaTok" in c[1]] == [
        ("HEAD", f"/{OFFICIAL}/resolve/main/VQ_fake.pt"),
        ("GET", f"/{OFFICIAL}/resolve/main/VQ_fake.pt"),
    ]
    assert not any(p.startswith(("/download", "/uc")) for _, p in server.calls)  # Drive never asked
    assert [b.name for b in blobs(OFFICIAL)] == [entry["sha256"]]  # the shared HF cache holds it


def test_hub_404_falls_through_to_drive_with_a_note(
    server: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.hub[OFFICIAL] = HubRepo(branches={"main": {"other.pt": b"x"}})
    server.routes["/download"] = Route(body=CKPT, require={"id": "FID"})
    path = fetch_record(official(), progress=True, shapes=shapes)
    assert path.is_file()
    order = [(m, p) for m, p in server.calls if p != "/api/agent-harnesses"]
    assert order[0] == ("HEAD", f"/{OFFICIAL}/resolve/main/VQ_fake.pt")  # the Hub first ...
    assert order[1] == ("GET", "/download") and len(order) == 2  # ... then Drive, once
    err = capsys.readouterr().err
    assert "note:" in err and "VQ_fake.pt is not on the Hugging Face Hub" in err and "Google Drive" in err
    assert cache.manifest_entry("VQ_fake.pt")["hash"] == "first use"


def test_hub_outage_falls_through_to_drive(
    server: FileServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub retries a 503 with backoff (about 20 s) before giving up: not waited here."""
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)
    server.hub[OFFICIAL] = HubRepo(branches={"main": {"VQ_fake.pt": CKPT}}, down=True)
    server.routes["/download"] = Route(body=CKPT, require={"id": "FID"})
    assert fetch_record(official(), progress=True, shapes=shapes).is_file()
    assert ("GET", "/download") in server.calls
    err = " ".join(capsys.readouterr().err.split())
    assert "VQ_fake.pt could not be had from the Hugging Face Hub" in err and "trying Google Drive" in err


def test_tampered_hub_file_is_refused_and_nothing_is_kept(server: FileServer) -> None:
    server.hub[OFFICIAL] = HubRepo(branches={"main": {"VQ_fake.pt": CKPT}}, tampered={"VQ_fake.pt"})
    with pytest.raises(GigatokError, match="failed verification") as err:
        fetch_record(official(drive=None), progress=False, shapes=shapes)
    assert "Traceback" not in str(err.value)
    assert blobs(OFFICIAL) == []  # no bad blob for a later call to reuse
    assert cache.manifest_entry("VQ_fake.pt") is None
    assert not [p for p in cache.weights_dir().iterdir() if not p.name.endswith(".lock")]


def test_offline_use_from_the_shared_cache(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.hub[OFFICIAL] = HubRepo(branches={"main": {"VQ_fake.pt": CKPT}})
    server.hub["me/tok"] = HubRepo(branches={"main": {"model.safetensors": b"weights" * 100}})
    first = fetch_record(official(), progress=False, shapes=shapes)
    hub_file = resolve_hub_ref("hf://me/tok", progress=False)
    first.unlink()  # our cache loses its copy; the Hugging Face cache keeps the original
    cache.drop_entry("VQ_fake.pt")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(server.calls)
    again = fetch_record(official(), progress=False, shapes=shapes)
    assert again == first and read_checkpoint(again)["model"]["codebook"].equal(EMA["codebook"])
    assert resolve_hub_ref("hf://me/tok", progress=False) == hub_file
    assert len(server.calls) == seen  # no request at all
    with pytest.raises(GigatokError, match="offline mode is on"):
        resolve_hub_ref("hf://me/tok/other.safetensors", progress=False)


# ---------------------------------------------------------------------------------------------
# Runs exported to the Hub and loaded back
# ---------------------------------------------------------------------------------------------
def _tokenizer_run(root: Path) -> Path:
    from gigatok_core.tokenizer.load import load_tokenizer

    torch.manual_seed(3)
    model = load_tokenizer("tiny")
    sd = {
        k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    cfg = config_to_dict(tokenizer_preset("tiny").config)
    meta = {
        "kind": "tokenizer",
        "preset": "tiny",
        "config": {"model": cfg, "data": {"data": "/x/imagenet"}},
        "step": 6,
    }
    save_checkpoint(
        root / "checkpoints", weights={"model": model.state_dict(), "ema": sd}, state={}, meta=meta
    )
    (root / "metrics.jsonl").write_text(
        json.dumps({"step": 3, "loss": 2.5})
        + "\n"
        + json.dumps({"step": 6, "loss": 1.25, "rfid": 7.5})
        + "\n"
    )
    return root


def _gpt_run(root: Path) -> Path:
    from gigatok_core.ar.load import load_gpt

    model, _ = load_gpt("gpt-tiny", tokenizer="tiny")
    cfg = config_to_dict(gpt_preset("gpt-tiny").config)
    pairing = {"preset": "tiny", "checkpoint": None, "sha256": None, "codebook_size": 1024, "num_tokens": 256}
    meta = {"kind": "gpt", "preset": "gpt-tiny", "config": {"model": cfg, "data": {"codes": "/x/codes"}}}
    meta |= {"tokenizer": pairing, "step": 4}
    save_checkpoint(root / "checkpoints", weights={"model": model.state_dict()}, state={}, meta=meta)
    (root / "metrics.jsonl").write_text(json.dumps({"step": 4, "loss": 6.9, "val_loss": 6.93}) + "\n")
    return root


def _serve_folder(srv: FileServer, repo: str, folder: Path, **kw: object) -> None:
    srv.hub[repo] = HubRepo(branches={"main": {p.name: p.read_bytes() for p in folder.iterdir()}}, **kw)


def _card_command(folder: Path) -> list[str]:
    line = next(x for x in (folder / "README.md").read_text().splitlines() if x.startswith("gigatok "))
    return shlex.split(line)[1:]


def _images(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / "0.png")
    return folder


def test_tokenizer_export_to_hub_folder_loads_back_through_the_server(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _tokenizer_run(tmp_path / "run")
    folder = tmp_path / "hubdir"
    res = runner.invoke(app, ["train", "export", str(run), str(folder), "--format", "hub"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "tokenizer" and config["preset"] == "tiny" and config["weights"] == "ema"
    assert config["codebook_size"] == 1024 and config["num_tokens"] == 256 and config["step"] == 6
    card = (folder / "README.md").read_text()
    assert "library_name: gigatok" in card and "| rfid | 7.5 | 6 |" in card and "`imagenet`" in card
    assert "/x/imagenet" not in card  # no paths of the training machine
    res = runner.invoke(app, ["train", "export", str(run), str(folder), "--format", "hub"])
    assert res.exit_code == 1 and "--overwrite" in res.output  # never replaced without asking

    _serve_folder(server, "OWNER/REPO", folder)  # the card names OWNER/REPO until uploaded
    images = _images(tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    cmd = [images if a == "IMAGES_FOLDER" else a for a in _card_command(folder)]
    assert cmd[:1] == ["reconstruct"] and "hf://OWNER/REPO" in cmd
    res = runner.invoke(app, [str(a) for a in cmd])  # the model card's command, as written
    assert res.exit_code == 0, res.output
    local = ["reconstruct", str(images), "--checkpoint", str(folder / "model.safetensors"), "-o", "local"]
    assert runner.invoke(app, local).exit_code == 0
    assert (tmp_path / "reconstructions" / "0.png").read_bytes() == (
        tmp_path / "local" / "0.png"
    ).read_bytes()

    from gigatok_core.tokenizer.load import load_tokenizer

    a, b = load_tokenizer("hf://OWNER/REPO"), load_tokenizer(str(folder / "model.safetensors"))
    assert all(x.equal(y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_gpt_export_loads_back_with_identical_codes(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _gpt_run(tmp_path / "run")
    folder = tmp_path / "hubdir"
    assert runner.invoke(app, ["train", "export", str(run), str(folder), "--format", "hub"]).exit_code == 0
    card = (folder / "README.md").read_text()
    assert "| val_loss | 6.93 | 4 |" in card and "`codes`" in card
    _serve_folder(server, "OWNER/REPO", folder)
    monkeypatch.chdir(tmp_path)
    cmd = _card_command(folder)
    assert cmd[:3] == ["sample", "--gpt", "gpt-tiny"]
    res = runner.invoke(app, [*cmd, "--save-codes"])
    assert res.exit_code == 0, res.output
    local = ["sample", "--gpt", "gpt-tiny", "--gpt-checkpoint", str(folder / "model.safetensors")]
    res = runner.invoke(app, [*local, "--classes", "0", "--output", "local", "--save-codes"])
    assert res.exit_code == 0, res.output
    hub_codes, local_codes = np.load("samples/codes.npz"), np.load("local/codes.npz")
    assert np.array_equal(hub_codes["codes"], local_codes["codes"])

    from gigatok_core.ar.load import load_gpt

    gpt, tok = load_gpt("gpt-tiny", checkpoint="hf://OWNER/REPO")
    assert tok == "tiny" and gpt.config.dim == gpt_preset("gpt-tiny").config.dim

    from gigatok_core.tasks.sample import sample_images  # the Python API of `gigatok sample`

    sample_images(
        "0", output=tmp_path / "api", gpt="gpt-tiny", gpt_checkpoint="hf://OWNER/REPO", save_codes=True
    )
    assert np.array_equal(np.load(tmp_path / "api" / "codes.npz")["codes"], local_codes["codes"])


def test_to_hub_uploads_private_revision_and_loads_back(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _tokenizer_run(tmp_path / "run")
    up = ["train", "export", str(run), "--to-hub", "me/tok", "--private", "--revision", "v1"]
    res = runner.invoke(app, up)
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "needs a token" in text and "HF_TOKEN" in text
    assert "me/tok" not in server.hub  # nothing created
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    res = runner.invoke(app, up)
    assert res.exit_code == 0, (res.output, server.calls)
    assert "hf://me/tok@v1" in res.output
    repo = server.hub["me/tok"]
    assert repo.private and sorted(repo.branches["v1"]) == ["README.md", "config.json", "model.safetensors"]
    assert "model.safetensors" not in repo.branches["main"]  # the revision only
    assert "hf://me/tok@v1" in repo.branches["v1"]["README.md"].decode()  # the card names the upload
    assert [p for m, p in server.calls if m == "POST"][:1] == ["/api/repos/create"]

    from gigatok_core.tokenizer.load import load_tokenizer

    model = load_tokenizer("hf://me/tok@v1")
    assert model.config.codebook_size == 1024
    keep = tmp_path / "kept"  # DEST with --to-hub keeps the uploaded folder; public, on main
    res = runner.invoke(app, ["train", "export", str(run), str(keep), "--to-hub", "me/pub"])
    assert res.exit_code == 0, res.output
    assert not server.hub["me/pub"].private and (keep / "README.md").is_file()
    assert (
        server.hub["me/pub"].branches["main"]["model.safetensors"]
        == (keep / "model.safetensors").read_bytes()
    )
    monkeypatch.delenv(
        "HF_TOKEN"
    )  # (a copy already in the HF cache would still be used, as the library does)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "fresh-hf-cache"))
    res = runner.invoke(app, ["reconstruct", "x.png", "--checkpoint", "hf://me/tok@v1"])
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", res.output).split())
    assert res.exit_code == 2 and "it is private and no token was given" in text, res.output


# ---------------------------------------------------------------------------------------------
# Bad input: one clear message each, no traceback
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("hf://me/nope", "does not exist, or it is private and no token"),
        ("hf://me/tok/missing.safetensors", "has no file 'missing.safetensors'"),
        ("hf://me/tok@v9", "has no revision 'v9'"),
        ("hf://me/bad", "failed verification"),
        ("hf://me/gpt", "holds a gpt checkpoint, not a tokenizer"),
        ("hf://me", "not a Hugging Face Hub reference"),
    ],
)
def test_bad_hub_references(server: FileServer, tmp_path: Path, ref: str, message: str) -> None:
    server.hub["me/tok"] = HubRepo(branches={"main": {"model.safetensors": b"0" * 64}})
    server.hub["me/bad"] = HubRepo(
        branches={"main": {"model.safetensors": b"1" * 64}}, tampered={"model.safetensors"}
    )
    if ref == "hf://me/gpt":  # a repo holding another model kind than the option takes
        run = _gpt_run(tmp_path / "run")
        assert (
            runner.invoke(
                app, ["train", "export", str(run), str(tmp_path / "g"), "--format", "hub"]
            ).exit_code
            == 0
        )
        _serve_folder(server, "me/gpt", tmp_path / "g")
    res = runner.invoke(app, ["reconstruct", str(tmp_path), "--checkpoint", ref, "-o", str(tmp_path / "o")])
    assert res.exit_code in (1, 2)
    assert message in " ".join(re.sub("[│╭╮╰╯─]", " ", res.output).split()), res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    if ref == "hf://me/bad":
        assert blobs("me/bad") == []


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "-c", "1", "--gpt-checkpoint", "hf://me/nope"],
        ["sample", "-c", "1", "--tokenizer-checkpoint", "hf://me/nope"],
        ["eval", "gfid", "--gpt-checkpoint", "hf://me/nope"],
        ["eval", "rfid", "--data", ".", "--checkpoint", "hf://me/nope"],
        ["probe", "gpt", "--gpt-checkpoint", "hf://me/nope"],
        ["probe", "tokenizer", "--checkpoint", "hf://me/nope", "--tokenizer", "s-s"],
        ["train", "extract-codes", "--data", ".", "--output", "c", "--checkpoint", "hf://me/nope"],
        ["train", "tokenizer", "--data", ".", "--output", "r", "--init", "hf://me/nope"],
    ],
    ids=lambda a: "-".join(x for x in a if x.startswith("--") or x.isalpha())[:60],
)
def test_every_weights_option_takes_hub_references(server: FileServer, args: list[str]) -> None:
    """Each option that takes weights goes through the one resolver (a bad id is refused while the
    command line is read, before any work)."""
    server.hub["me/other"] = HubRepo()
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "me/nope on http://127.0.0.1" in " ".join(re.sub("[│╭╮╰╯─]", " ", res.output).split()), res.output
    assert any(p == "/me/nope/resolve/main/model.safetensors" for _, p in server.calls)


def test_cache_list_says_source_and_hash() -> None:
    res = runner.invoke(app, ["cache", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["preset"]: r for r in json.loads(res.output)}
    assert rows["s-s"]["sources"] == ["hub", "drive"] and rows["s-s"]["hash"].startswith("published")
    assert rows["s-s-2d"]["sources"] == ["hub", "drive"] and rows["s-s-2d"]["known_source"]
    assert rows["b-l-2d"]["sources"] == ["hub"] and not rows["b-l-2d"]["known_source"]
    assert rows["inception"]["hash"] == "name prefix" and rows["adm-ref"]["hash"] == "first use"
    res = runner.invoke(app, ["cache", "list"], env={"COLUMNS": "200"})
    assert "no known source yet: b-l-2d" in " ".join(re.sub("[│╭╮╰╯─]", " ", res.output).split())


def test_2d_records_pass_the_structural_check_of_the_official_model() -> None:
    """The check a real 2D file meets: the preset's keys and shapes are the official
    VQVitModel2DPlus state_dict (recorded from the official code in the key fixture)."""
    from conftest import fixture_path

    from gigatok_core.registry import weights_record
    from gigatok_core.weights import expected_shapes

    official_keys = json.loads(fixture_path("tok_state_dict_keys.json").read_text())["presets"]
    for preset, config in (("s-s-2d", "VQ_SS256_2d"), ("s-b-2d", "VQ_SB256_2d"), ("b-l-2d", "VQ_BL256_2d")):
        rec = weights_record(tokenizer_preset(preset).weights)
        want = {k: tuple(s) for k, s, _ in official_keys[config]["keys"]}
        assert dict(expected_shapes(rec)) == want, preset


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--private"], "--private and --revision go with --to-hub"),
        (["out", "--format", "zip"], "--format zip: want safetensors or hub"),
        (["--to-hub", "just-a-name"], "not a Hugging Face Hub reference"),
        (["out.safetensors", "--to-hub", "me/x"], "names a file"),
        ([], "name the file (or folder) to write"),
    ],
)
def test_export_option_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    res = runner.invoke(app, ["train", "export", str(tmp_path), *extra])
    assert res.exit_code == 1 and message in " ".join(res.output.split()), res.output


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dest": "out", "private": True}, "private and revision go with to_hub"),
        ({"dest": "out", "format": "zip"}, "format zip: want safetensors or hub"),
        ({"dest": "out.safetensors", "to_hub": "me/x"}, "names a file"),
        ({}, "name the file (or folder) to write"),
    ],
)
def test_export_run_checks_the_combination_before_any_work(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    """The library's one export entry refuses what the command refuses (no run folder is read),
    naming its settings as Python does (the command names its flags)."""
    from gigatok_core.train.export import export_run

    with pytest.raises(GigatokError, match=re.escape(message)):
        export_run(tmp_path / "no-run", **kwargs)  # type: ignore[arg-type]
