"""--precision on CPU: fp32 always, bf16 where the CPU runs it natively, fp16 only on CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core import dist
from gigatok_core.errors import GigatokError

runner = CliRunner()
CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the CPU has AVX512-BF16/AMX (bf16 still runs, emulated, where it has not)."""
    monkeypatch.setattr(dist, "cpu_has_native_bf16", lambda: True)


def test_fp32_resolves_everywhere() -> None:
    assert dist.resolve_precision("fp32", CPU) is torch.float32


def test_bf16_on_a_cpu_with_native_support(native_bf16: None) -> None:
    assert dist.resolve_precision("bf16", CPU) is torch.bfloat16


def test_bf16_on_a_cpu_without_it_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(GigatokError, match="needs native bf16 support") as err:
        dist.resolve_precision("bf16", CPU)
    assert "--precision fp32" in err.value.hint


@pytest.mark.parametrize(
    ("precision", "match"), [("fp16", "needs a CUDA device"), ("fp8", "unknown precision")]
)
def test_other_precisions_are_refused_on_cpu(precision: str, match: str) -> None:
    with pytest.raises(GigatokError, match=match):
        dist.resolve_precision(precision, CPU)


def test_native_bf16_query_answers_a_bool() -> None:
    assert isinstance(dist.cpu_has_native_bf16(), bool)


@pytest.mark.usefixtures("one_thread", "native_bf16")
def test_sample_and_reconstruct_run_in_bf16_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "samples"
    args = ["--gpt", "gpt-tiny", "--classes", "22", "--precision", "bf16", "--device", "cpu"]
    res = runner.invoke(app, ["sample", *args, "--output", str(out), "--save-codes"])
    assert res.exit_code == 0, res.output
    png = out / "022_bald-eagle_0000.png"
    assert np.asarray(Image.open(png)).shape == (256, 256, 3)
    assert np.load(out / "codes.npz")["codes"].shape == (1, 256)
    assert json.loads((out / "sample.json").read_text())["precision"] == "bf16"

    recon = tmp_path / "recon"
    res = runner.invoke(
        app,
        ["reconstruct", str(png), "-t", "tiny", "--precision", "bf16", "--device", "cpu", "-o", str(recon)],
    )
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(recon / png.name)).shape == (256, 256, 3)
