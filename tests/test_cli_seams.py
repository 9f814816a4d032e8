"""The seams of issue 9 §4-§6: options declared once, help and completion from the library, one
progress protocol, one settings writer, release names for --gpt, checks before any work."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
import typer
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_cli.options import CHOICES
from gigatok_core import registry
from gigatok_core.ar import CFGSchedule
from gigatok_core.choices import PRECISION_NAMES, RNG_MODES, SCHEDULES
from gigatok_core.data.images import Tile, contact_sheet, wrap_label
from gigatok_core.errors import GigatokError
from gigatok_core.runs.settings import PROVENANCE_KEYS, write_run_settings

runner = CliRunner()
KW = {"gpt": "gpt-tiny", "cfg": CFGSchedule(2.0, "step"), "device": "cpu"}


def _help(*cmd: str) -> str:
    res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res.output


# ---------------------------------------------------------------------------------------------
# --help and completion
# ---------------------------------------------------------------------------------------------
@pytest.mark.spawn
def test_root_help_shows_no_value_type_for_flags() -> None:
    """In a fresh process (no command module imported): `--version` and the other root flags."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "gigatok_cli.main", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "--version" in proc.stdout
    assert "<bool>" not in proc.stdout


@pytest.mark.parametrize(
    "cmd",
    [
        ("sample",),
        ("reconstruct",),
        ("eval", "rfid"),
        ("eval", "gfid"),
        ("eval", "val-loss"),
        ("train", "tokenizer"),
        ("train", "gpt"),
        ("train", "extract-codes"),
        ("probe", "gpt"),
        ("probe", "tokenizer"),
    ],
)
def test_flags_show_no_value_type_and_registry_names_are_listed(cmd: tuple[str, ...]) -> None:
    text = _help(*cmd)
    assert "<bool>" not in text
    flat = " ".join(text.split())
    if "--gpt" in text:
        assert "gpt-b@xl-xxl" in flat and "gpt-tiny" in flat
    if cmd in (("reconstruct",), ("eval", "rfid")):
        assert "xl-xxl" in flat and "b-l-dino" in flat


def test_flags_show_no_type_without_patching_typer() -> None:
    """Our commands render flags plainly through Typer's `cls=` and `metavar`; Typer's own classes
    are untouched, so another Typer app in the process keeps its display."""
    from typer.core import TyperOption

    from gigatok_cli import _help

    assert not hasattr(TyperOption.display_type_rich, "_gigatok_flags")  # the patch of old
    other = typer.Typer(add_completion=False)

    @other.command()
    def cmd(grid: Annotated[bool, typer.Option("--grid")] = False, n: int = 1) -> None: ...

    assert "<bool>" in CliRunner().invoke(other, ["--help"], env={"COLUMNS": "120"}).output
    ours = typer.Typer(add_completion=False)
    ours.command()(cmd)
    text = CliRunner().invoke(_help.plain_flags(ours), ["--help"], env={"COLUMNS": "120"}).output
    assert "<bool>" not in text and "<int>" in text and "--grid" in text


def test_choices_come_from_the_library() -> None:
    import gigatok_core.dist as dist
    from gigatok_core.ar.generate import RNG_MODES as GENERATE_RNG
    from gigatok_core.ar.guidance import SCHEDULES as GUIDANCE_SCHEDULES

    assert tuple(dist.PRECISIONS) == PRECISION_NAMES
    assert GENERATE_RNG is RNG_MODES and GUIDANCE_SCHEDULES is SCHEDULES
    assert CHOICES["--rng"]() == list(RNG_MODES) and CHOICES["--cfg-schedule"]() == list(SCHEDULES)
    assert CHOICES["--gpt"]() == registry.gpt_names() + registry.release_names()
    assert "b-l" in CHOICES["--preset"]() and "gpt-b@s-s" in CHOICES["--preset"]()


def test_static_completion_covers_rng_and_preset() -> None:
    text = (Path(__file__).resolve().parents[1] / "completions" / "gigatok.bash").read_text()
    assert '"sample|--rng") COMPREPLY=($(compgen -W "per-sample official"' in text
    assert '"cache import|--preset") COMPREPLY=($(compgen -W "s-s ' in text


