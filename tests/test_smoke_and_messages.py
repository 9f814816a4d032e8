"""A new user's first runs: tiny trains offline against random frozen networks, frozen networks take
one option and one env variable everywhere, a failed start leaves no claimed folder, and the
messages say what happened (plurals, rates, warnings, suggestions, checks before workers start)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
import typer
from toktrain_kit import write_frozen, write_images
from typer.testing import CliRunner

from gigatok_cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = ["model.image_size=32", "model.num_latent_tokens=4"]  # 32x32 images, 4 tokens
NO_FROZEN = {
    "GIGATOK_OFFLINE": "1",
    "GIGATOK_TEACHER_WEIGHTS": None,
    "GIGATOK_DINO_WEIGHTS": None,
    "GIGATOK_VGG_WEIGHTS": None,
}


def _train_tok(images: Path, out: Path, *extra: str, env: dict | None = None):
    args = ["train", "tokenizer", "--preset", "tiny", "--data", str(images), "--output", str(out)]
    args += ["--max-steps", "1", "--batch-size", "2", "--device", "cpu", "--workers", "0", *SMALL, *extra]
    return runner.invoke(app, args, env={**NO_FROZEN, **(env or {})})


# ---------------------------------------------------------------------------------------------
# Item 11: smoke runs offline, the teacher's width, a failed start
# ---------------------------------------------------------------------------------------------
def test_tiny_trains_offline_against_random_frozen_networks_said_first(tmp_path: Path) -> None:
    images = write_images(tmp_path / "imgs", n=2, size=40)
    res = _train_tok(images, tmp_path / "run")
    assert res.exit_code == 0, res.output
    first = res.output.strip().splitlines()[0]
    assert first.startswith("warning: smoke run: tiny trains against seeded RANDOM frozen networks")
    assert "--teacher-weights FILE" in res.output and "--vgg-weights FILE" in res.output
    assert "trained 1 step;" in res.output  # not "1 steps"


def test_the_projection_width_follows_the_teacher_file(tmp_path: Path) -> None:
    """A 128-wide teacher with the tiny preset (projection 32) trains, instead of failing at step 1."""
    from gigatok_core.config import TokenizerTrainConfig
    from gigatok_core.train.tokenizer.task import fit_teacher_width, resolve_frozen

    files = write_frozen(tmp_path / "frozen", teacher_width=128)
    cfg = TokenizerTrainConfig.from_name("tiny")
    assert cfg.model.distill_dim == 32
    assert fit_teacher_width(cfg, files["teacher"]).model.distill_dim == 128
    assert (
        resolve_frozen(cfg.recipe, {"teacher": files["teacher"]}, preset="tiny")["teacher"]
        == files["teacher"]
    )
    images = write_images(tmp_path / "imgs", n=2, size=40)
    res = _train_tok(images, tmp_path / "run", env={"GIGATOK_TEACHER_WEIGHTS": str(files["teacher"])})
    assert res.exit_code == 0, res.output
    assert "distill_dim follows the teacher" in res.output and "distill_dim: 128" in res.output


def test_a_failed_start_leaves_no_claimed_folder(tmp_path: Path) -> None:
    """A start that fails after the run folder was prepared (here: sample grids need a tokenizer
    checkpoint that is gone) removes what it wrote: the corrected command is not refused."""
    from test_train_gpt import make_codes

    codes = make_codes(
        tmp_path / "codes", n=8, checkpoint=str(tmp_path / "gone.safetensors"), sha256="0" * 64
    )
    base = ["train", "gpt", "--preset", "gpt-tiny", "--codes", str(codes), "--output", str(tmp_path / "run")]
    base += ["--batch-size", "4", "--max-steps", "1", "--device", "cpu"]
    res = runner.invoke(app, [*base, "--sample-every", "1"])
    assert res.exit_code == 1 and "was not found" in res.output, res.output
    assert not (tmp_path / "run").exists()  # no config.yaml left to refuse the next command
    res = runner.invoke(app, [*base, "run.sample_every=null", "--lr", "2e-4"])  # another config
    assert res.exit_code == 0, res.output


# ---------------------------------------------------------------------------------------------
# Item 12: one option and one env variable per frozen network, in every command
# ---------------------------------------------------------------------------------------------
def _params(*path: str) -> dict[str, object]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {p.opts[0]: p for p in command.params if getattr(p, "opts", None)}


@pytest.mark.parametrize("path", [("reconstruct",), ("eval", "rfid"), ("train", "tokenizer")])
def test_vgg_weights_option_and_env_everywhere(path: tuple[str, ...]) -> None:
    assert _params(*path)["--vgg-weights"].envvar == "GIGATOK_VGG_WEIGHTS"


def test_reconstruct_metrics_honours_the_vgg_env_variable(tmp_path: Path) -> None:
    images = write_images(tmp_path / "imgs", n=1, size=40)
    bogus = tmp_path / "my-vgg.pth"
    import torch

    torch.save({"features.0.weight": torch.zeros(1)}, bogus)
    res = runner.invoke(
        app,
        ["reconstruct", str(images), "--tokenizer", "tiny", "--output", str(tmp_path / "r"), "--metrics"],
        env={**NO_FROZEN, "GIGATOK_VGG_WEIGHTS": str(bogus)},
    )
    assert res.exit_code == 1 and "my-vgg.pth is not a torchvision VGG16 checkpoint" in res.output, res.output


# ---------------------------------------------------------------------------------------------
# Item 16: manners
# ---------------------------------------------------------------------------------------------
def test_rates_plurals_and_worker_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from gigatok_cli._common import plural
    from gigatok_cli.train import format_rate
    from gigatok_core.data.folder import default_workers

    assert format_rate(0.05, 0.4) == "0.05 step/s 0.4 samples/s"  # a slow CPU run: never "0 samples/s"
    assert format_rate(None, 0.0) == "" and format_rate(2.5, 4288.2) == "2.5 step/s 4,288 samples/s"
    assert (plural(1, "image"), plural(2, "image"), plural(0, "step")) == ("1 image", "2 images", "0 steps")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 1  # 2 cores: not 4 (PyTorch warns about that)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)), raising=False)
    assert default_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert default_workers() == 1


def test_no_library_message_says_note_itself() -> None:
    """The CLI prefixes library INFO messages with "note:" (warnings with "warning:"): a message
    that starts with "note:" would print "note: note:"."""
    root = Path(__file__).resolve().parents[1] / "gigatok_core"
    bad = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("info", "warning")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).lower().startswith(("note", "warning"))
            ):
                bad.append(f"{path.name}:{node.lineno}")
    assert bad == []


def test_warnings_show_as_warnings_and_brackets_as_written() -> None:
    from gigatok_cli._common import handle_errors
    from gigatok_core.errors import GigatokError

    @handle_errors
    def cmd() -> None:
        logging.getLogger("gigatok").warning("decoding with random weights")
        logging.getLogger("gigatok").info("a detail [x]")
        raise GigatokError("bad value [0.9]", hint="check the value's type (numbers, true/false, [lists])")

    app2 = typer.Typer()
    app2.command()(cmd)
    res = runner.invoke(app2, [])
    assert "warning: decoding with random weights" in res.output and "note: a detail [x]" in res.output
    assert "bad value [0.9]" in res.output and "true/false, [lists])" in res.output  # not ", )"


def test_suggestions_and_checks_before_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gigatok_cli.train as train_cli

    res = runner.invoke(app, ["train", "tokenizer", "--preset", "TINY", "--data", ".", "--output", "x"])
    assert res.exit_code == 1 and "did you mean 'tiny'?" in res.output
    images = write_images(tmp_path / "photos" / "cats", n=1, size=40).parent
    res = runner.invoke(app, ["train", "gpt", "--preset", "gpt-tiny", "--codes", str(images), "-o", "x"])
    assert res.exit_code == 1 and "holds images, not codes" in res.output
    assert f"--data {images} --output {images}-codes" in res.output  # a new folder, not the images'

    def no_launch(*_a, **_k):
        raise AssertionError("workers were started")

    monkeypatch.setattr(train_cli, "maybe_launch", no_launch)
    res = runner.invoke(
        app,
        [
            "train",
            "gpt",
            "--preset",
            "gpt-tiny",
            "--codes",
            str(images),
            "-o",
            "x",
            "--nproc-per-node",
            "2",
            "--batch-size",
            "7",
        ],
    )
    assert res.exit_code == 1 and "does not divide over 2 process(es)" in res.output, res.output
