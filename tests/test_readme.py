"""The README's and the docs pages' commands use only subcommands and options that exist (a new user
copies them), and the README's Python quickstart runs (with the tiny presets)."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gigatok_cli.main import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").rglob("*.md"))
runner = CliRunner()


def readme_commands(path: Path = README) -> list[list[str]]:
    """Every ``gigatok ...`` / ``torchrun ... -m gigatok_cli.main ...`` line of the code blocks of
    ``path``, as the argument list after the program (continuation lines joined, comments dropped)."""
    text = path.read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if " | " in line or line.split(" ")[0] not in ("gigatok", "torchrun"):
                continue  # the synopsis line, other programs, prose
            words = shlex.split(line)
            if words[:1] == ["gigatok"]:
                commands.append(words[1:])
            elif words[:1] == ["torchrun"] and "gigatok_cli.main" in words:
                commands.append(words[words.index("gigatok_cli.main") + 1 :])
    return commands


@functools.cache
def _help(*words: str) -> tuple[int, str]:
    """(exit code, output) of ``gigatok WORDS --help`` (each page is rendered once per session)."""
    res = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "300"})
    return res.exit_code, res.output


def _command_path(args: list[str]) -> list[str]:
    """The subcommand words (e.g. ['eval', 'gfid']) at the start of ``args``."""
    path: list[str] = []
    for word in args:
        if word.startswith("-"):
            break
        code, output = _help(*path, word)
        if code != 0 or "Usage:" not in output:
            break
        path.append(word)
        if "Commands" not in output:  # a leaf command: the rest are its arguments
            break
    return path


def documented_commands() -> list[tuple[str, list[str]]]:
    """(file, arguments) for every command of the README and of every docs page."""
    return [(str(p.relative_to(REPO)), args) for p in [README, *PAGES] for args in readme_commands(p)]


def test_the_readme_and_the_pages_have_commands() -> None:
    assert len(readme_commands()) >= 5
    assert len(documented_commands()) >= 60
    per_page = {name for name, _ in documented_commands()}
    for command in ("reconstruct", "sample", "download", "eval", "train", "probe"):
        assert f"docs/commands/{command}.md" in per_page


@pytest.mark.parametrize(
    ("where", "args"), documented_commands(), ids=lambda a: a if isinstance(a, str) else " ".join(a)[:50]
)
def test_readme_command_options_exist(where: str, args: list[str]) -> None:
    path = _command_path(args)
    code, output = _help(*path)  # no path: `gigatok --version` and the like
    assert code == 0, output
    options = [w.split("=")[0] for w in args if re.fullmatch(r"--?[a-z][a-z0-9-]*(=.*)?", w)]
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", output)]
    assert not missing, (
        f"{where}: `gigatok {' '.join(args)}` uses {missing}, not in `gigatok {' '.join(path)} --help`"
    )


@pytest.mark.usefixtures("one_thread")  # tiny models are dispatch-bound
def test_the_readme_python_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python blocks, run as written in a folder holding the image they read."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "cat.png")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        scope: dict = {}
        exec(compile(block, "README.md", "exec"), scope)
    assert scope["codes"].shape == (1, 256) and scope["pixels"].shape == (1, 256, 256, 3)
    assert scope["tokens"].shape == (2, 256) and scope["images"].shape == (2, 256, 256, 3)
    assert len(list((tmp_path / "samples-api").glob("*.png"))) == 3  # two samples and the grid
