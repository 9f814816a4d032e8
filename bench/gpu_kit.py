"""The machinery of ``bench/gpu_suite.py``: rows written as they come, deadlines, the card table,
models built once and memory accounted per case.

A short GPU rental must return every figure it reached even if it is killed: :meth:`Suite.emit`
rewrites the JSON file atomically and prints one flushed table row after every row, and every
case runs under its own deadline (``SIGALRM``), inside the suite's global budget.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

GB = 1e9
ROOT = Path(__file__).resolve().parents[1]


def bench(name: str) -> Any:
    """bench/NAME.py as a module (bench/ is a folder of scripts, not a package), loaded once."""
    key = f"gigatok_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Cards: published figures (vendor datasheets; dense, i.e. without 2:4 sparsity)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Card:
    name: str
    hbm_bytes_per_s: float | None  # published memory bandwidth
    bf16_flops: float | None  # dense bf16 tensor-core peak
    fp32_flops: float | None  # plain fp32 (no TF32): the evaluation's Inception


# Matched in order against torch.cuda.get_device_name (the first fragment found wins).
CARDS = (
    ("H100 NVL", Card("H100 NVL", 3.9e12, 835e12, 60e12)),
    ("H100 PCIe", Card("H100 PCIe", 2.0e12, 756e12, 51e12)),
    ("H100", Card("H100 SXM", 3.35e12, 989e12, 67e12)),
    ("H200", Card("H200", 4.8e12, 989e12, 67e12)),
    ("A100", Card("A100 SXM", 2.0e12, 312e12, 19.5e12)),
    ("L40S", Card("L40S", 0.864e12, 362e12, 91.6e12)),
)


def card_of(device: torch.device) -> Card:
    """The card's published figures, or a card with none (CPU, an unknown GPU)."""
    if device.type != "cuda":
        return Card("CPU", None, None, None)
    name = torch.cuda.get_device_name(device)
    for fragment, card in CARDS:
        if fragment in name:
            return card
    return Card(name, None, None, None)


# ---------------------------------------------------------------------------------------------
# Rows, deadlines
# ---------------------------------------------------------------------------------------------
@dataclass
class Row:
    case: str
    value: float | None = None
    unit: str = ""
    floor: float | None = None  # the physical floor in the same unit
    target: str = ""  # what it is checked against, e.g. "<= 2x HBM floor"
    ok: bool | None = None  # None: nothing to check
    note: str = ""
    group: str = ""  # the suite case that made it (filled by Suite.emit)
    extra: dict[str, Any] = field(default_factory=dict)  # more figures, JSON only


class CaseTimeout(Exception):
    """A case ran past its deadline (raised by SIGALRM in the main thread)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (at the next Python bytecode:
    a long CUDA call finishes first; the global ``timeout`` of ``device_run.sh`` is the hard stop)."""

    def fire(_sig: int, _frame: object) -> None:
        raise CaseTimeout(f"past its {seconds:.0f} s deadline")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe(err: BaseException) -> str:
    return traceback.format_exception_only(err)[-1].strip()[:200]


# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------
COLUMNS = (("case", 34), ("value", 16), ("floor", 16), ("target", 18), ("ok", 3), ("note", 0))


def _num(v: float | None, unit: str) -> str:
    return "" if v is None else f"{v:,.4g} {unit}".strip()


def format_row(r: Row) -> str:
    ok = "" if r.ok is None else "yes" if r.ok else "NO"
    cells = (r.case, _num(r.value, r.unit), _num(r.floor, r.unit), r.target, ok, r.note)
    return " | ".join(c.ljust(w) if w else c for c, (_, w) in zip(cells, COLUMNS, strict=True))


