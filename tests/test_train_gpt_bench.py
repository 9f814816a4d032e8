"""bench/train_gpt.py runs its CPU smoke case and reports the fields it promises."""

from __future__ import annotations

import importlib.util
import math

import pytest
from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_smoke_reports_throughput_and_memory():
    spec = importlib.util.spec_from_file_location("bench_train_gpt", REPO / "bench" / "train_gpt.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (row,) = bench.main(["--smoke", "--json"])
    assert row["preset"] == "gpt-tiny" and row["device"] == "cpu" and row["compile"] is False
    assert row["tokens_per_s"] > 0 and row["peak_mem_gib"] > 0 and math.isfinite(row["loss"])
    assert row["mfu"] is None  # no known peak for a CPU
    (row,) = bench.main(["--smoke", "--json", "--peak-tflops", "1"])
    assert row["mfu"] == pytest.approx(6 * row["params"] * 4 * 256 / row["step_s"] / 1e12)
