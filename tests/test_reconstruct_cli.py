"""`gigatok reconstruct` end to end on the tiny preset (random, seeded weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_torchrun
from PIL import Image
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.data.images import load_image, to_tensor
from gigatok_core.tasks.reconstruct import ReconstructRequest, reconstruct
from gigatok_core.tokenizer import load_tokenizer

runner = CliRunner()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8), "L").save(folder / "sub" / "b.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


def test_reconstruct_writes_images_codes_grid_and_settings(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "reconstruct",
            str(images),
            "--tokenizer",
            "tiny",
            "--output",
            str(out),
            "--grid",
            "--save-codes",
            "--batch-size",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "broken.png" in res.output and "skipped" in res.output
    assert (out / "a.png").is_file() and (out / "b.png").is_file() and (out / "grid.png").is_file()
    assert Image.open(out / "a.png").size == (256, 256)
    codes = np.load(out / "codes.npz")
    assert sorted(codes.files) == ["a", "b"]
    assert codes["a"].shape == (256,) and np.issubdtype(codes["a"].dtype, np.integer)
    settings = json.loads((out / "reconstruct.json").read_text())
    assert settings["tokenizer"] == "tiny" and settings["images"] == 2 and settings["skipped"] == 1
    # the codes are exactly what the library's encode gives for the preprocessed image
    tok = load_tokenizer("tiny")
    with torch.inference_mode():
        expect = tok.encode(to_tensor(load_image(images / "a.png", 256)[None]))[0].numpy()
    np.testing.assert_array_equal(codes["a"], expect)


def test_strict_fails_on_unreadable_input(images: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["reconstruct", str(images), "-t", "tiny", "-o", str(tmp_path / "o"), "--strict"]
    )
    assert res.exit_code == 1
    assert "broken.png" in res.output and "Traceback" not in res.output


def test_existing_outputs_are_not_overwritten_without_flag(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"user data")
    res = runner.invoke(app, ["reconstruct", str(images / "a.png"), "-t", "tiny", "-o", str(out)])
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert (out / "a.png").read_bytes() == b"user data"
    res = runner.invoke(
        app, ["reconstruct", str(images / "a.png"), "-t", "tiny", "-o", str(out), "--overwrite"]
    )
    assert res.exit_code == 0, res.output
    assert Image.open(out / "a.png").size == (256, 256)


def test_overwrite_removes_the_previous_runs_files_only(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    reconstruct(
        ReconstructRequest(
            [images / "a.png", images / "sub" / "b.jpg"], output=out, tokenizer="tiny", grid=True
        )
    )
    (out / "notes.txt").write_text("mine")
    reconstruct(ReconstructRequest([images / "a.png"], output=out, tokenizer="tiny", overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "notes.txt", "reconstruct.json"]
    settings = json.loads((out / "reconstruct.json").read_text())
    assert settings["outputs"] == ["a.png", "reconstruct.json"] and settings["command_line"].startswith(
        "gigatok"
    )


def test_missing_released_weights_say_what_to_do(images: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["reconstruct", str(images / "a.png"), "-t", "s-s", "-o", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "VQ_SS256_e100.pt" in res.output and "Traceback" not in res.output


def test_bad_inputs_and_options_are_clear_errors(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["reconstruct", str(tmp_path / "nope.png"), "-t", "tiny", "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 1 and "does not exist" in res.output
    res = runner.invoke(app, ["reconstruct", str(tmp_path), "-t", "tiny-typo", "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "did you mean 'tiny'" in res.output
    res = runner.invoke(
        app, ["reconstruct", str(tmp_path), "-t", "tiny", "--precision", "fp16", "--device", "cpu"]
    )
    assert res.exit_code == 1 and "needs a CUDA device" in res.output


def test_checkpoint_file_in_official_format_is_used(images: Path, tmp_path: Path) -> None:
    import argparse

    tok = load_tokenizer("tiny")
    sd = {k: v.clone() for k, v in tok.state_dict().items()}
    first = next(k for k in sd if k.endswith("conv_out.weight") and k.startswith("decoder."))
    sd[first] = torch.zeros_like(sd[first])  # a visibly different decoder output: all mid-grey
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": sd, "args": argparse.Namespace(image_size=256), "steps": 10}, ckpt)
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["reconstruct", str(images / "a.png"), "-t", "tiny", "--checkpoint", str(ckpt), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    pix = np.asarray(Image.open(out / "a.png"))
    bias = sd[first.replace("weight", "bias")]
    assert pix.std() < 1.0 and abs(float(pix.mean()) - float(127.5 * bias.mean() + 128)) < 2


def test_metrics_table_and_json(images: Path, tmp_path: Path) -> None:
    from torchvision.models import vgg16

    vgg = tmp_path / "vgg.pth"
    torch.save(vgg16(weights=None).state_dict(), vgg)
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "reconstruct",
            str(images / "a.png"),
            "-t",
            "tiny",
            "-o",
            str(out),
            "--metrics",
            "--vgg-weights",
            str(vgg),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["images"]["a"]) == {"psnr", "ssim", "psnr_standard", "ssim_standard", "lpips"}
    assert data["mean"]["psnr"] == pytest.approx(data["images"]["a"]["psnr"])
    assert "mean" in res.output and "psnr" in res.output


def test_library_api_returns_results(images: Path, tmp_path: Path) -> None:
    result = reconstruct(ReconstructRequest([images], output=tmp_path / "o", tokenizer="tiny", batch_size=3))
    assert [Path(r.source).name for r in result.images] == ["a.png", "b.jpg"]
    assert [Path(s).name for s, _ in result.skipped] == ["broken.png"]
    assert 0 < (result.codebook_usage or 0) <= 1


@pytest.mark.spawn
def test_torchrun_two_ranks_shard_and_match_single_process(images: Path, tmp_path: Path) -> None:
    proc = run_torchrun(
        "reconstruct",
        str(images),
        "-t",
        "tiny",
        "-o",
        str(tmp_path / "multi"),
        "--save-codes",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    single = reconstruct(
        ReconstructRequest([images], output=tmp_path / "single", tokenizer="tiny", save_codes=True)
    )
    assert len(single.images) == 2
    multi, one = np.load(tmp_path / "multi" / "codes.npz"), np.load(tmp_path / "single" / "codes.npz")
    assert sorted(multi.files) == sorted(one.files) == ["a", "b"]
    for k in one.files:
        np.testing.assert_array_equal(multi[k], one[k])


def _run(*args: object):
    return runner.invoke(app, ["reconstruct", *map(str, args), "--tokenizer", "tiny"])


def test_outputs_inside_the_input_folder_are_not_read_back(images: Path) -> None:
    out = images / "out"
    assert _run(images, "--output", out, "--grid").exit_code == 0
    first = sorted(p.name for p in out.iterdir())
    res = _run(images, "--output", out, "--grid", "--overwrite")
    assert res.exit_code == 0, res.output
    assert "wrote 2 reconstructions" in res.output  # a.png and b.jpg, not the old outputs
    assert (
        sorted(p.name for p in out.iterdir()) == first == ["a.png", "b.png", "grid.png", "reconstruct.json"]
    )


def test_inputs_are_never_replaced_even_with_overwrite(images: Path) -> None:
    before = (images / "a.png").read_bytes()
    res = _run(images, "--output", images, "--overwrite")
    assert res.exit_code == 1 and "inside the output folder" in res.output
    res = _run(images / "a.png", "--output", images, "--overwrite")  # an explicit file, same folder
    assert res.exit_code == 1 and "inside the output folder" in res.output
    assert (images / "a.png").read_bytes() == before


def test_colliding_stems_and_awkward_names_all_get_outputs_and_codes(tmp_path: Path) -> None:
    px = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for rel in ("a/same.png", "b/same.png", "c/same-1.png", "d/grid.png", "e/file.png", "f/allow_pickle.png"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(tmp_path / "in" / rel)
    out = tmp_path / "out"
    res = _run(tmp_path / "in", "--output", out, "--grid", "--save-codes")
    assert res.exit_code == 0, res.output
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == sorted(["same", "same-1", "same-1-1", "grid-1", "file", "allow_pickle", "grid"])
    with np.load(out / "codes.npz") as z:
        assert sorted(z.files) == sorted(set(pngs) - {"grid"})


def test_output_folder_that_cannot_be_created_is_a_clear_error(images: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = _run(images / "a.png", "--output", tmp_path / "afile" / "out")
    assert (
        res.exit_code == 1
        and "cannot create the output folder" in res.output
        and "Traceback" not in res.output
    )


def test_checkpoint_keys_left_out_are_shown(images: Path, tmp_path: Path) -> None:
    from gigatok_core.registry import tokenizer_preset
    from gigatok_core.tokenizer import build_tokenizer

    sd = build_tokenizer(tokenizer_preset("tiny").config, with_distill=True).state_dict()
    torch.save({"model": sd}, tmp_path / "tiny.pt")
    res = _run(images / "a.png", "--checkpoint", tmp_path / "tiny.pt", "--output", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "note:" in res.output and "distill_mlp" in res.output


def test_metrics_json_is_strict_json_for_exact_reconstructions() -> None:
    from gigatok_core.runs.settings import json_safe

    payload = {
        "mean": {"psnr": float("inf")},
        "images": {"a": {"psnr": float("nan"), "ssim": 0.5}},
        "n": [1.0],
    }
    assert json.loads(json.dumps(json_safe(payload), allow_nan=False)) == {
        "mean": {"psnr": None},
        "images": {"a": {"psnr": None, "ssim": 0.5}},
        "n": [1.0],
    }


def test_missing_aux_weights_name_the_option_that_takes_a_file(images: Path, tmp_path: Path) -> None:
    res = _run(images / "a.png", "--output", tmp_path / "o", "--metrics")  # offline, empty cache (conftest)
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "vgg16-397923af.pth" in text and "--vgg-weights FILE" in text
    from gigatok_core.errors import GigatokError
    from gigatok_core.evaluation import load_fid_inception

    with pytest.raises(GigatokError) as err:
        load_fid_inception(None, "cpu")
    assert "--inception-weights FILE" in err.value.hint