@dataclass
class Suite:
    """What the cases share: device, dtype, sizes (real or --smoke), the models, the output."""

    smoke: bool
    device: torch.device
    dtype: torch.dtype
    json_path: Path | None = None
    sizes: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    current: str = ""

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def card(self) -> Card:
        return card_of(self.device)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], object], iters: int = 1, warmup: int = 1) -> float:
        """Median seconds of ``iters`` calls after ``warmup`` calls (which pay any compilation)."""
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(iters):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    def compile(self, module: torch.nn.Module) -> torch.nn.Module:
        # --smoke: dynamo with the eager backend (the same tracing path, no C++/Triton build).
        return torch.compile(module, backend="eager" if self.smoke else "inductor")  # type: ignore[return-value]

    # -- output: after every row ---------------------------------------------------------------
    def emit(self, row: Row) -> Row:
        row.group = row.group or self.current
        self.rows.append(row)
        print(format_row(row), flush=True)
        self.write()
        return row

    def write(self, finished: bool = False) -> None:
        if self.json_path is None:
            return
        payload = {
            **self.meta,
            "finished": finished,
            "cases": self.cases,
            "rows": [asdict(r) for r in self.rows],
        }
        tmp = self.json_path.with_name(f".{self.json_path.name}.part")
        with open(tmp, "w") as f:
            f.write(json.dumps(payload, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.json_path)  # a kill leaves the previous complete file, never half of one

    def guarded(self, label: str, fn: Callable[[], Any]) -> Any:
        """Run one measurement of a case; a failure (not a deadline) becomes a row, the case goes on."""
        try:
            return fn()
        except CaseTimeout:
            raise
        except Exception as err:
            if self.cuda and isinstance(err, torch.OutOfMemoryError):
                self.free()
            self.emit(Row(label, ok=False, note=f"failed: {describe(err)}"))
            return None

    # -- models: built once, on the device ------------------------------------------------------
    def model(self, key: str, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        if key not in self.models:
            self.models[key] = build()
        return self.models[key]

    def keep(self, *keys: str) -> None:
        """Drop every cached model but ``keys`` (a case that needs the memory calls ``keep()``)."""
        from gigatok_core.ar.decode import release_static_cache

        for key in [k for k in self.models if k not in keys]:
            model = self.models.pop(key)
            release_static_cache(model)  # type: ignore[arg-type]
        self.free()

    def free(self) -> None:
        """Release what a case held: static KV caches, compiled graphs, the allocator's cache."""
        from gigatok_core.ar.decode import release_static_cache

        for model in self.models.values():
            release_static_cache(model)  # type: ignore[arg-type]
        if "torch._dynamo" in sys.modules:  # nothing compiled otherwise (and the import is slow)
            torch._dynamo.reset()
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> float:
        return torch.cuda.memory_allocated(self.device) / GB if self.cuda else 0.0

    def peak(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / GB if self.cuda else None


Case = Callable[[Suite], None]


def run_cases(
    s: Suite,
    cases: list[tuple[str, float, Case]],
    *,
    budget_s: float,
    only: list[str] | None = None,
    skip: list[str] | None = None,
) -> None:
    """Run ``cases`` (name, deadline seconds, function) in order within ``budget_s`` seconds in all."""
    t0 = time.perf_counter()
    for name, limit, fn in cases:
        if (only and not any(o.lower() in name.lower() for o in only)) or any(
            k.lower() in name.lower() for k in skip or []
        ):
            continue
        left = budget_s - (time.perf_counter() - t0)
        s.current = name
        record: dict[str, Any] = {"name": name, "deadline_s": limit}
        s.cases.append(record)
        if left < min(limit, 10.0):
            record |= {"status": "skipped", "seconds": 0.0}
            s.emit(Row(name, note=f"skipped: {left:.1f} s left of the {budget_s:.0f} s budget"))
            continue
        s.free()
        start_gb, started = s.allocated(), time.perf_counter()
        status = "done"
        try:
            with deadline(min(limit, left)):
                fn(s)
        except CaseTimeout as err:
            status = "timeout"
            s.emit(Row(name, ok=False, note=f"stopped: {err} (rows above are complete)"))
        except Exception as err:  # one failing case must not stop the suite
            status = "failed"
            s.emit(Row(name, ok=False, note=f"failed: {describe(err)}"))
        peak = s.peak()
        record |= {
            "status": status,
            "seconds": round(time.perf_counter() - started, 2),
            "start_gb": round(start_gb, 3),
            "peak_above_start_gb": None if peak is None else round(peak - start_gb, 3),
        }
        s.write()
    s.current = ""
