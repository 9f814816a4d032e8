"""`gigatok probe gpt|tokenizer` end to end on tiny presets, and its refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from probekit import colour_folder
from typer.testing import CliRunner

from gigatok_cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe-cli")
    two = ((230, 30, 30), (30, 30, 230))
    colour_folder(root / "train", 2, seed=0, classes=two)
    colour_folder(root / "val", 1, seed=1, classes=two)
    return root


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--train-split",
        str(data / "train"),
        "--val-split",
        str(data / "val"),
        "--output",
        str(out),
        *extra,
    ]


def test_probe_tokenizer_cached_writes_metrics_results_and_resumes(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        "probe",
        "tokenizer",
        "--tokenizer",
        "tiny",
        *_args(data, out),
        "--max-epochs",
        "2",
        "--batch-size",
        "2",
    ]
    cmd += ["--cache-features", "--device", "cpu", "momentum=0.8"]
    res = runner.invoke(app, cmd)
    assert res.exit_code == 0, res.output
    assert "top-1" in res.output and "final top-1" in res.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all({"top1", "top5", "loss"} <= set(r) for r in rows)
    final = json.loads((out / "results.json").read_text())
    assert final["top1"] == rows[-1]["top1"] and final["features"] == {
        "kind": "tokenizer",
        "mode": "encoder",
        "dim": 64,
    }
    settings = json.loads((out / "config.json").read_text())
    assert settings["probe"]["momentum"] == 0.8 and settings["lr"] == pytest.approx(0.1 * 2 / 256)
    # The same command again finds the run finished: same numbers, nothing recomputed.
    again = runner.invoke(app, cmd)
    assert again.exit_code == 0, again.output
    assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == rows
    # Other settings in the same folder are refused.
    other = runner.invoke(app, [*cmd[:-1], "momentum=0.7"])
    assert other.exit_code == 1 and "other settings" in other.output


def test_probe_gpt_online_one_epoch(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        "probe",
        "gpt",
        "--gpt",
        "gpt-tiny@tiny",
        *_args(data, out),
        "--max-epochs",
        "1",
        "--batch-size",
        "2",
    ]
    res = runner.invoke(app, [*cmd, "--device", "cpu", "--subset", "2"])
    assert res.exit_code == 0, res.output
    final = json.loads((out / "results.json").read_text())
    assert final["features"] == {"kind": "gpt", "layer": 1, "dim": 64}
    assert final["meta"]["tokenizer"] == "tiny" and 0 <= final["top1"] <= 100


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["probe", "gpt", "--gpt", "gpt-tiny@s-s"], "codebook"),
        (["probe", "gpt", "--gpt", "gpt-tiny", "--layer", "7"], "layer 7 does not exist"),
        (["probe", "tokenizer", "--tokenizer", "tiny", "--fix-dim", "--from-decoder"], "exclude each other"),
        (["probe", "tokenizer", "--tokenizer", "tiny", "momentun=0.5"], "known keys"),
        (["probe", "tokenizer", "--tokenizer", "tiny", "--batch-size", "0"], "batch_size"),
        (["probe", "tokenizer", "--tokenizer", "nope"], "unknown tokenizer preset"),
    ],
)
def test_bad_options_exit_1_with_a_message(
    data: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    res = runner.invoke(app, [*extra, *_args(data, tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output


def test_bad_splits_exit_1(data: Path, tmp_path: Path) -> None:
    colour_folder(tmp_path / "val3", 1, seed=2)  # three classes against two
    (tmp_path / "empty" / "class0").mkdir(parents=True)
    base = ["probe", "tokenizer", "--tokenizer", "tiny", "--device", "cpu", "--output", str(tmp_path / "o")]
    res = runner.invoke(
        app, [*base, "--train-split", str(data / "train"), "--val-split", str(tmp_path / "val3")]
    )
    assert res.exit_code == 1 and "different class folders" in res.output
    res = runner.invoke(
        app, [*base, "--train-split", str(tmp_path / "empty"), "--val-split", str(data / "val")]
    )
    assert res.exit_code == 1 and "hold no image" in res.output
    assert not (tmp_path / "o").exists()  # nothing written for refused input


def test_recipe_option_defaults_are_probe_config_defaults() -> None:
    from gigatok_cli.probe import _RECIPE
    from gigatok_core.probe import ProbeConfig

    defaults = ProbeConfig()
    assert set(_RECIPE) <= {f.name for f in dataclasses.fields(ProbeConfig)}
    for name, (_, default) in _RECIPE.items():
        assert default == (None if name == "precision" else getattr(defaults, name)), name


def test_bench_probe_smoke(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_probe", Path(__file__).parents[1] / "bench" / "probe.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(
        [
            "--smoke",
            "--num-features",
            "64",
            "--backbone",
            "tokenizer:tiny",
            "--json",
            str(tmp_path / "b.json"),
        ]
    )
    assert out["features_per_s[tokenizer:tiny]"] > 0 and out["epoch_seconds"] > 0
    assert json.loads((tmp_path / "b.json").read_text()) == out


@pytest.mark.spawn
@pytest.mark.slow  # two worker processes importing torch: ~30 s on a busy 2-core machine
def test_probe_with_two_processes_through_the_launcher(data: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "gigatok_cli.main",
        "probe",
        "tokenizer",
        "--tokenizer",
        "tiny",
        *_args(data, out),
    ]
    cmd += [
        "--max-epochs",
        "2",
        "--batch-size",
        "2",
        "--cache-features",
        "--device",
        "cpu",
        "--nproc-per-node",
        "2",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**env, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert proc.stdout.count("final top-1") == 1  # rank 0 renders, once


def test_probe_gpt_of_a_training_run_needs_no_gpt_flag(data: Path, tmp_path: Path) -> None:
    from probekit import small_gpt

    from gigatok_core.checkpoints.training import save_checkpoint

    gpt = small_gpt(block_size=256)  # gpt-tiny's own shape
    tok = {"preset": "tiny", "checkpoint": None, "sha256": None, "codebook_size": 1024, "num_tokens": 256}
    meta = {"step": 5, "kind": "gpt", "preset": "gpt-tiny", "tokenizer": tok}
    save_checkpoint(
        tmp_path / "gptrun" / "checkpoints", weights={"model": gpt.state_dict()}, state={}, meta=meta
    )
    out = tmp_path / "run"
    cmd = [
        "probe",
        "gpt",
        "--gpt-checkpoint",
        str(tmp_path / "gptrun"),
        *_args(data, out),
        "--max-epochs",
        "1",
    ]
    res = runner.invoke(app, [*cmd, "--batch-size", "2", "--cache-features", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    final = json.loads((out / "results.json").read_text())
    assert final["meta"]["gpt"] == "gpt-tiny" and final["meta"]["tokenizer"] == "tiny"
    assert final["meta"]["gpt_checkpoint"]["path"].endswith("step-00000005/model.safetensors")
