"""gigatok's GPT training step against the official one, side by side in one process.

    python bench/train_gpt_vs_official.py --official-repo /path/to/GigaTok          # GPT-B, CPU, fp32, batch 4
    python bench/train_gpt_vs_official.py --official-repo /path/to/GigaTok --rounds 7 --steps 2
    python bench/train_gpt_vs_official.py --official-repo /path/to/GigaTok --threads 1 --clock cpu --plain --profile 12
    python bench/train_gpt_vs_official.py --official-repo /path/to/GigaTok --threads 2 --rounds 6 --processes

The official code is imported only from ``--official-repo`` (a checkout of
https://github.com/SilentView/GigaTok; nothing of it is copied here). Both sides train GPT-B from
random weights in train mode (all dropouts on), fp32, on the same random codes, with the official
optimizer setup of ``autoregressive/train/train_c2i.py`` ``creat_optimizer()``: AdamW
``fused=True``, betas (0.9, 0.95), weight decay 0.05 on tensors with two or more dimensions, 0 on
the rest; clipping 1.0; the loss read back with ``.item()`` every step as its loop logs it.
gigatok runs :meth:`GPTTask.train_step` through its engine (clipping, AdamW, the WSD scheduler).

Rounds interleave the sides (each takes each place in the order in turn), with the same torch threads; the figures are
medians over all timed steps, so a machine shared with other work biases neither side. In one
process the sides share one heap, so how much fresh memory a side maps in a step depends on what
the others freed; ``--processes`` runs each side in a fresh process per round instead. Each side
first takes ``--warmup`` untimed steps (in each of its processes with ``--processes``). Each step
is split into forward (model and loss), backward, optimizer (clipping, AdamW step, zeroing) and the
rest (schedule, logging reads, loop overhead). ``--plain`` adds a third side: gigatok with its CPU
levers switched off (``nn.Dropout``'s mask, ``nn.Linear``'s BLAS products, the unfused RMSNorm
formula, SDPA attention with autograd's q/k/v split, autograd's SwiGLU, the plain head + ``F.cross_entropy``), to show what they buy; ``--profile N`` profiles one more step per side and
prints the N costliest operators of each (self CPU time). ``--clock cpu`` times with the process's
CPU time instead of the wall clock: on a machine shared with other work, at ``--threads 1``, it
counts only this process's own work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from train_gpt import PHASES, Phases, instrument  # bench/ is on the path when run as a script


@contextlib.contextmanager
def plain_levers() -> Iterator[None]:
    """gigatok's GPT with its CPU levers off: ``nn.Dropout`` (out of place), ``nn.Linear`` (BLAS
    ``mm``), RMSNorm as four element-wise operations, SDPA attention on autograd's q/k/v split, SwiGLU through autograd's
    own graph, the residual sums out of place, the head's logits then ``F.cross_entropy`` (the code before they came in)."""
    from torch import nn

    import gigatok_core.ar.gpt as gpt
    from gigatok_core.ar.cpu_kernels import sdpa_causal_attention

    def rms_norm(self: gpt.RMSNorm, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight

    def cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(F.linear(h, weight), targets)

    def dropout(self: gpt.Dropout, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, self.training)  # out of place, as nn.Dropout()

    def swiglu(a: torch.Tensor, b: torch.Tensor, consume: bool = False) -> torch.Tensor:
        return F.silu(a) * b

    def residual_add(h: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return h + branch

    names = ("linear_cross_entropy", "causal_attention", "swiglu", "residual_add")
    saved = gpt.RMSNorm.forward, gpt.Dropout.forward, gpt.Linear.forward, [getattr(gpt, n) for n in names]
    gpt.RMSNorm.forward, gpt.Dropout.forward, gpt.Linear.forward = rms_norm, dropout, nn.Linear.forward
    plains = (cross_entropy, sdpa_causal_attention, swiglu, residual_add)
    for name, plain in zip(names, plains, strict=True):
        setattr(gpt, name, plain)
    try:
        yield
    finally:
        gpt.RMSNorm.forward, gpt.Dropout.forward, gpt.Linear.forward, functions = saved
        for name, fn in zip(names, functions, strict=True):
            setattr(gpt, name, fn)


def gigatok_step(
    args: argparse.Namespace,
    codes: torch.Tensor,
    labels: torch.Tensor,
    phases: Phases,
    *,
    plain: bool = False,
) -> Callable:
    from torch.utils.data import TensorDataset

    from gigatok_core.config import GPTTrainConfig
    from gigatok_core.train.engine import Engine
    from gigatok_core.train.gpt import GPTTask
    from gigatok_core.train.state import LoopSettings

    overrides = [
        f"run.batch_size={args.batch_size}",
        "run.precision=fp32",
        f"run.device={args.device}",
        "run.compile=false",
        "run.max_steps=1000000",
    ]
    cfg = GPTTrainConfig.from_name("gpt-b", overrides=overrides)
    engine = Engine(LoopSettings.from_train_config(cfg))
    task = GPTTask(cfg, TensorDataset(codes, labels))
    task.setup(engine)
    batch = [engine.to_device((codes, labels))]
    instrument(engine, phases)

    def step() -> float:
        with plain_levers() if plain else contextlib.nullcontext():
            terms = task.train_step(engine, batch)
        loss = float(terms["loss"])  # what the engine's logging reads (every log_every steps)
        phases.mark("rest")
        return loss

    return step


def official_step(
    args: argparse.Namespace, codes: torch.Tensor, labels: torch.Tensor, phases: Phases
) -> Callable:
    sys.path.insert(0, str(args.official_repo))
    from autoregressive.models.gpt_1d import GPT_models  # the official model, from --official-repo

    device = torch.device(args.device)
    model = GPT_models["GPT-B"](
        vocab_size=16384,
        block_size=256,
        num_classes=1000,
        cls_token_num=1,
        model_type="c2i",
        resid_dropout_p=0.1,
        ffn_dropout_p=0.1,
        drop_path_rate=0.0,
        token_dropout_p=0.1,
    ).to(device)
    model.train()
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.05},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # fp32: the official scaler is a no-op
    z, c = codes.to(device), labels.to(device)
    running = [0.0]

    def step() -> float:
        _, loss = model(cond_idx=c, idx=z[:, :-1], targets=z)
        phases.mark("forward")
        scaler.scale(loss).backward()
        phases.mark("backward")
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        phases.mark("optimizer")
        value = loss.item()
        running[0] += value  # the official loop's per-step read
        phases.mark("rest")
        return value

    return step


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official-repo", type=Path, required=True, help="a checkout of SilentView/GigaTok")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per side and round")
    ap.add_argument(
        "--warmup", type=int, default=1, help="untimed steps per side (per process with --processes)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="wall time, or this process's CPU time"
    )
    ap.add_argument("--plain", action="store_true", help="also time gigatok with its CPU levers off")
    ap.add_argument(
        "--processes",
        action="store_true",
        help="run each side in a fresh process per round (after its --warmup steps) instead of all in one",
    )
    ap.add_argument("--only", choices=("gigatok", "official", "plain"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print each side's N costliest operators"
    )
    args = ap.parse_args(argv)
    if not (args.official_repo / "autoregressive" / "models" / "gpt_1d.py").is_file():
        ap.error(f"{args.official_repo} is not a GigaTok checkout (no autoregressive/models/gpt_1d.py)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    names = ["gigatok", "official"] + (["plain"] if args.plain else [])
    if args.only:
        print(json.dumps(in_process(args, [args.only], clock)[args.only]))
        return {}
    rows = in_fresh_processes(args, names) if args.processes else in_process(args, names, clock)
    med = {
        n: {k: statistics.median(x.get(k, 0.0) for x in rs) for k in ("total", *PHASES)}
        for n, rs in rows.items()
    }
    where = "one fresh process per side and round" if args.processes else "one process"
    print(
        f"GPT-B train step, {device}, fp32, batch {args.batch_size} x 256 tokens, {torch.get_num_threads()} threads, "
        f"{args.rounds} interleaved rounds x {args.steps} steps, {where} (medians, {args.clock} clock)"
    )
    print(f"{'':9} {'step ms':>9} " + " ".join(f"{p:>16}" for p in PHASES))
    for name, m in med.items():
        cells = " ".join(f"{1000 * m[p]:>8.1f} ({100 * m[p] / m['total']:>4.1f}%)" for p in PHASES)
        print(f"{name:9} {1000 * m['total']:>9.1f} {cells}")
    speedup = med["official"]["total"] / med["gigatok"]["total"]
    print(f"gigatok step speed vs official: {speedup:.3f}x")
    if "plain" in med:
        print(
            f"gigatok with its CPU levers off vs official: {med['official']['total'] / med['plain']['total']:.3f}x"
        )
    if args.profile:
        phases = Phases(device, clock)
        for name, fn in build_sides(args, names, phases).items():
            print(f"\n{name}: the {args.profile} costliest operators of one step (self CPU time)")
            print(operator_table(fn, phases, args.profile))
    return {"median": med, "speedup": speedup}


def build_sides(args: argparse.Namespace, names: list[str], phases: Phases) -> dict[str, Callable]:
    """Each named side's step function, on the same random codes and labels, seeded alike."""
    gen = torch.Generator().manual_seed(args.seed)
    codes = torch.randint(0, 16384, (args.batch_size, 256), generator=gen)
    labels = torch.randint(0, 1000, (args.batch_size,), generator=gen)
    sides = {}
    for name in names:
        torch.manual_seed(args.seed)
        if name == "official":
            sides[name] = official_step(args, codes, labels, phases)
        else:
            sides[name] = gigatok_step(args, codes, labels, phases, plain=name == "plain")
    return sides


def in_process(args: argparse.Namespace, names: list[str], clock: Callable[[], float]) -> dict[str, list]:
    """Every side in this process, rounds interleaved (each side takes each place in turn):
    per side, one row of phase times per timed step."""
    phases = Phases(torch.device(args.device), clock)
    sides = build_sides(args, names, phases)
    for fn in sides.values():  # warm-up: allocator, first-touch of the optimizer states
        for _ in range(args.warmup):
            phases.start()
            fn()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    rounds = 1 if args.only else args.rounds
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            for _ in range(args.steps):
                phases.start()
                t0 = clock()
                sides[name]()
                rows[name].append({"total": clock() - t0, **phases.totals})
    return rows


def in_fresh_processes(args: argparse.Namespace, names: list[str]) -> dict[str, list]:
    """Each side in a fresh process per round (this script with ``--only``), the order rotating
    by round: no side runs on a heap or page cache another side left behind."""
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    common = [
        *("--official-repo", str(args.official_repo), "--batch-size", str(args.batch_size)),
        *(
            "--device",
            args.device,
            "--steps",
            str(args.steps),
            "--seed",
            str(args.seed),
            "--clock",
            args.clock,
        ),
        *(("--threads", str(args.threads)) if args.threads else ()),
    ]
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            done = subprocess.run(
                [sys.executable, __file__, *common, "--only", name],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"the {name} side failed:\n{done.stderr[-4000:]}")
            rows[name].extend(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def operator_table(step: Callable, phases: Phases, rows: int) -> str:
    """One profiled step: the ``rows`` operators with the most self CPU time, ms and share."""
    from torch.profiler import ProfilerActivity, profile

    phases.start()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    lines = [f"  {'operator':48} {'calls':>6} {'ms':>9} {'share':>6}"]
    for e in events[:rows]:
        lines.append(
            f"  {e.key[:48]:48} {e.count:>6} {e.self_cpu_time_total / 1000:>9.1f} {100 * e.self_cpu_time_total / total:>5.1f}%"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
