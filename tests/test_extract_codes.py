"""`gigatok train extract-codes`: end to end through the CLI (tiny tokenizer, generated images),
resume after a kill, refusal of another tokenizer's folder, bad input, ten-crop, encoder only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.data.codes import CodesDataset
from gigatok_core.data.codes_format import MANIFEST_NAME, read_manifest
from gigatok_core.data.encoder import load_encoder, resolve_tokenizer_checkpoint
from gigatok_core.data.extract import ExtractCodesRequest, extract_codes
from gigatok_core.data.transforms import CenterFlip, TenCrop
from gigatok_core.errors import GigatokError

runner = CliRunner()


def _folder(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, n in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (24 + 3 * i, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny(one_thread: None) -> torch.nn.Module:
    from gigatok_core.tokenizer import load_tokenizer

    return load_tokenizer("tiny")


class _Result:
    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code, self.output = exit_code, " ".join(output.split())  # rich wraps long lines


def _run(*args: str) -> _Result:
    res = runner.invoke(app, ["train", "extract-codes", "--tokenizer", "tiny", "--workers", "0", *args])
    return _Result(res.exit_code, res.output)


def test_extract_end_to_end_resume_and_refusals(tmp_path: Path, tiny: torch.nn.Module) -> None:
    data = _folder(tmp_path / "img", {"b_dog": 1, "a_cat": 2})
    (data / "b_dog" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "codes"
    res = _run("--data", str(data), "--output", str(out), "--shard-size", "2", "--check-images", "1")
    assert res.exit_code == 0, res.output
    assert (
        "wrote 3 images x 2 crops in 2 shards" in res.output and "1 image skipped (unreadable" in res.output
    )
    raw = json.loads((out / MANIFEST_NAME).read_text())
    assert raw["classes"] == ["a_cat", "b_dog"] and raw["crops"] == 2 and raw["num_images"] == 3
    assert raw["tokenizer"]["preset"] == "tiny" and raw["tokenizer"]["codebook_size"] == 1024
    assert [s["count"] for s in raw["shards"]] == [2, 1]  # shard 1 = dog image + the broken file
    assert raw["skipped"] == [str(data / "b_dog" / "broken.png")]
    grid = Image.open(out / "check_codes.png")
    assert grid.size[0] > 256 and grid.size[1] > 2 * 256  # one 256-px tile per shard row

    # the stored codes are the tokenizer's codes of the centre crop and its mirror
    ds = CodesDataset(out, crop=1)
    first = CenterFlip(256)(Image.open(data / "a_cat" / "0.png").convert("RGB"))
    expect = tiny.encode(first)  # (2, 256)
    assert ds[0][0].tolist() == expect[1].tolist() and ds[0][1] == 0
    assert CodesDataset(out, crop=0)[0][0].tolist() == expect[0].tolist()
    assert [ds[i][1] for i in range(3)] == [0, 0, 1]

    res = _run("--data", str(data / ".." / "img"), "--output", str(out), "--shard-size", "2")  # same folder
    assert res.exit_code == 0 and "already holds these codes" in res.output

    # a killed run: no manifest, one shard missing -> the rerun redoes only that shard
    before = {s["codes"]: s["sha256"] for s in raw["shards"]}
    (out / MANIFEST_NAME).unlink()
    (out / "shard-00000.labels.npy").unlink()
    with pytest.raises(GigatokError, match="did not finish") as err:
        read_manifest(out)
    assert "extract-codes" in err.value.hint
    res = _run("--data", str(data), "--output", str(out), "--shard-size", "2", "--check-images", "0")
    assert res.exit_code == 0, res.output
    assert "1 written, 1 kept from an earlier run" in res.output
    after = json.loads((out / MANIFEST_NAME).read_text())
    assert {s["codes"]: s["sha256"] for s in after["shards"]} == before

    # other settings or another tokenizer's weights: refused, nothing lost
    res = _run("--data", str(data), "--output", str(out), "--shard-size", "3")
    assert res.exit_code == 1 and "other settings" in res.output and "shard_size" in res.output
    from gigatok_core.checkpoints.files import save_weights

    ckpt = tmp_path / "tok.safetensors"
    save_weights(
        ckpt, {k: v + 0.01 for k, v in tiny.state_dict().items()}, {"kind": "tokenizer", "preset": "tiny"}
    )
    res = _run("--data", str(data), "--output", str(out), "--shard-size", "2", "--checkpoint", str(ckpt))
    assert res.exit_code == 1 and "codes of another tokenizer" in res.output and "--overwrite" in res.output
    assert "Traceback" not in res.output
    assert json.loads((out / MANIFEST_NAME).read_text()) == after


def test_bad_inputs_are_clear(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "0.png")
    res = _run("--data", str(flat), "--output", str(tmp_path / "o1"))
    assert res.exit_code == 1 and "extract-codes needs labels" in res.output and "Traceback" not in res.output
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    res = _run("--data", str(tmp_path / "empty"), "--output", str(tmp_path / "o2"))
    assert res.exit_code == 1 and "hold no image" in res.output
    res = _run("--output", str(tmp_path / "o3"))
    assert res.exit_code == 1 and "--data is required" in res.output
    res = _run("--data", str(flat), "--output", str(tmp_path / "o4"), "--crop-range", "0.5")
    assert res.exit_code == 1 and "--crop-range" in res.output
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_ten_crop_rows_are_the_ten_crops(tmp_path: Path, tiny: torch.nn.Module) -> None:
    data = _folder(tmp_path / "img", {"only": 1}, seed=1)
    request = ExtractCodesRequest(
        "tiny", tmp_path / "codes", data=data, ten_crop=True, workers=0, check_images=0, device="cpu"
    )
    report = extract_codes(request)
    assert report is not None and report.manifest.crops == 10 and report.check_grid is None
    codes = np.load(tmp_path / "codes" / "shard-00000.codes.npy")
    assert codes.shape == (1, 10, 256) and codes.dtype == np.uint16
    crops = TenCrop(256, 1.1)(Image.open(data / "only" / "0.png").convert("RGB"))  # (10, 3, 256, 256)
    expect = tiny.encode(crops[[0, 9]])
    assert codes[0, 0].tolist() == expect[0].tolist() and codes[0, 9].tolist() == expect[1].tolist()


def test_encoder_from_a_checkpoint_never_builds_the_decoder(tmp_path: Path, tiny: torch.nn.Module) -> None:
    from gigatok_core.checkpoints.files import save_weights

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(GigatokError, match="without tokenizer weights"):
        resolve_tokenizer_checkpoint(run)
    from gigatok_core.checkpoints.training import save_checkpoint

    meta = {"step": 5, "kind": "tokenizer"}
    step = save_checkpoint(run / "checkpoints", weights={"model": tiny.state_dict()}, state={}, meta=meta)
    assert resolve_tokenizer_checkpoint(run) == step / "model.safetensors"  # a training run folder
    save_weights(run / "tok.safetensors", tiny.state_dict(), {"kind": "tokenizer", "preset": "tiny"})
    assert resolve_tokenizer_checkpoint(run) == run / "tok.safetensors"  # an exported file wins
    encoder, record = load_encoder("tiny", checkpoint=run)
    assert not hasattr(encoder, "decoder") and not hasattr(encoder, "post_quant_conv")
    assert not any(k.startswith(("decoder.", "s1to2decoder.")) for k in encoder.state_dict())
    assert record.checkpoint == str(run / "tok.safetensors") and len(record.sha256) == 64
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    assert encoder.encode(x).tolist() == tiny.encode(x).tolist()


@pytest.mark.spawn
def test_two_ranks_share_the_shards(tmp_path: Path, one_thread: None) -> None:
    """Through the CLI's launcher (`--nproc-per-node 2`, gloo workers), equal to one process."""
    import os
    import subprocess
    import sys

    data = _folder(tmp_path / "img", {"a": 1, "b": 1}, seed=2)
    out = tmp_path / "codes"
    args = ["train", "extract-codes", "--tokenizer", "tiny", "--data", str(data), "--output", str(out)]
    args += ["--workers", "0", "--shard-size", "1", "--check-images", "0", "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "gigatok_cli.main", *args, "--nproc-per-node", "2"]
    proc = subprocess.run(
        cmd, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote 2 images") == 1  # rank 0 reports
    ddp = read_manifest(out, verify=True)  # rank 1 wrote shard 1, rank 0 the manifest
    assert [s.count for s in ddp.shards] == [1, 1]
    assert [CodesDataset(out, crop=0)[i][1] for i in (0, 1)] == [0, 1]
    single = tmp_path / "single"
    res = _run("--data", str(data), "--output", str(single), *args[-8:])
    assert res.exit_code == 0, res.output
    for shard in ddp.shards:  # the workers' shards hold the codes one process writes
        for name in (shard.codes, shard.labels):
            assert np.array_equal(np.load(out / name), np.load(single / name)), name


def test_a_trained_tokenizer_with_its_own_codebook_size_extracts(tmp_path: Path, one_thread: None) -> None:
    # a gigatok-trained tokenizer whose run overrode the preset's codebook size: its file (or its
    # run folder) says so, and extract-codes builds that architecture, not the preset's
    from gigatok_core.checkpoints.files import save_weights
    from gigatok_core.checkpoints.training import save_checkpoint
    from gigatok_core.config import TokenizerConfig, config_to_dict
    from gigatok_core.tokenizer import build_tokenizer
    from gigatok_core.tokenizer.model import init_weights

    cfg = TokenizerConfig.from_name("tiny", codebook_size=64)
    model = build_tokenizer(cfg)
    init_weights(model, generator=torch.Generator().manual_seed(3))
    meta = {"kind": "tokenizer", "preset": "tiny", "config": config_to_dict(cfg)}
    ckpt = tmp_path / "trained.safetensors"
    save_weights(ckpt, model.state_dict(), meta)
    run = tmp_path / "run"
    save_checkpoint(
        run / "checkpoints",
        weights={"ema": model.state_dict()},
        state={},
        meta={"step": 7, "kind": "tokenizer", "config": {"model": config_to_dict(cfg)}},
    )
    data = _folder(tmp_path / "img", {"a": 1, "b": 1}, seed=4)
    expect = model.eval().encode(CenterFlip(256)(Image.open(data / "a" / "0.png").convert("RGB")))  # (2, T)
    assert expect.max() < 64
    for source, out in ((ckpt, tmp_path / "c1"), (run, tmp_path / "c2")):
        res = _run(
            "--data", str(data), "--output", str(out), "--checkpoint", str(source), "--check-images", "1"
        )
        assert res.exit_code == 0, res.output
        manifest = read_manifest(out, verify=True)
        assert manifest.tokenizer.codebook_size == 64 and manifest.tokenizer.preset == "tiny"
        assert (out / "check_codes.png").is_file()  # the full model (decoder too) loads from it as well
        codes = np.load(out / "shard-00000.codes.npy")
        assert codes.shape == (2, 2, 256) and codes.max() < 64
        assert codes[0].tolist() == expect.tolist()
    # the preset's own architecture (codebook 1024) does not fit these weights: named, no traceback
    with pytest.raises(GigatokError, match="holds tokenizer 'tiny', not 's-s'"):
        load_encoder("s-s", checkpoint=ckpt)


def test_a_folder_of_unreadable_images_is_refused(tmp_path: Path) -> None:
    """No readable image: refused before any output, naming the folder, how many and why (issue 17)."""
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "0.png").write_bytes(b"not a png")
    (data / "a" / "1.jpg").write_bytes(b"")
    Image.new("RGB", (1000, 10)).save(data / "a" / "2.png")
    res = _run("--data", str(data), "--output", str(tmp_path / "codes"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    text = " ".join(res.output.split())
    assert f"--data {data}" in text and "none of its 3 image files can be read" in text
    assert "2 not an image or corrupt" in text and "1 too elongated" in text
    assert not (tmp_path / "codes").exists()
