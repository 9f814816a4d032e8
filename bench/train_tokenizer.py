"""Tokenizer training speed: train-step images/s, peak memory and where the time goes.

    python bench/train_tokenizer.py --preset s-s --batch-size 2 --steps 2              # CPU
    python bench/train_tokenizer.py --preset b-l --device cuda --precision fp16 --batch-size 32
    python bench/train_tokenizer.py --preset tiny --smoke                                 # seconds
    python bench/train_tokenizer.py --preset s-s --data /imagenet/train --workers 8     # + loader

Random weights everywhere (speed does not depend on the values): the tokenizer, PatchGAN or DINO
discriminator, LPIPS-VGG and the DINOv2 teacher (full size unless ``--smoke``). Every step runs
the whole recipe (aux window open, discriminator on, teacher on), the heaviest phase. The split:
teacher, model forward, LPIPS, discriminator (both sides), backward, optimizer (both AdamWs), and
with ``--data`` the loader's own images/s (official augmentation, ``--workers`` processes).
The headline split: forward (every module forward), backward (with the loss maths), optimizer
(clipping and both AdamW updates) and the rest, with each one's share of the step. ``--before
DIR`` (another gigatok checkout) measures that tree too, in alternating subprocesses.

    python bench/train_tokenizer.py --preset s-s --batch-size 2 --before /tmp/before --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the random-file kit
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench scripts

from train_gpt import PHASES, split_table  # one table for both trainers' step splits

from gigatok_core.dist import PRECISIONS, resolve_device
from gigatok_core.registry import tokenizer_names, tokenizer_preset
from gigatok_core.tokenizer import build_tokenizer, init_weights
from gigatok_core.train.tokenizer import LossSettings, OptimSettings, PatchGAN, TokenizerTrainer, VQLoss


class Timer:
    """Accumulates wall time per module forward (synchronising CUDA around each call)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.totals, self._start = device, defaultdict(float), {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def watch(self, name: str, module: torch.nn.Module) -> None:
        def pre(_m, _a):
            self._sync()
            self._start[name] = time.perf_counter()

        def post(_m, _a, _o):
            self._sync()
            self.totals[name] += time.perf_counter() - self._start.pop(name)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def span(self, name: str, fn):
        self._sync()
        t0 = time.perf_counter()
        out = fn()
        self._sync()
        self.totals[name] += time.perf_counter() - t0
        return out


def build(args: argparse.Namespace, device: torch.device, files: dict[str, Path]) -> TokenizerTrainer:
    from gigatok_core.tasks.image_metrics import build_lpips
    from gigatok_core.train.tokenizer.frozen import load_teacher

    preset = tokenizer_preset(args.preset)
    cfg = preset.config
    if args.smoke:
        from gigatok_core.config import TokenizerConfig

        cfg = TokenizerConfig(
            **{**cfg.__dict__, "image_size": 64, "num_latent_tokens": 16, "distill_dim": 64}
        )
    model = build_tokenizer(cfg, with_distill=True, device=device)
    init_weights(model)
    if args.channels_last and device.type == "cuda":
        model.use_channels_last()
    settings = LossSettings(disc_start=0, aux_loss_end=10**9)
    disc = PatchGAN().to(device)
    loss = VQLoss(settings, lpips=build_lpips(files["vgg"], device=device), discriminator=disc)
    teacher = load_teacher(files["teacher"], grid=cfg.grid_size, device=device)
    optim = OptimSettings(total_steps=1000, precision=args.precision)
    return TokenizerTrainer(model, loss, teacher, optim)


def loader_speed(args: argparse.Namespace) -> float:
    from torch.utils.data import DataLoader

    from gigatok_core.data.folder import ImageFolderDataset, collate_skip
    from gigatok_core.data.transforms import TrainAugment

    ds = ImageFolderDataset(args.data, transform=TrainAugment(256))
    dl = DataLoader(
        ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, collate_fn=collate_skip
    )
    it, n = iter(dl), 0
    next(it)  # workers start
    t0 = time.perf_counter()
    for _ in range(args.loader_batches):
        n += next(it).images.shape[0]
    return n / (time.perf_counter() - t0)


def bench_one(args: argparse.Namespace) -> dict:
    """Median train-step images/s, the time split (s) and peak memory (GiB, CUDA) of ``args``."""
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    from toktrain_kit import dinov2_entries, random_weights, vgg_entries

    with tempfile.TemporaryDirectory() as tmp:
        files = {"teacher": Path(tmp) / "teacher.pth", "vgg": Path(tmp) / "vgg.pth"}
        width, depth = (64, 1) if args.smoke else (768, 12)
        torch.save(random_weights(dinov2_entries(width, depth)), files["teacher"])
        torch.save(random_weights(vgg_entries()), files["vgg"])
        tr = build(args, device, files)
    timer = Timer(device)
    timer.watch("teacher", tr.teacher)
    timer.watch("lpips", tr.loss.lpips)
    timer.watch("discriminator", tr.loss.discriminator)
    timer.watch("forward", tr.model)
    size = tr.model.config.image_size
    x = torch.rand(args.batch_size, 3, size, size, device=device) * 2 - 1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps = []
    for t in range(args.steps + 1):
        timer.totals.clear()
        t0 = time.perf_counter()
        _, cache = timer.span("generator", lambda t=t: tr.generator_backward(t, [x]))
        gen = dict(timer.totals)
        timer.span("optimizer", lambda t=t: tr.generator_update(t))
        timer.span("disc_step", lambda t=t, c=cache: tr.discriminator_backward(t, c))
        timer.span("optimizer", lambda t=t: tr.discriminator_update(t))
        wall = time.perf_counter() - t0
        row = dict(timer.totals)
        # The headline split: every module forward (teacher, tokenizer, LPIPS, both D passes),
        # every backward (with the loss maths), both optimizer updates, and the rest of the wall time.
        all_fwd = row["teacher"] + row["forward"] + row["lpips"] + row.get("discriminator", 0.0)
        row["fwd_all"] = all_fwd
        row["bwd_all"] = row["generator"] + row["disc_step"] - all_fwd
        row["rest"] = wall - row["generator"] - row["disc_step"] - row["optimizer"]
        forwards = gen["teacher"] + gen["forward"] + gen["lpips"] + gen.get("discriminator", 0.0)
        row["backward"] = gen["generator"] - forwards
        row["discriminator"] = gen.get("discriminator", 0.0) + row["disc_step"]
        if t:  # the first step warms up
            steps.append((wall, row))
    wall = statistics.median(s for s, _ in steps)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "device": str(device),
        "images_per_s": args.batch_size / wall,
        "step_s": wall,
        "split": {k: statistics.median(s[k] for _, s in steps) for k in steps[0][1]},
        "peak_mem_gib": peak,
    }


