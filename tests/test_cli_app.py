"""The command table: version, help, and the commands that are registered but not built yet."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core import __version__

runner = CliRunner()


def test_version_and_help_list_every_subcommand() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"gigatok {__version__}"
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for name in ("download", "reconstruct", "sample", "train", "eval", "probe"):
        assert name in res.output


def test_unfinished_commands_say_so_with_exit_code_2() -> None:
    for name in ("probe",):
        res = runner.invoke(app, [name])
        assert res.exit_code == 2
        assert "not implemented yet" in res.output


def test_console_script_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gigatok_cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout
