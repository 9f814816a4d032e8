"""The command table: version, help, and the console entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core import __version__

runner = CliRunner()


def test_version_and_help_list_every_subcommand() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"gigatok {__version__}"
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for name in ("download", "cache", "reconstruct", "sample", "train", "eval", "probe"):
        assert name in res.output


@pytest.mark.spawn
def test_console_script_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gigatok_cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout


@pytest.mark.spawn
def test_version_and_help_answer_without_importing_torch() -> None:
    """`gigatok --version`, `--help` and `download --help` must not pay torch's start-up (seconds)."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gigatok_cli.main import app\n"
        "for args in (['--version'], ['--help'], ['download', '--help'], ['cache', '--help']):\n"
        "    res = CliRunner().invoke(app, args)\n"
        "    assert res.exit_code == 0, (args, res.output)\n"
        "print('torch' in sys.modules, 'gigatok_core.hub' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_the_lazy_help_listing_is_each_commands_own_help() -> None:
    from gigatok_cli.main import COMMANDS, load_command, short_help

    for name in COMMANDS:
        cmd = load_command(name)
        assert cmd.name == name and short_help(name) and short_help(name) == cmd.help, name
    assert load_command("eval").list_commands(None)  # a module with a typer `app` is a group
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "300"})
    assert "Download official GigaTok weights into the cache" in res.output


def test_download_names_complete_from_the_registry() -> None:
    env = {"_GIGATOK_COMPLETE": "complete_bash", "COMP_WORDS": "gigatok download gpt-b@", "COMP_CWORD": "2"}
    res = runner.invoke(app, [], prog_name="gigatok", env=env)
    assert res.output.split() == ["gpt-b@s-s", "gpt-b@s-b", "gpt-b@b-l", "gpt-b@b-l-dino", "gpt-b@xl-xxl"]
    for words in ("gigatok download --import f.pt --preset s-", "gigatok cache import f.pt --preset s-"):
        env["COMP_WORDS"], env["COMP_CWORD"] = words, "5"  # the old flag and its cache command
        out = runner.invoke(app, [], prog_name="gigatok", env=env).output.split()
        assert out == ["s-s", "s-b", "s-s-2d", "s-b-2d"], words
