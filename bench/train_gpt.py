"""GPT training-step speed: tokens/s, peak memory, MFU, and where the step's time goes.

Runs the real training step (``GPTTask.train_step`` through the engine: autocast, GradScaler for
fp16, clipping, AdamW, EMA when asked) on random codes, for each preset and with/without
``torch.compile``. MFU = 6 * parameters * tokens per step / step time / device peak FLOP/s
(the 6N rule: forward 2N + backward 4N per token; attention FLOPs left out, as usual).

Each step is split into forward (model and loss), backward, optimizer (unscale, clipping, AdamW,
zeroing) and the rest (finite check, scheduler, EMA, the logging read), synchronising CUDA at each
boundary; the table gives each part's median milliseconds and share of the step. ``--before DIR``
(another gigatok checkout, e.g. ``git worktree add /tmp/before <commit>``) measures that tree too,
in subprocesses that alternate with this tree's, and prints both splits side by side.

    python bench/train_gpt.py --preset gpt-b gpt-xxl --batch-size 32 --precision bf16 --compile both
    python bench/train_gpt.py --preset gpt-b --device cpu --precision fp32 --batch-size 4 --before /tmp/before
    python bench/train_gpt.py --smoke          # gpt-tiny on CPU, a few steps (CI)

Single process only (per-device numbers); use ``--batch-size`` for the per-device batch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

PHASES = ("forward", "backward", "optimizer", "rest")

# Dense peak FLOP/s per device name fragment and precision (vendor datasheets; bf16/fp16 tensor
# cores, fp32 = TF32 tensor cores on Ampere and later, since the trainer enables TF32).
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp32": 494.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "fp32": 494.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0},
    "L40S": {"bf16": 362.0, "fp16": 362.0, "fp32": 183.0},
    "A10": {"bf16": 125.0, "fp16": 125.0, "fp32": 62.5},
}


def peak_flops(device: torch.device, precision: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, table in PEAK_TFLOPS.items():
        if key in name:
            return table[precision] * 1e12
    return None


class Phases:
    """Wall time between marks, attributed to the phase named at each mark (CUDA synchronised)."""

    def __init__(self, device: torch.device, clock: Any = time.perf_counter) -> None:
        """``clock``: wall time by default; ``time.process_time`` counts the CPU time of this
        process only (a fair clock on a CPU shared with other work, at one thread)."""
        self.device = device
        self.clock = clock
        self.totals: dict[str, float] = defaultdict(float)
        self._last = 0.0

    def start(self) -> None:
        self.totals = defaultdict(float)
        self._sync()
        self._last = self.clock()

    def mark(self, phase: str) -> None:
        self._sync()
        now = self.clock()
        self.totals[phase] += now - self._last
        self._last = now

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def instrument(engine: Any, phases: Phases) -> None:
    """Mark the phases around the engine's ``backward`` and ``optimizer_step`` (the task calls both)."""
    backward, optimizer_step = engine.backward, engine.optimizer_step

    def timed_backward(loss: torch.Tensor) -> None:
        phases.mark("forward")
        backward(loss)
        phases.mark("backward")

    def timed_optimizer_step(*a: Any, **k: Any) -> Any:
        phases.mark("rest")
        out = optimizer_step(*a, **k)
        phases.mark("optimizer")
        return out

    engine.backward = timed_backward
    engine.optimizer_step = timed_optimizer_step


def split_table(columns: dict[str, dict[str, float]]) -> str:
    """Rows: the phases and the step; columns: ms and share per measured tree."""
    head = f"{'':10}" + "".join(f"{name:>22}" for name in columns)
    lines = [head]
    for phase in (*PHASES, "step"):
        cells = ""
        for m in columns.values():
            share = f"{100 * m[phase] / m['step']:5.1f}%" if phase != "step" else "      "
            cells += f"{1000 * m[phase]:>13.1f} ms {share}"
        lines.append(f"{phase:10}{cells}")
    return "\n".join(lines)


