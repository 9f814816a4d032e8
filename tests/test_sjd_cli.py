"""`--sampler sjd` through `gigatok sample`, `gigatok eval gfid` and torchrun (gpt-tiny, random weights)."""

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

COMMON = ["--gpt", "gpt-tiny", "--classes", "22,388", "--device", "cpu", "--save-codes", "--top-k", "50"]


def sample(*args: str):
    return runner.invoke(app, ["sample", *args])


def test_sample_sjd_end_to_end(tmp_path: Path) -> None:
    res = sample(*COMMON, "-n", "1", "--sampler", "sjd", "--sjd-window", "8", "-o", str(tmp_path / "a"))
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "wrote 2 images" in text and "sjd: " in text and "GPT forward passes" in text
    settings = json.loads((tmp_path / "a" / "sample.json").read_text())
    assert settings["sampler"] == {"name": "sjd", "window": 8}
    assert len(list((tmp_path / "a").glob("*.png"))) == 2
    # an image does not depend on the batch it was drawn in
    res = sample(
        *COMMON, "-n", "1", "--sampler", "sjd", "--sjd-window", "8", "-b", "1", "-o", str(tmp_path / "b")
    )
    assert res.exit_code == 0, res.output
    a, b = np.load(tmp_path / "a" / "codes.npz"), np.load(tmp_path / "b" / "codes.npz")
    np.testing.assert_array_equal(a["codes"], b["codes"])
    # a folder of SJD samples is not extended with the standard sampler (nor another window)
    for other in ([], ["--sampler", "sjd", "--sjd-window", "4"]):
        res = sample(*COMMON, "-n", "2", *other, "-o", str(tmp_path / "a"))
        assert res.exit_code == 1 and "sampler" in res.output, res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "sjd", "--rng", "official"], "--sampler sjd draws from per-sample generators"),
        (["--sampler", "jacobi"], "unknown --sampler 'jacobi'"),
    ],
)
def test_sampler_errors_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    res = sample(*COMMON, *args, "-o", str(tmp_path / "o"))
    assert res.exit_code == 1, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_window_must_be_positive(tmp_path: Path) -> None:
    res = sample(*COMMON, "--sampler", "sjd", "--sjd-window", "0", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--sjd-window" in res.output and "Traceback" not in res.output


def test_gfid_passes_the_sampler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict = {}

    def fake(gpt, **kw):
        seen.update(kw)
        return {"fid": 1.0}

    monkeypatch.setattr("gigatok_core.evaluation.generation.evaluate_generation", fake)
    args = ["eval", "gfid", "--gpt", "gpt-tiny", "--output", str(tmp_path / "o"), "--num-classes", "2"]
    res = runner.invoke(app, [*args, "--num-per-class", "1", "--sampler", "sjd", "--sjd-window", "5"])
    assert res.exit_code == 0, res.output
    assert seen["sampler"] == "sjd" and seen["sjd_window"] == 5
    seen.clear()
    res = runner.invoke(app, [*args, "--num-per-class", "1"])  # the default: nothing new recorded
    assert res.exit_code == 0, res.output
    assert "sampler" not in seen and "sjd_window" not in seen


@pytest.mark.slow  # ~30 s; the sharding is the standard sampler's (test_sample_cli.py), per-row RNG above
def test_torchrun_two_ranks_match_single_process(tmp_path: Path) -> None:
    """SJD under the launcher's torchrun (gloo on CPU): the same codes as one process."""
    args = [*COMMON, "-n", "2", "--batch-size", "3", "--sampler", "sjd", "--sjd-window", "6"]
    proc = run_torchrun("sample", *args, "--output", str(tmp_path / "multi"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = sample(*args, "--output", str(tmp_path / "single"))
    assert res.exit_code == 0, res.output
    multi, single = np.load(tmp_path / "multi" / "codes.npz"), np.load(tmp_path / "single" / "codes.npz")
    np.testing.assert_array_equal(multi["codes"], single["codes"])


def test_bench_compares_the_samplers(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("bench_sample", REPO / "bench" / "sample.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--gpt", "gpt-tiny", "--tokens", "12", "--compare", "1,3", "--iters", "1", "--sjd-window", "4"]
    table = bench.main([*args, "--top-k", "20"])["compare"]
    assert [r["batch"] for r in table] == [1, 3]
    for r in table:
        assert r["standard_passes"] == 12 and 3 <= r["sjd_passes"] <= 12  # >= tokens / (window + 1)
        assert r["sjd_row_passes"] <= r["sjd_passes"] and 0 <= r["sjd_acceptance"] <= 1
        assert r["pass_reduction"] == pytest.approx(12 / r["sjd_passes"])
    assert "reduction" in capsys.readouterr().out