# ---------------------------------------------------------------------------------------------
# --gpt NAME@TOKENIZER, one resolver
# ---------------------------------------------------------------------------------------------
def test_release_names_resolve_like_preset_plus_tokenizer() -> None:
    from gigatok_core.ar.load import resolve_gpt, split_gpt_name

    assert split_gpt_name("gpt-b@xl-xxl") == ("gpt-b", "xl-xxl")
    assert split_gpt_name("gpt-b", "s-s") == ("gpt-b", "s-s")
    assert split_gpt_name("gpt-b@s-s", "s-s") == ("gpt-b", "s-s")
    with pytest.raises(GigatokError, match="names tokenizer s-s, but --tokenizer says b-l"):
        split_gpt_name("gpt-b@s-s", "b-l")
    cfg, tok, release = resolve_gpt("gpt-b@xl-xxl")
    assert tok == "xl-xxl" and release is not None and release.name == "gpt-b@xl-xxl"
    assert cfg == registry.gpt_preset("gpt-b").config


@pytest.mark.usefixtures("one_thread")
def test_sample_accepts_a_release_name(tmp_path: Path) -> None:
    from gigatok_core.tasks.sample import sample_images

    res = sample_images("22", output=tmp_path, **{**KW, "gpt": "gpt-tiny@tiny"})
    settings = json.loads((tmp_path / "sample.json").read_text())
    assert len(res.generated) == 1 and settings["gpt"] == "gpt-tiny" and settings["tokenizer"] == "tiny"


# ---------------------------------------------------------------------------------------------
# sample: one run per folder, settings written by the one writer
# ---------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("one_thread")
def test_a_folder_of_another_run_is_refused_and_overwrite_removes_exactly_its_files(tmp_path: Path) -> None:
    from gigatok_core.tasks.sample import sample_images

    calls: list[tuple[int, int | None, str]] = []
    sample_images(
        "22",
        output=tmp_path,
        grid=True,
        on_progress=lambda d, t, *, stage="": calls.append((d, t, stage)),
        **KW,
    )
    assert calls[-1] == (1, 1, "sample")
    settings = json.loads((tmp_path / "sample.json").read_text())
    assert settings["outputs"] == ["022_bald-eagle_0000.png", "grid.png", "sample.json"]
    assert settings["gpt_config"]["preset"] == "gpt-tiny"
    assert set(PROVENANCE_KEYS) <= set(settings)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(GigatokError, match="holds another sampling run"):
        sample_images("388", output=tmp_path, **KW)
    assert not (tmp_path / "388_giant-panda_0000.png").exists()
    sample_images("388", output=tmp_path, overwrite=True, **KW)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "388_giant-panda_0000.png",
        "notes.txt",
        "sample.json",
    ]


def test_an_unwritable_output_is_refused_before_the_models_load(tmp_path: Path, monkeypatch) -> None:
    import gigatok_core.data.images as images
    import gigatok_core.tokenizer as tokenizer
    from gigatok_core.tasks.sample import sample_images

    def no_load(*args, **kwargs):
        raise AssertionError("the models must not load")

    monkeypatch.setattr(tokenizer, "load_tokenizer", no_load)
    monkeypatch.setattr(
        images.os, "access", lambda path, mode: False
    )  # as a read-only folder (root ignores modes)
    with pytest.raises(GigatokError, match="cannot write to") as err:
        sample_images("22", output=tmp_path / "out", **KW)
    assert "cache" not in (err.value.hint or "")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Inputs before fetching, no empty output folders