def bench_one(preset: str, args: argparse.Namespace, compile: bool) -> dict[str, Any]:
    from gigatok_core.config import GPTTrainConfig
    from gigatok_core.train.engine import Engine
    from gigatok_core.train.gpt import GPTTask
    from gigatok_core.train.state import LoopSettings

    overrides = [
        f"run.batch_size={args.batch_size}",
        f"run.precision={args.precision}",
        f"run.device={args.device}",
        f"run.compile={str(compile).lower()}",
        f"run.ema={str(args.ema).lower()}",
        f"run.max_steps={args.steps + args.warmup}",
        f"run.activation_checkpointing={str(args.activation_checkpointing).lower()}",
    ]
    if getattr(args, "strategy", None):  # bench/gpu_suite.py: ddp for one process (FSDP refuses compile)
        overrides.append(f"run.strategy={args.strategy}")
    cfg = GPTTrainConfig.from_name(preset, overrides=overrides)
    engine = Engine(LoopSettings.from_train_config(cfg))
    dev = engine.device
    t = cfg.model.block_size
    n = args.batch_size
    codes = torch.randint(0, cfg.model.vocab_size, (n, t))
    labels = torch.randint(0, cfg.model.num_classes, (n,))
    task = GPTTask(cfg, TensorDataset(codes, labels))
    task.setup(engine)
    batch = [engine.to_device((codes, labels))]
    params = sum(p.numel() for p in task.model.parameters())

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    phases = Phases(dev)
    instrument(engine, phases)
    for _ in range(args.warmup):
        phases.start()
        task.train_step(engine, batch)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, splits = [], []
    for _ in range(args.steps):
        phases.start()
        start = time.perf_counter()
        terms = task.train_step(engine, batch)
        loss = float(terms["loss"])  # what the engine's logging reads every log_every steps
        phases.mark("rest")
        times.append(time.perf_counter() - start)
        splits.append(dict(phases.totals))
    step_s = statistics.median(times)
    split = {p: statistics.median(s.get(p, 0.0) for s in splits) for p in PHASES}
    split["step"] = step_s
    tokens = n * t
    peak = peak_flops(dev, args.precision, args.peak_tflops)
    if dev.type == "cuda":
        mem = torch.cuda.max_memory_allocated(dev) / 2**30
    else:
        mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (KiB -> GiB)
    return {
        "preset": preset,
        "params": params,
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "precision": args.precision,
        "compile": compile,
        "batch_per_device": n,
        "step_s": step_s,
        "split": split,
        "optimizer_kernel": _kernel(task.opt),
        "tokens_per_s": tokens / step_s,
        "peak_mem_gib": mem,
        "mfu": (6 * params * tokens / step_s / peak) if peak else None,
        "loss": loss,
    }


def _kernel(opt: torch.optim.Optimizer) -> str:
    group = opt.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "for-loop"


def compare(args: argparse.Namespace, argv: list[str]) -> dict[str, dict[str, float]]:
    """This tree and ``--before`` in alternating subprocesses; median split per tree."""
    here = Path(__file__).resolve().parents[1]
    trees = {"before": args.before.resolve(), "after": here}
    worker = [a for a in argv if a not in ("--json",)]
    i = worker.index("--before")
    worker = [*worker[:i], *worker[i + 2 :], "--worker"]
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
    for r in range(args.rounds):
        for name in list(trees) if r % 2 == 0 else list(reversed(trees)):
            env = {**os.environ, "PYTHONPATH": str(trees[name])}
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), *worker],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows[name].extend(json.loads(out.strip().splitlines()[-1]))
    return {
        name: {k: statistics.median(r["split"][k] for r in rs) for k in (*PHASES, "step")}
        for name, rs in rows.items()
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="+", default=["gpt-b"])
    ap.add_argument("--batch-size", type=int, default=32, help="per device")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--compile", default="off", choices=["off", "on", "both"])
    ap.add_argument("--ema", action="store_true")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak, for MFU off the table")
    ap.add_argument("--smoke", action="store_true", help="gpt-tiny, CPU, fp32, 3 steps")
    ap.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    ap.add_argument("--before", type=Path, help="another gigatok checkout to measure side by side")
    ap.add_argument("--rounds", type=int, default=3, help="with --before: alternating rounds per tree")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke:
        args.preset, args.device, args.precision, args.batch_size = ["gpt-tiny"], "cpu", "fp32", 4
        args.steps, args.warmup, args.compile = 3, 1, "off"
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    if args.before is not None:
        if len(args.preset) != 1 or len(modes) != 1:
            ap.error("--before compares one preset in one compile mode")
        if not (args.before / "gigatok_core").is_dir():
            ap.error(f"--before {args.before}: not a gigatok checkout (no gigatok_core/)")
        columns = compare(args, list(argv if argv is not None else sys.argv[1:]))
        print(
            f"{args.preset[0]} train step, {args.device}, {args.precision}, batch {args.batch_size}, "
            f"compile {args.compile}, {torch.get_num_threads()} threads: medians of {args.rounds} alternating "
            f"rounds x {args.steps} steps; before = {args.before}"
        )
        print(split_table(columns))
        print(f"speed-up: {columns['before']['step'] / columns['after']['step']:.3f}x")
        return [columns]
    rows = [bench_one(p, args, c) for p in args.preset for c in modes]
    if args.json or args.worker:
        print(json.dumps(rows, indent=None if args.worker else 2))
    else:
        print(
            f"{'preset':10} {'compile':7} {'batch':>5} {'step ms':>9} {'tokens/s':>11} {'mem GiB':>8} {'MFU':>6}"
        )
        for r in rows:
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
            print(
                f"{r['preset']:10} {r['compile']!s:7} {r['batch_per_device']:>5} {1000 * r['step_s']:>9.1f} "
                f"{r['tokens_per_s']:>11.0f} {r['peak_mem_gib']:>8.2f} {mfu:>6}"
            )
        for r in rows:
            print(f"\n{r['preset']} compile={r['compile']} (AdamW {r['optimizer_kernel']}):")
            print(split_table({"this tree": r["split"]}))
    return rows


if __name__ == "__main__":
    main()
