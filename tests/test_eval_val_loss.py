"""`gigatok eval val-loss` on gpt-tiny + tiny: equals a direct computation, world-size independent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_torchrun
from evalkit import write_images
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.ar.load import load_gpt
from gigatok_core.data.images import load_image, to_tensor
from gigatok_core.dist import HandSplit
from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.val_loss import validation_loss
from gigatok_core.tokenizer import load_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "val"
    write_images(root / "n02", 2, seed=1)  # sorted: n01 -> label 0, n02 -> label 1
    write_images(root / "n01", 2, seed=2)
    return root


def _direct(folder: Path, batch_size: int) -> tuple[float, float]:
    """Batch means and per-token mean, written out with the model by hand."""
    files = sorted((folder / "n01").glob("*.png")) + sorted((folder / "n02").glob("*.png"))
    labels = torch.tensor([0, 0, 1, 1])
    tok = load_tokenizer("tiny")
    gpt, _ = load_gpt("gpt-tiny")
    with torch.inference_mode():
        codes = tok.encode(to_tensor(np.stack([load_image(f, 256) for f in files])))  # (4, 256)
        logits = gpt(labels, codes[:, :255])  # (4, 256, V)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1), reduction="none").view(
            4, 256
        )
    means = [ce[i : i + batch_size].mean().item() for i in range(0, 4, batch_size)]
    return float(np.mean(means)), ce.mean().item()


def test_cli_equals_direct_computation(folder: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "val-loss",
            "--gpt",
            "gpt-tiny",
            "--data",
            str(folder),
            "--batch-size",
            "3",
            "--device",
            "cpu",
            "--class-subset",
            "--json",
            str(tmp_path / "v.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Val loss (mean of batch means)" in res.output and "Val loss (per token)" in res.output
    got = json.loads((tmp_path / "v.json").read_text())
    batch_mean, per_token = _direct(folder, 3)
    assert batch_mean != pytest.approx(per_token, abs=1e-6)  # batches of 3 + 1: the two means differ
    assert got["val_loss"] == pytest.approx(batch_mean, rel=1e-5)
    assert got["val_loss_per_token"] == pytest.approx(per_token, rel=1e-5)
    assert got["num_images"] == 4 and got["num_batches"] == 2 and got["num_classes"] == 2
    assert got["tokenizer"] == "tiny" and got["precision"] == "fp32"
    assert 0 < got["val_loss"] < 2 * np.log(1024)


def test_two_simulated_ranks_equal_one_process(folder: Path) -> None:
    stash: list = []
    kw = dict(batch_size=1, device="cpu", class_subset=True)
    assert (
        validation_loss(
            "gpt-tiny", folder, ctx=HandSplit(1, 2, gather=lambda p: stash.append(p) or [p]), **kw
        )
        is None
    )
    assert [r[0] for r in stash[0]] == [1, 3]  # batches 1 and 3 of 0..3
    multi = validation_loss("gpt-tiny", folder, ctx=HandSplit(0, 2, gather=lambda p: [p, stash[0]]), **kw)
    single = validation_loss("gpt-tiny", folder, **kw)
    assert multi is not None and single is not None
    assert multi.val_loss == pytest.approx(single.val_loss, rel=1e-6)
    assert multi.val_loss_per_token == pytest.approx(single.val_loss_per_token, rel=1e-6)
    assert single.val_loss == pytest.approx(single.val_loss_per_token, rel=1e-6)  # batch 1: the same mean
    with pytest.raises(GigatokError, match="2 of 4 batches"):
        validation_loss("gpt-tiny", folder, ctx=HandSplit(0, 2), **kw)


def test_folder_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "flat", 1, seed=0)
    with pytest.raises(GigatokError, match="no class sub-folders"):
        validation_loss("gpt-tiny", tmp_path / "flat", device="cpu")
    many = tmp_path / "many"
    for i in range(1001):
        (many / f"c{i:04d}").mkdir(parents=True)
    with pytest.raises(GigatokError, match="1001 class folders but the GPT knows 1000"):
        validation_loss("gpt-tiny", many, device="cpu")
    write_images(tmp_path / "holey" / "a", 1, seed=0)
    (tmp_path / "holey" / "b").mkdir()
    write_images(tmp_path / "holey" / "c", 1, seed=1)
    res = CliRunner().invoke(
        app, ["eval", "val-loss", "--gpt", "gpt-tiny", "--data", str(tmp_path / "holey")]
    )  # 3 folders for a 1000-class GPT: the labels would not be the GPT's classes
    assert res.exit_code == 1 and "3 class folders" in res.output and "--class-subset" in res.output
    from gigatok_core.data.folder import image_folder

    files, labels, classes = image_folder(tmp_path / "holey", 1000, class_subset=True)
    assert classes == ["a", "b", "c"] and labels == [0, 2]  # the empty folder keeps label 1
    assert [f.parent.name for f in files] == ["a", "c"]
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "val-loss",
            "--gpt",
            "gpt-tiny",
            "--data",
            str(tmp_path / "flat"),
            "--precision",
            "fp16",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 1 and "needs a CUDA device" in res.output and "fp32" in res.output


@pytest.mark.spawn
def test_torchrun_two_ranks_cli(folder: Path, tmp_path: Path) -> None:
    proc = run_torchrun(
        "eval",
        "val-loss",
        "--gpt",
        "gpt-tiny",
        "--data",
        str(folder),
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--class-subset",
        "--json",
        str(tmp_path / "v.json"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("val loss: gpt-tiny") == 1  # rank 0 prints, rank 1 exits quietly
    got = json.loads((tmp_path / "v.json").read_text())
    batch_mean, per_token = _direct(folder, 1)
    assert got["num_batches"] == 4 and got["val_loss"] == pytest.approx(batch_mean, rel=1e-5)
    assert got["val_loss_per_token"] == pytest.approx(per_token, rel=1e-5)
