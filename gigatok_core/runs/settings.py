"""One writer for a run's resolved settings (``reconstruct.json``, ``sample.json``, eval ``--json``).

Every settings file carries the same provenance keys beside the command's own settings, so a
folder of outputs says which gigatok version, command line and time produced it (STYLE.md
practice 4: "the resolved config is saved next to every run's output").
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gigatok_core.utils.fileio import write_json

PROVENANCE_KEYS = ("gigatok_version", "command_line", "created")


def json_safe(value: Any) -> Any:
    """NaN/inf -> None (strict JSON), Paths -> str, tuples -> lists, recursively."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def provenance() -> dict[str, str]:
    """gigatok version, the command line (as typed, shell-quoted) and the UTC time."""
    from gigatok_core import __version__

    return {
        "gigatok_version": __version__,
        "command_line": shlex.join(["gigatok", *sys.argv[1:]]) if sys.argv else "",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` made JSON-safe, followed by the provenance keys."""
    return {**json_safe(settings), **provenance()}


def write_run_settings(output_dir: str | Path, name: str, settings: Mapping[str, Any]) -> Path:
    """Write ``settings`` + provenance atomically to ``output_dir / name``; returns the path."""
    path = Path(output_dir) / name
    write_json(path, run_settings(settings))
    return path


def without_provenance(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` less the provenance keys (to compare two runs' settings)."""
    return {k: v for k, v in settings.items() if k not in PROVENANCE_KEYS}
