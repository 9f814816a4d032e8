"""`gigatok sample` contract: options reach the library, files appear, errors are one-line messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_torchrun
from typer.testing import CliRunner

from gigatok_cli.main import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args: str):
    return runner.invoke(app, ["sample", *args])


def test_end_to_end_tiny(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = invoke(
        "--gpt",
        "gpt-tiny",
        "--classes",
        "bald eagle,388",
        "--num-per-class",
        "1",
        "--output",
        str(out),
        "--grid",
        "--save-codes",
        "--device",
        "cpu",
        "--cfg-schedule",
        "cosine",
        "--top-k",
        "100",
    )
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "022_bald-eagle_0000.png",
        "388_giant-panda_0000.png",
        "codes.npz",
        "grid.png",
        "sample.json",
    ]
    assert f"wrote 2 images to {out}" in " ".join(res.output.split()) and "codes.npz" in res.output
    settings = json.loads((out / "sample.json").read_text())
    assert settings["cfg"]["schedule"] == "cosine" and settings["sampling"]["top_k"] == 100
    # the same command again: everything is there, nothing is regenerated
    res = invoke(
        "--gpt",
        "gpt-tiny",
        "--classes",
        "bald eagle,388",
        "--output",
        str(out),
        "--device",
        "cpu",
        "--cfg-schedule",
        "cosine",
        "--top-k",
        "100",
    )
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "wrote 0 images" in text and "2 already there" in text


def test_options_reach_the_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}

    def fake(request, **kw):
        from gigatok_core.tasks.sample import SampleResult

        seen.update(vars(request))  # the CLI hands the library one SampleRequest
        return SampleResult(output_dir=str(request.output), total=0, generated=[], skipped=0)  # nothing to do

    monkeypatch.setattr("gigatok_core.tasks.sample.sample_images", fake)  # the CLI imports it when it runs
    res = invoke(
        "--gpt",
        "gpt-xxl",
        "--tokenizer",
        "xl-xxl",
        "--classes",
        "22,388",
        "-o",
        str(tmp_path),
        "--num-per-class",
        "3",
        "--cfg-scale",
        "1.75",
        "--cfg-schedule",
        "step",
        "--cfg-start-ratio",
        "0.2",
        "--temperature",
        "0.9",
        "--top-k",
        "5",
        "--top-p",
        "0.95",
        "--seed",
        "7",
        "--precision",
        "fp32",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--gpt-checkpoint",
        "g.pt",
        "--tokenizer-checkpoint",
        "t.pt",
        "--overwrite",
        "--rng",
        "official",
        "--compile",
    )
    assert res.exit_code == 0, res.output
    assert seen["classes"] == "22,388" and seen["gpt"] == "gpt-xxl" and seen["tokenizer"] == "xl-xxl"
    cfg = (seen["cfg_scale"], seen["cfg_schedule"], seen["cfg_start_ratio"], seen["cfg_end_ratio"])
    assert cfg == (1.75, "step", 0.2, None)
    assert (seen["temperature"], seen["top_k"], seen["top_p"]) == (0.9, 5, 0.95)
    assert (seen["num_per_class"], seen["seed"], seen["batch_size"], seen["device"]) == (3, 7, 2, "cpu")
    assert seen["gpt_checkpoint"] == Path("g.pt") and seen["tokenizer_checkpoint"] == Path("t.pt")
    assert seen["overwrite"] and seen["rng"] == "official" and not seen["grid"] and not seen["save_codes"]
    assert seen["compile"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "1200"], "outside 0-999"),
        (["--classes", "giant pandda"], "388 (giant panda)"),
        (["--classes", "22", "--gpt", "gpt-l", "--tokenizer", "b-l"], "no gpt-l checkpoint was released"),
        (["--classes", "22", "--gpt", "gpt-tiny", "--tokenizer", "b-l"], "codebook"),
        (["--classes", "22", "--cfg-schedule", "exp"], "unknown CFG schedule"),
        (["--classes", "22", "--top-p", "0"], "top-p"),
        (["--classes", "22", "--rng", "fast"], "unknown --rng"),
        (["--classes", "22", "--gpt", "gpt-b"], "not in the cache"),
    ],
)
def test_user_errors_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    res = invoke(*args, "--output", str(tmp_path / "o"), "--device", "cpu")
    assert res.exit_code == 1, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output


def test_existing_files_need_overwrite(tmp_path: Path) -> None:
    (tmp_path / "022_bald-eagle_0000.png").write_bytes(b"keep")
    res = invoke("--gpt", "gpt-tiny", "--classes", "22", "--output", str(tmp_path), "--device", "cpu")
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert (tmp_path / "022_bald-eagle_0000.png").read_bytes() == b"keep"


def test_help_lists_the_options() -> None:
    res = runner.invoke(app, ["sample", "--help"], env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"})
    assert res.exit_code == 0
    for opt in (
        "--classes",
        "--num-per-class",
        "--cfg-schedule",
        "--cfg-start-ratio",
        "--top-p",
        "--grid",
        "--save-codes",
        "--gpt-checkpoint",
        "--tokenizer-checkpoint",
        "--overwrite",
        "--compile",
    ):
        assert opt in res.output


@pytest.mark.spawn
def test_torchrun_two_ranks_match_single_process(tmp_path: Path) -> None:
    """Real torchrun (gloo on CPU): ranks shard the plan; codes equal a one-process run."""
    common = [
        "--gpt",
        "gpt-tiny",
        "--classes",
        "22,388",
        "--num-per-class",
        "2",
        "--save-codes",
        "--device",
        "cpu",
        "--batch-size",
        "3",
        "--top-k",
        "30",
    ]
    proc = run_torchrun(
        "sample",
        *common,
        "--output",
        str(tmp_path / "multi"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("wrote 4 images") == 1  # rank 0 reports the total, once
    res = invoke(*common, "--output", str(tmp_path / "single"))
    assert res.exit_code == 0, res.output
    multi, single = np.load(tmp_path / "multi" / "codes.npz"), np.load(tmp_path / "single" / "codes.npz")
    np.testing.assert_array_equal(multi["codes"], single["codes"])
    np.testing.assert_array_equal(multi["labels"], [22, 22, 388, 388])
    assert len(list((tmp_path / "multi").glob("*.png"))) == 4
    from PIL import Image  # the README's guarantee: pixels within one level (workers run one thread)

    for png in sorted((tmp_path / "single").glob("*.png")):
        a = np.asarray(Image.open(png), dtype=int)
        b = np.asarray(Image.open(tmp_path / "multi" / png.name), dtype=int)
        assert np.abs(a - b).max() <= 1, png.name
