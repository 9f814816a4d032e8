"""GPT training-step speed: tokens/s, peak memory and model FLOPs utilisation per preset.

Runs the real training step (``GPTTask.train_step`` through the engine: autocast, GradScaler for
fp16, clipping, AdamW, EMA when asked) on random codes, for each preset and with/without
``torch.compile``. MFU = 6 * parameters * tokens per step / step time / device peak FLOP/s
(the 6N rule: forward 2N + backward 4N per token; attention FLOPs left out, as usual).

    python bench/train_gpt.py --preset gpt-b gpt-xxl --batch-size 32 --precision bf16 --compile both
    python bench/train_gpt.py --smoke          # gpt-tiny on CPU, a few steps (CI)

Single process only (per-device numbers); use ``--batch-size`` for the per-device batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

import torch
from torch.utils.data import TensorDataset

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

    for _ in range(args.warmup):
        task.train_step(engine, batch)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    for _ in range(args.steps):
        terms = task.train_step(engine, batch)
    sync()
    step_s = (time.perf_counter() - start) / args.steps
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
        "tokens_per_s": tokens / step_s,
        "peak_mem_gib": mem,
        "mfu": (6 * params * tokens / step_s / peak) if peak else None,
        "loss": float(terms["loss"]),
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
    args = ap.parse_args(argv)
    if args.smoke:
        args.preset, args.device, args.precision, args.batch_size = ["gpt-tiny"], "cpu", "fp32", 4
        args.steps, args.warmup, args.compile = 3, 1, "off"
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    rows = [bench_one(p, args, c) for p in args.preset for c in modes]
    if args.json:
        print(json.dumps(rows, indent=2))
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
    return rows


if __name__ == "__main__":
    main()
