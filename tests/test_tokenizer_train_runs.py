"""A tokenizer training run folder used elsewhere, and the run-folder bad inputs of issue 11.

`gigatok eval rfid --checkpoint RUN_DIR`; `gigatok train export RUN_DIR OUT.safetensors` then
`gigatok reconstruct --checkpoint OUT.safetensors` (self-describing); an output folder holding another
config's run; a corrupt latest checkpoint. The tiny 32x32 setup of test_tokenizer_train.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_tokenizer_train import SMALL, _env, _records, _train
from toktrain_kit import write_frozen, write_images
from typer.testing import CliRunner

from gigatok_cli.main import app

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = ["recipe.disc_start=2", "--batch-size", "2", "--log-every", "1", "--save-every", "2"]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("toktrain-runs")
    return {**write_frozen(root / "frozen"), "images": write_images(root / "images", n=4, size=40)}


@pytest.fixture(scope="module")
def run(kit: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    """4 steps with EMA: checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    res = _train(kit, out, *SMALL, *STEPS, "--max-steps", "4", "--ema")
    assert res.exit_code == 0, res.output
    return out


def _invoke(kit: dict[str, Path], *args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env=_env(kit))


def test_eval_rfid_on_a_run_folder(run: Path, kit: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """The run's EMA weights are scored (a cheap stand-in Inception: the checkpoint path is tested)."""
    from evalkit import tiny_evaluator

    from gigatok_core.evaluation import commands

    monkeypatch.setattr(commands, "make_evaluator", lambda *a, **k: tiny_evaluator(batch_size=4))
    monkeypatch.setenv("GIGATOK_CACHE", str(tmp_path / "cache"))
    shutil.copytree(kit["images"], tmp_path / "val" / "n0")
    res = _invoke(
        kit, "eval", "rfid", "--tokenizer", "tiny", "--data", tmp_path / "val", "--checkpoint", run,
        "--no-lpips", "--no-precision-recall", "--device", "cpu", "--json", tmp_path / "r.json",
        "--save-samples", tmp_path / "recon",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["num_images"] == 4 and 0 < got["codebook_usage"] <= 1 and got["psnr"] > 0
    assert len(list((tmp_path / "recon").glob("*.png"))) == 4


def test_export_then_reconstruct_from_the_file(run: Path, kit: dict[str, Path], tmp_path: Path) -> None:
    from gigatok_core.checkpoints.files import read_weights_meta
    from gigatok_core.checkpoints.training import load_checkpoint
    from gigatok_core.tokenizer.load import load_tokenizer

    dest = tmp_path / "mine.safetensors"
    res = _invoke(kit, "train", "export", run, dest)
    assert res.exit_code == 0, res.output
    meta = read_weights_meta(dest)
    assert meta is not None and meta["kind"] == "tokenizer" and meta["preset"] == "tiny"
    assert meta["config"]["image_size"] == 32  # the trained config, not the preset's
    model = load_tokenizer(dest, device="cpu")
    ema = load_checkpoint(run).weights["ema"]
    sd = model.state_dict()
    assert all(sd[k].equal(v) for k, v in ema.items() if k in sd)  # EMA preferred
    out = tmp_path / "recon"
    res = _invoke(kit, "reconstruct", kit["images"], "--checkpoint", dest, "-o", out)
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("*.png"))) == 4


def test_output_folder_of_another_config_is_refused(run: Path, kit: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(run, other)
    before = (other / "metrics.jsonl").read_text()
    res = _train(kit, other, *SMALL, *STEPS, "--max-steps", "5", "--ema", "model.codebook_size=512")
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "another config" in res.output and "codebook_size" in res.output and "--overwrite" in res.output
    assert (other / "metrics.jsonl").read_text() == before  # nothing lost
    res = _train(
        kit, other, *SMALL, *STEPS, "--max-steps", "1", "model.codebook_size=512", "--resume", "never"
    )
    assert res.exit_code != 0 and "--overwrite" in res.output
    res = _train(
        kit,
        other,
        *SMALL,
        *STEPS,
        "--max-steps",
        "1",
        "model.codebook_size=512",
        "--resume",
        "never",
        "--overwrite",
    )
    assert res.exit_code == 0, res.output
    assert [r["step"] for r in _records(other)] == [1]


def test_corrupt_latest_checkpoint_resumes_from_the_previous(
    run: Path, kit: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    latest = copy / "checkpoints" / "step-00000004" / "model.safetensors"
    latest.write_bytes(latest.read_bytes()[:100])  # cut short, as by a full disk outside our writes
    res = _train(kit, copy, *SMALL, *STEPS, "--max-steps", "5", "--ema")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    assert "step-00000002" in res.output and "unreadable" in res.output  # the note
    assert [r["step"] for r in _records(copy)] == [1, 2, 3, 4, 5]  # steps 3-4 redone
    ref = _records(run)
    assert _records(copy)[2]["loss"] == pytest.approx(ref[2]["loss"], rel=1e-6)