# ---------------------------------------------------------------------------------------------
def test_eval_fid_reports_a_missing_side_before_fetching_weights(tmp_path: Path, monkeypatch) -> None:
    import gigatok_core.evaluation.evaluate as evaluate

    def no_fetch(*args, **kwargs):
        raise AssertionError("the Inception must not be fetched")

    monkeypatch.setattr(evaluate, "load_fid_inception", no_fetch)
    (tmp_path / "a").mkdir()
    res = runner.invoke(app, ["eval", "fid", str(tmp_path / "a"), str(tmp_path / "missing_dir")])
    assert res.exit_code == 1 and "missing_dir does not exist" in " ".join(res.output.split())
    res = runner.invoke(app, ["eval", "rfid", "--tokenizer", "tiny", "--data", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "--data" in res.output and "does not exist" in res.output


def test_reconstruct_metrics_without_weights_leaves_no_output_folder(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "o"
    res = runner.invoke(
        app,
        [
            "reconstruct",
            str(tmp_path / "a.png"),
            "-t",
            "tiny",
            "-o",
            str(out),
            "--metrics",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 1 and "vgg16-397923af.pth" in " ".join(res.output.split())
    assert not out.exists()


def test_a_flag_given_a_value_says_flags_take_none(tmp_path: Path) -> None:
    res = runner.invoke(app, ["reconstruct", "--grid", "true", "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "take no value" in " ".join(res.output.split())


# ---------------------------------------------------------------------------------------------
# Grid labels, the settings writer
# ---------------------------------------------------------------------------------------------
def test_long_grid_labels_wrap_instead_of_being_cut() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label = "2 great white shark, white shark, man-eater #3"
    lines = wrap_label(label, 62, draw)
    assert len(lines) > 1 and " ".join(lines) == label
    assert all(draw.textlength(line) <= 62 for line in lines)
    tile = np.zeros((64, 64, 3), np.uint8)
    short = contact_sheet([[Tile(tile, "2")]])
    tall = contact_sheet([[Tile(tile, label)]])
    assert tall.shape[0] > short.shape[0] and tall.shape[1] == short.shape[1]


def test_run_settings_carry_provenance_and_strict_json(tmp_path: Path) -> None:
    path = write_run_settings(tmp_path, "run.json", {"psnr": float("inf"), "data": tmp_path, "pair": (1, 2)})
    got = json.loads(path.read_text())
    assert got["psnr"] is None and got["data"] == str(tmp_path) and got["pair"] == [1, 2]
    assert (
        got["gigatok_version"] and got["command_line"].startswith("gigatok") and got["created"].endswith("Z")
    )


def test_option_group_puts_its_options_in_place_of_the_parameter() -> None:
    import inspect

    from gigatok_cli.options import option_group

    group = {"a": (Annotated[int, typer.Option("--a")], 1), "b": (Annotated[str, typer.Option("--b")], "x")}

    @option_group("g", group, build=lambda v: (v["a"], v["b"]))
    def cmd(*, first: int = 0, g: tuple[int, str], last: int = 0) -> tuple[int, str]:
        return g

    assert list(inspect.signature(cmd).parameters) == ["first", "a", "b", "last"]
    assert cmd(first=0, a=2, last=0) == (2, "x")  # an option left out takes the group's default


@dataclasses.dataclass(frozen=True)
class Settings:
    inputs: Sequence[str]
    output: Path
    count: int = 2
    lpips: bool = True
    grid: bool = False
    device: str | None = None


def test_a_dataclass_becomes_options_with_its_types_defaults_and_minimums() -> None:
    """The fields of a library dataclass become the command's options (request commands, the
    launcher, the run settings and the probe recipe are made this way)."""
    from gigatok_cli.options import dataclass_options, option_group

    texts = {f.name: f"the {f.name}" for f in dataclasses.fields(Settings)}
    options = dataclass_options(Settings, texts, flags={"inputs": "INPUTS"}, at_least={"count": 1})
    app = typer.Typer(add_completion=False)

    @app.command()
    @option_group("settings", options, build=lambda v: Settings(**v))
    def cmd(*, settings: Settings) -> None:
        typer.echo(repr(settings))

    ok = CliRunner().invoke(app, ["a", "b", "--output", "o", "--no-lpips", "-o", "p", "--grid"])
    assert ok.exit_code == 0, ok.output
    assert "inputs=['a', 'b']" in ok.output and "output=PosixPath('p')" in ok.output  # -o: the CLI table
    assert "count=2" in ok.output and "lpips=False" in ok.output and "grid=True" in ok.output
    assert "device=None" in ok.output
    low = CliRunner().invoke(app, ["a", "--output", "o", "--count", "0"])
    assert low.exit_code == 2 and "--count" in low.output  # the minimum is checked at parse time
    missing = CliRunner().invoke(app, ["a"])
    assert missing.exit_code == 2 and "--output" in missing.output  # no default: required
