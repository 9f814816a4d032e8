"""bench/gpu_suite.py: rows on disk after every case (a kill loses nothing), deadlines, guarded runs,
and the --smoke code paths on CPU with the tiny presets (so the GPU suite cannot rot between the
days a GPU is lent). The whole --smoke run in a clean environment: tests/test_device_run.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_kit  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _suite(tmp_path: Path) -> gpu_kit.Suite:
    import torch

    return gpu_kit.Suite(
        smoke=True, device=torch.device("cpu"), dtype=torch.float32, json_path=tmp_path / "s.json"
    )


def test_rows_are_on_disk_after_each_row_and_deadlines_stop_a_case(tmp_path: Path) -> None:
    s = _suite(tmp_path)
    seen_on_disk = []

    def slow(s: gpu_kit.Suite) -> None:
        s.emit(gpu_kit.Row("first figure", 1.0, "ms"))
        seen_on_disk.append(json.loads(s.json_path.read_text())["rows"][-1]["case"])
        time.sleep(30)  # past its deadline
        s.emit(gpu_kit.Row("never"))

    def broken(s: gpu_kit.Suite) -> None:
        s.guarded("refused combination", lambda: (_ for _ in ()).throw(RuntimeError("compile with FSDP")))
        s.emit(gpu_kit.Row("after the refusal", 2.0))
        raise ValueError("boom")

    cases = [
        ("slow", 0.5, slow),
        ("broken", 10, broken),
        ("fine", 10, lambda s: s.emit(gpu_kit.Row("ok", 3.0))),
    ]
    t0 = time.perf_counter()
    gpu_kit.run_cases(s, cases, budget_s=60)
    assert time.perf_counter() - t0 < 10
    assert seen_on_disk == ["first figure"]
    data = json.loads(s.json_path.read_text())
    assert [c["status"] for c in data["cases"]] == ["timeout", "failed", "done"]
    by_case = {r["case"]: r for r in data["rows"]}
    assert "never" not in by_case and by_case["first figure"]["group"] == "slow"
    assert by_case["refused combination"]["note"] == "failed: RuntimeError: compile with FSDP"
    assert by_case["after the refusal"]["value"] == 2.0  # the case went on after a guarded failure
    assert by_case["broken"]["note"] == "failed: ValueError: boom" and by_case["ok"]["group"] == "fine"


def test_cases_past_the_budget_are_skipped_with_a_row(tmp_path: Path) -> None:
    s = _suite(tmp_path)
    # a case starts only with min(its deadline, 10 s) left
    gpu_kit.run_cases(s, [("a", 30, lambda s: time.sleep(0.5)), ("b", 30, lambda s: None)], budget_s=10.3)
    data = json.loads(s.json_path.read_text())
    assert [c["status"] for c in data["cases"]] == ["done", "skipped"]
    note = data["rows"][-1]["note"]
    left = float(note.removeprefix("skipped: ").split(" s left")[0])
    assert left < 10 and note.endswith("s left of the 10 s budget"), note


def test_card_table() -> None:
    import torch

    assert gpu_kit.card_of(torch.device("cpu")).hbm_bytes_per_s is None
    cards = dict(gpu_kit.CARDS)
    assert cards["H100"].hbm_bytes_per_s == 3.35e12 and cards["H200"].hbm_bytes_per_s == 4.8e12
    assert cards["H100"].bf16_flops == 989e12


def test_a_kill_after_the_first_case_leaves_its_rows_on_disk(tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--smoke", "--json", str(out)]
    cmd += ["--only", "peak memory", "--only", "tokenizer training"]  # a quick case, then a slow one
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                cases = json.loads(out.read_text())["cases"]
                if cases and cases[0].get("status"):
                    break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the suite and anything it started
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    data = json.loads(out.read_text())
    assert data["finished"] is False
    first = data["cases"][0]
    assert first["name"] == "peak memory, sampling" and first["status"] == "done"
    rows = [r for r in data["rows"] if r["group"] == first["name"]]
    assert rows and rows[0]["case"] == "peak tiny + gpt-tiny b2"


def test_smoke_decode_and_gfid_cases_in_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "bench" / "gpu_suite.py")
    suite = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = suite  # dataclasses look their module up there
    spec.loader.exec_module(suite)
    out = tmp_path / "suite.json"
    s = suite.main(["--smoke", "--json", str(out), "--only", "decode step", "--only", "gFID"])
    rows = {r.case: r for r in s.rows}
    assert not [r for r in s.rows if r.note.startswith("failed")], s.rows
    eager, compiled = rows["gpt-tiny decode b2 CFG eager"], rows["gpt-tiny decode b2 CFG compiled"]
    assert eager.value > 0 and compiled.value > 0 and compiled.extra["measured_floor_ms"] > 0
    assert rows["decode CUDA graphs / recompiles"].ok is True  # nothing recompiled in the timed steps
    gfid = rows["50k gFID wall time"]
    assert gfid.value > 0 and set(gfid.extra["parts_s_per_sample"]) == {
        "sample",
        "decode",
        "png write",
        "png read + inception",
    }
    data = json.loads(out.read_text())
    assert data["finished"] is True and [c["status"] for c in data["cases"]] == ["done", "done"]
    assert "gigatok GPU suite" in capsys.readouterr().out
