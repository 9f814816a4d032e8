"""Weights references as a user gives them: one resolver for every weights option, recorded paths
that resolve from anywhere (checked by hash), a GPT run that carries its preset, tokenizer and class
names to `sample` and `eval gfid`, and results that name the exact weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from evalkit import tiny_evaluator
from PIL import Image
from typer.testing import CliRunner

import gigatok_core.evaluation.commands as eval_commands
from gigatok_cli.main import app
from gigatok_core.config.source import weights_file
from gigatok_core.errors import GigatokError
from gigatok_core.utils.fileio import sha256_file

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ("Cats", "space rocks")


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(2):
            low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            Image.fromarray(low).resize((32, 32)).save(root / name / f"{i}.png")
    return root


def _ok(res) -> None:
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's tree built with relative paths from its own folder: a tiny tokenizer checkpoint,
    codes extracted with it, a gpt-tiny run trained on them (1 step)."""
    from safetensors.torch import save_file

    from gigatok_core.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("user") / "tree"
    _images(root / "imgs")
    (root / "tok").mkdir()
    save_file(load_tokenizer("tiny").state_dict(), str(root / "tok" / "tok.safetensors"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        extracted = runner.invoke(
            app,
            [
                "train",
                "extract-codes",
                "--tokenizer",
                "tiny",
                "--checkpoint",
                "tok/tok.safetensors",
                "--data",
                "imgs",
                "--output",
                "codes",
                "--device",
                "cpu",
                "--batch-size",
                "4",
                "--workers",
                "0",
                "--check-images",
                "0",
            ],
        )
        _ok(extracted)
        assert "wrote 4 images x 2 crops in 1 shard to" in extracted.output  # not "1 shards"
        _ok(
            runner.invoke(
                app,
                [
                    "train",
                    "gpt",
                    "--preset",
                    "gpt-tiny",
                    "--codes",
                    "codes",
                    "--output",
                    "runs/gpt",
                    "--max-steps",
                    "1",
                    "--batch-size",
                    "4",
                    "--device",
                    "cpu",
                    "--sample-every",
                    "1",
                ],
            )
        )
    return root


def _sample(run: Path, out: Path, *extra: str):
    return runner.invoke(
        app, ["sample", "--gpt-checkpoint", str(run), "-c", "0,space rocks", "-o", str(out), *extra]
    )


# ---------------------------------------------------------------------------------------------
# Items 2, 3, 17: a run alone is enough, from anywhere; its classes name the samples
# ---------------------------------------------------------------------------------------------
def test_records_hold_absolute_and_relative_paths_and_hashes(tree: Path) -> None:
    tok = tree / "tok" / "tok.safetensors"
    manifest = json.loads((tree / "codes" / "manifest.json").read_text())["tokenizer"]
    assert manifest["checkpoint"] == str(tok.resolve())  # not "tok/tok.safetensors" (cwd-relative)
    assert manifest["checkpoint_relative"] == "../tok/tok.safetensors"  # from the codes folder
    assert manifest["sha256"] == sha256_file(tok)
    meta = json.loads(next((tree / "runs" / "gpt" / "checkpoints").glob("step-*/meta.json")).read_text())
    assert meta["tokenizer"]["checkpoint_relative"] == "../../tok/tok.safetensors"  # from the run folder
    assert meta["classes"] == list(CLASSES)


def test_sample_with_a_run_alone_from_another_folder(tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # neither the runs' folder nor where they were made
    res = _sample(tree / "runs" / "gpt", tmp_path / "s", "--grid")  # no --gpt, no --tokenizer
    _ok(res)
    settings = json.loads((tmp_path / "s" / "sample.json").read_text())
    tok = (tree / "tok" / "tok.safetensors").resolve()
    assert (settings["gpt"], settings["tokenizer"]) == ("gpt-tiny", "tiny")
    assert settings["tokenizer_checkpoint"] == str(tok)
    assert settings["weights"]["tokenizer"] == {
        "path": str(tok),
        "relative": None,
        "sha256": sha256_file(tok),
    }
    assert settings["weights"]["gpt"]["sha256"] == sha256_file(settings["weights"]["gpt"]["path"])
    # the run's own classes name the files and the grid labels, not ImageNet's (000_tench)
    assert sorted(p.name for p in (tmp_path / "s").glob("0*.png")) == [
        "000_cats_0000.png",
        "001_space-rocks_0000.png",
    ]
    assert settings["class_names"] == list(CLASSES)
    assert "wrote 2 images" in res.output
    one = runner.invoke(app, ["sample", "--gpt-checkpoint", str(tree / "runs/gpt"), "-c", "1", "-o", "one"])
    assert "wrote 1 image to" in one.output
    res = runner.invoke(app, ["sample", "--gpt-checkpoint", str(tree / "runs/gpt"), "-c", "tench", "-o", "x"])
    assert res.exit_code == 1 and "no class 'tench'" in res.output and "Cats" in res.output


def test_tokenizer_preset_beside_a_run_uses_the_recorded_weights(tree: Path, tmp_path: Path) -> None:
    """`--tokenizer tiny` (the run's preset) must not decode with tiny's random weights."""
    _ok(_sample(tree / "runs" / "gpt", tmp_path / "a", "--tokenizer", "tiny"))
    settings = json.loads((tmp_path / "a" / "sample.json").read_text())
    assert settings["tokenizer_checkpoint"] == str((tree / "tok" / "tok.safetensors").resolve())
    assert "recorded by the GPT run" in settings["tokenizer_weights"]


def test_a_moved_tree_is_found_relative_to_the_run_and_checked_by_hash(tree: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(tree, moved)
    shutil.rmtree(tree / "tok")  # the absolute path recorded no longer exists
    try:
        _ok(_sample(moved / "runs" / "gpt", tmp_path / "s"))
        settings = json.loads((tmp_path / "s" / "sample.json").read_text())
        assert settings["tokenizer_checkpoint"] == str((moved / "tok" / "tok.safetensors").resolve())
        (moved / "tok" / "tok.safetensors").write_bytes(b"x" * 100)  # other bytes under that name
        res = _sample(moved / "runs" / "gpt", tmp_path / "t")
        assert res.exit_code == 1 and "changed since it was recorded" in res.output
        assert "--tokenizer-checkpoint" in res.output and "Traceback" not in res.output
    finally:
        shutil.copytree(moved / "tok", tree / "tok", dirs_exist_ok=True)
        from safetensors.torch import save_file

        from gigatok_core.tokenizer import load_tokenizer

        save_file(load_tokenizer("tiny").state_dict(), str(tree / "tok" / "tok.safetensors"))


# ---------------------------------------------------------------------------------------------
# Item 4: one resolver for every weights option
# ---------------------------------------------------------------------------------------------
def test_one_resolver_takes_files_run_folders_export_folders(tree: Path, tmp_path: Path) -> None:
    run = tree / "runs" / "gpt"
    newest = weights_file(run, kind="gpt")
    assert (
        newest.name in ("ema.safetensors", "model.safetensors") and newest.parent.parent.name == "checkpoints"
    )
    assert weights_file(newest.parent, kind="gpt") == newest  # a step folder
    assert weights_file(newest) == newest  # a file
    export = tmp_path / "export"
    _ok(runner.invoke(app, ["train", "export", str(run), str(export / "gpt.safetensors")]))
    assert weights_file(export, kind="gpt") == export / "gpt.safetensors"  # an export folder
    with pytest.raises(GigatokError, match="folder without tokenizer weights"):
        weights_file(tmp_path / "export", kind="tokenizer")
    from gigatok_core import hub
    from gigatok_core.weights import resolve_weights

    asked = []

    def fake_hub(ref: str) -> Path:  # the hub branch: a hub id -> a local copy, then as a path
        asked.append(ref)
        return export

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hub, "resolve_hub_ref", fake_hub, raising=False)
        assert resolve_weights(Path("hf://someone/gpt@v1"), kind="gpt") == export / "gpt.safetensors"
    assert asked == ["hf://someone/gpt@v1"]  # the id survives a Path's "//" -> "/"


def test_tokenizer_checkpoint_takes_a_run_folder(tree: Path, tmp_path: Path) -> None:
    """`--tokenizer-checkpoint RUN_DIR` (also an export folder) works as `--checkpoint` does elsewhere."""
    from gigatok_core.checkpoints.files import save_weights
    from gigatok_core.tokenizer import load_tokenizer

    folder = tmp_path / "tokrun"
    save_weights(
        folder / "tok.safetensors",
        load_tokenizer("tiny").state_dict(),
        {"kind": "tokenizer", "preset": "tiny"},
    )
    res = _sample(tree / "runs" / "gpt", tmp_path / "s", "--tokenizer-checkpoint", str(folder))
    _ok(res)
    settings = json.loads((tmp_path / "s" / "sample.json").read_text())
    assert settings["tokenizer_checkpoint"] == str((folder / "tok.safetensors").resolve())
    res = _sample(tree / "runs" / "gpt", tmp_path / "t", "--tokenizer-checkpoint", str(tmp_path / "empty"))
    assert res.exit_code == 1 and "does not exist" in res.output


# ---------------------------------------------------------------------------------------------
# Items 2, 15: eval gfid with a run alone, and its results name the weights
# ---------------------------------------------------------------------------------------------
def test_gfid_with_a_run_alone_names_its_weights(tree: Path, tmp_path: Path, monkeypatch) -> None:
    from gigatok_core.evaluation import EvalStats, Features, save_statistics

    rng = np.random.default_rng(0)
    feats = Features(
        pool=rng.normal(size=(6, 12)).astype(np.float32),
        spatial=rng.normal(size=(6, 6)).astype(np.float32),
        logits=rng.normal(size=(6, 7)).astype(np.float32),
    )
    save_statistics(tmp_path / "ref.npz", EvalStats.from_features(feats, protocol="gfid-adm"))
    ev = tiny_evaluator()
    monkeypatch.setattr(eval_commands, "make_evaluator", lambda *a, **k: ev)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(
        app,
        [
            "eval",
            "gfid",
            "--gpt-checkpoint",
            str(tree / "runs" / "gpt"),
            "--output",
            "g",
            "--reference",
            "ref.npz",
            "--num-classes",
            "2",
            "--num-per-class",
            "1",
            "--no-precision-recall",
            "--json",
            "g.json",
        ],
    )
    _ok(res)
    got = json.loads((tmp_path / "g.json").read_text())
    tok = (tree / "tok" / "tok.safetensors").resolve()
    assert got["gpt"] == "gpt-tiny" and got["tokenizer"] == "tiny"
    assert got["weights"]["tokenizer"]["path"] == str(tok)
    assert got["weights"]["tokenizer"]["sha256"] == sha256_file(tok)
    assert got["weights"]["gpt"]["sha256"] == sha256_file(got["weights"]["gpt"]["path"])
    assert (tmp_path / "g" / "001_space-rocks_0000.png").is_file()
    res = runner.invoke(
        app,
        [
            "eval",
            "gfid",
            "--gpt-checkpoint",
            str(tree / "runs" / "gpt"),
            "--output",
            "h",
            "--reference",
            "ref.npz",
            "--num-classes",
            "3",
            "--num-per-class",
            "1",
        ],
    )
    assert res.exit_code == 1 and "outside this GPT's 2 classes" in res.output


def test_rfid_results_name_the_tokenizer_weights(tmp_path: Path, monkeypatch) -> None:
    """Every results file names its weights: rfid's JSON holds the tokenizer file's path and sha256."""
    from types import SimpleNamespace

    import gigatok_core.evaluation.reconstruction as reconstruction
    from gigatok_core.checkpoints.files import save_weights
    from gigatok_core.config.requests import RFIDRequest
    from gigatok_core.evaluation.commands import rfid
    from gigatok_core.tokenizer import load_tokenizer

    folder = tmp_path / "tokrun"
    save_weights(
        folder / "t.safetensors", load_tokenizer("tiny").state_dict(), {"kind": "tokenizer", "preset": "tiny"}
    )
    (tmp_path / "data").mkdir()
    fake = SimpleNamespace(metrics={"fid": 1.0}, reference="ref.npz", reference_built=False)
    monkeypatch.setattr(reconstruction, "evaluate_reconstruction", lambda *a, **k: fake)
    monkeypatch.setattr(eval_commands, "make_evaluator", lambda *a, **k: None)
    rfid(RFIDRequest("tiny", tmp_path / "data", checkpoint=folder, json_path=tmp_path / "r.json"))
    got = json.loads((tmp_path / "r.json").read_text())["weights"]["tokenizer"]
    assert got["path"] == str((folder / "t.safetensors").resolve())
    assert got["sha256"] == sha256_file(folder / "t.safetensors")
    rfid(RFIDRequest("tiny", tmp_path / "data", json_path=tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text())["weights"]["tokenizer"]["random"] == "seeded (tiny)"
