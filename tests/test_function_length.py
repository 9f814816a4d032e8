"""No function of gigatok_core or gigatok_cli is longer than 100 lines (``def`` to its last line).

A longer function holds more than one concept: split it where the concepts part (the reading of
the input, one rank's work, the merge, the scores ...), as evaluation/reconstruction.py does.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

MAX_LINES = 100


def long_functions(root: Path, max_lines: int = MAX_LINES) -> dict[str, int]:
    """``path::name`` -> length in lines of every function (methods and nested ones too) longer
    than ``max_lines`` in the packages under ``root``."""
    out = {}
    for pkg in ("gigatok_core", "gigatok_cli"):
        for path in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                    if lines > max_lines:
                        out[f"{path.relative_to(root).as_posix()}::{node.name}"] = lines
    return out


def test_no_function_is_over_100_lines() -> None:
    found = long_functions(REPO)
    assert not found, "functions over 100 lines (split them by concept):\n" + "\n".join(
        f"  {k}: {v} lines" for k, v in sorted(found.items(), key=lambda kv: -kv[1])
    )


def test_a_long_method_is_found(tmp_path: Path) -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(99))
    (tmp_path / "gigatok_core").mkdir()
    (tmp_path / "gigatok_cli").mkdir()
    (tmp_path / "gigatok_core" / "m.py").write_text(
        f"class A:\n    def long(self):\n{body}        return 1\n\n    def short(self):\n        return 2\n"
    )
    assert long_functions(tmp_path) == {"gigatok_core/m.py::long": 101}
    assert long_functions(tmp_path, max_lines=101) == {}
