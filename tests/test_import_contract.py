"""The import contract of pyproject.toml (``[tool.importlinter]``) holds, and it can fail.

import-linter (``lint-imports``, also run by ``.ci/run``) checks three contracts: the layers of
gigatok_core (a module imports only from its layer and those below, through any chain,
function-level imports included; every module and package of gigatok_core is in a layer), the CLI
on top (the library never imports gigatok_cli), and no circle between the sibling modules and
packages of any package. The second test copies the real packages with the real configuration,
adds an upward import, a module in no layer, an import of the CLI and a circle, and shows the
three contracts broken, naming each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.spawn  # lint-imports runs in its own process, in the folder it checks

LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` in ``root`` (its pyproject.toml, its packages first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"}  # no wrapped module names
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_real_tree_keeps_the_contract() -> None:
    run = lint_imports(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 3 kept, 0 broken." in run.stdout


def test_an_upward_import_a_stray_module_and_a_circle_break_the_contract(tmp_path: Path) -> None:
    for pkg in ("gigatok_core", "gigatok_cli"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)

    def add(module: str, imported: str) -> None:  # a function-level import: lazy ones count too
        path = tmp_path / (module.replace(".", "/") + ".py")
        text = path.read_text(encoding="utf-8")
        path.write_text(f"{text}\n\ndef _added():\n    import {imported}\n", encoding="utf-8")

    add("gigatok_core.hub.cache", "gigatok_core.tokenizer.model")  # storage reaching model code
    add("gigatok_core.utils.fileio", "gigatok_core.utils.progress")  # fileio <-> progress
    add("gigatok_core.utils.progress", "gigatok_core.utils.fileio")
    add("gigatok_core.tasks.image_metrics", "gigatok_cli.options")  # the library reaching the CLI
    (tmp_path / "gigatok_core" / "stray.py").write_text("X = 1\n")  # in no layer

    run = lint_imports(tmp_path)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "Contracts: 0 kept, 3 broken." in out
    assert "gigatok_core.hub is not allowed to import gigatok_core.tokenizer" in out
    assert "gigatok_core.hub.cache -> gigatok_core.tokenizer.model" in out
    assert "The following modules are not listed as layers:\n\n- gigatok_core.stray" in out
    assert "gigatok_core is not allowed to import gigatok_cli" in out
    assert "gigatok_core.tasks.image_metrics -> gigatok_cli.options" in out
    assert "No cycles are allowed in gigatok_core.utils." in out
