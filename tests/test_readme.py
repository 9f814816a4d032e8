"""The README's commands use only subcommands and options that exist (a new user copies them)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gigatok_cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner()


def readme_commands() -> list[list[str]]:
    """Every ``gigatok ...`` / ``torchrun ... -m gigatok_cli.main ...`` line of the code blocks, as
    the argument list after the program (continuation lines joined, comments dropped)."""
    text = README.read_text()
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


def _command_path(args: list[str]) -> list[str]:
    """The subcommand words (e.g. ['eval', 'gfid']) at the start of ``args``."""
    path: list[str] = []
    for word in args:
        if word.startswith("-"):
            break
        trial = runner.invoke(app, [*path, word, "--help"], env={"COLUMNS": "300"})
        if trial.exit_code != 0 or "Usage:" not in trial.output:
            break
        path.append(word)
        if "Commands" not in trial.output:  # a leaf command: the rest are its arguments
            break
    return path


def test_the_readme_has_commands() -> None:
    assert len(readme_commands()) >= 25


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_readme_command_options_exist(args: list[str]) -> None:
    path = _command_path(args)
    if not path:  # `gigatok --version` and the like
        res = runner.invoke(app, ["--help"], env={"COLUMNS": "300"})
    else:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    options = [w.split("=")[0] for w in args if re.fullmatch(r"--?[a-z][a-z0-9-]*(=.*)?", w)]
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", res.output)]
    assert not missing, f"`gigatok {' '.join(args)}` uses {missing}, not in `gigatok {' '.join(path)} --help`"