HEADLINE = dict(zip(PHASES, ("fwd_all", "bwd_all", "optimizer", "rest"), strict=True))  # phase -> split key


def headline(split: dict[str, float], step: float) -> dict[str, float]:
    return {**{name: split[key] for name, key in HEADLINE.items()}, "step": step}


def compare(args: argparse.Namespace, argv: list[str]) -> dict[str, dict[str, float]]:
    """This tree and ``--before`` in alternating subprocesses; the median headline split of each."""
    here = Path(__file__).resolve().parents[1]
    trees = {"before": args.before.resolve(), "after": here}
    i = argv.index("--before")
    worker = [*argv[:i], *argv[i + 2 :], "--worker"]
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for r in range(args.rounds):
        for name in list(trees) if r % 2 == 0 else list(reversed(trees)):
            env = {**os.environ, "PYTHONPATH": str(trees[name])}
            cmd = [sys.executable, str(Path(__file__).resolve()), *worker]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            rows[name].append(json.loads(out.strip().splitlines()[-1]))
    return {
        name: {k: statistics.median(r[k] for r in rs) for k in (*HEADLINE, "step")}
        for name, rs in rows.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="s-s", choices=tokenizer_names())
    ap.add_argument("--batch-size", type=int, default=2, help="images per device per step")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    ap.add_argument("--smoke", action="store_true", help="64x64 images, small frozen networks")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--data", type=Path, help="an image folder: also measure the loader's images/s")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--loader-batches", type=int, default=20)
    ap.add_argument("--before", type=Path, help="another gigatok checkout: measure both, side by side")
    ap.add_argument("--rounds", type=int, default=3, help="with --before: alternating rounds per tree")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.before is not None:
        if not (args.before / "gigatok_core").is_dir():
            ap.error(f"--before {args.before}: not a gigatok checkout (no gigatok_core/)")
        columns = compare(args, sys.argv[1:])
        print(
            f"{args.preset} train step, batch {args.batch_size}, {args.device}, {args.precision}, "
            f"{torch.get_num_threads()} threads: medians of {args.rounds} alternating rounds x {args.steps} steps; "
            f"before = {args.before}"
        )
        print(split_table(columns))
        print(f"speed-up: {columns['before']['step'] / columns['after']['step']:.3f}x")
        return
    r = bench_one(args)
    if args.worker:
        print(json.dumps(headline(r["split"], r["step_s"])))
        return
    print(
        f"{args.preset} batch {args.batch_size} {r['device']} {args.precision}: {r['images_per_s']:.2f} images/s"
    )
    parts = ("teacher", "forward", "lpips", "discriminator", "backward", "optimizer")
    print(f"  step {r['step_s']:.3f}s: " + "  ".join(f"{k} {r['split'][k]:.3f}" for k in parts))
    print(split_table({"this tree": headline(r["split"], r["step_s"])}))
    if r["peak_mem_gib"] is not None:
        print(f"  peak memory {r['peak_mem_gib']:.2f} GiB")
    if args.data is not None:
        print(f"  loader: {loader_speed(args):.1f} images/s with {args.workers} workers")


if __name__ == "__main__":
    main()
