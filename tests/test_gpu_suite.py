"""bench/gpu_suite.py --smoke: every case's code path runs on CPU with the tiny presets (so the GPU
suite cannot rot between the days a GPU is lent)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "bench" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_runs_every_case_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = _suite()
    out = tmp_path / "suite.json"
    rows = suite.main(["--smoke", "--json", str(out), "--skip", "pytest"])  # pytest -m gpu: not inside pytest
    failed = [r for r in rows if r.note.startswith("failed")]
    assert not failed, failed
    cases = {r.case for r in rows}
    assert {
        "tiny enc+dec eager",
        "tiny enc+dec compiled",
        "Inception features",
        "50k gFID wall time",
        "train tokenizer tiny b2",
    } <= cases
    decode = next(r for r in rows if r.case.startswith("gpt-tiny decode b2"))
    assert decode.value > 0 and decode.floor > 0 and decode.ok is not None
    data = json.loads(out.read_text())
    assert data["smoke"] is True and len(data["rows"]) == len(rows)
    assert "gigatok GPU suite" in capsys.readouterr().out
