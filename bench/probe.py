"""Linear-probe speed: backbone features/s, and one probe epoch over cached features.

    python bench/probe.py --smoke                                   # CPU, tiny presets, seconds
    python bench/probe.py --device cuda --precision fp16 --backbone gpt:gpt-b@s-s tokenizer:s-s
    python bench/probe.py --device cuda --num-features 1281167 --dim 1536 --backbone

Backbones are built from their preset configs with random weights (speed does not depend on the
values). ``gpt:PRESET@TOKENIZER`` times the GPT probe's features (tokenizer encode in fp32 + the GPT
up to block n_layer // 2 under autocast); ``tokenizer:PRESET`` the encoder features. The epoch case
trains the probe head (BatchNorm + linear, LARS, per-iteration lr) over ``--num-features`` random
features of width ``--dim`` at ``--batch-size`` per step, through the same ``train_epoch`` the
probe runs with ``--cache-features`` (target: ImageNet's 1.28M features in <= 1 minute on one GPU).
One warm-up, then the median of ``--iters`` timed calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from gigatok_core.ar.load import build_gpt
from gigatok_core.dist import get_context, resolve_device, resolve_precision
from gigatok_core.probe import LARS, GPTFeatures, ProbeHead, TokenizerFeatures, lr_at, scaled_lr
from gigatok_core.probe.loop import train_epoch
from gigatok_core.registry import gpt_preset, tokenizer_preset
from gigatok_core.tokenizer import build_tokenizer, init_weights


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(iters):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_backbone(spec: str, device: torch.device) -> torch.nn.Module:
    """``gpt:PRESET[@TOKENIZER]`` or ``tokenizer:PRESET`` with random weights, on ``device``."""
    kind, _, name = spec.partition(":")
    if kind == "tokenizer":
        tok = build_tokenizer(tokenizer_preset(name).config, device=device)
        init_weights(tok)
        return TokenizerFeatures(tok.eval())
    if kind == "gpt":
        gpt_name, _, tok_name = name.partition("@")
        tok = build_tokenizer(tokenizer_preset(tok_name or "s-s").config, device=device)
        init_weights(tok)
        model = build_gpt(gpt_preset(gpt_name).config, device=device)
        return GPTFeatures(model, tok.eval())
    raise SystemExit(f"unknown backbone {spec!r}: use gpt:PRESET@TOKENIZER or tokenizer:PRESET")


def features_per_s(spec: str, device: torch.device, amp: torch.dtype, batch: int, iters: int) -> float:
    ex = build_backbone(spec, device).train()  # train mode: as while the head trains (dropout on)
    x = torch.rand(batch, 3, ex.image_size, ex.image_size, device=device) * 2 - 1

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp, enabled=amp != torch.float32):
            return ex(x)

    return batch / _timed(step, device, iters)


def epoch_seconds(
    n: int, dim: int, classes: int, batch: int, device: torch.device, amp: torch.dtype, iters: int
) -> float:
    """Seconds of one probe epoch over ``n`` cached (random) features on ``device``."""
    gen = torch.Generator(device=device).manual_seed(0)
    feats = torch.randn(n, dim, device=device, generator=gen)
    labels = torch.randint(0, classes, (n,), device=device, generator=gen)
    head = ProbeHead(dim, classes).to(device)
    opt = LARS(head.parameters(), scaled_lr(0.1, batch))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    steps = n // batch
    ctx = get_context(device, init=False)

    def epoch() -> None:
        order = torch.randperm(n, device=device)[: steps * batch].view(steps, batch)
        source = ((feats[b], labels[b]) for b in order)
        train_epoch(
            head,
            opt,
            scaler,
            source,
            steps=steps,
            lr=lambda t: lr_at(20 + t, lr=0.05, epochs=90, warmup_epochs=10),
            device=device,
            amp_dtype=amp,
            ctx=ctx,
        )

    return _timed(epoch, device, iters)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", nargs="*", default=["gpt:gpt-b@s-s", "tokenizer:s-s"])
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--batch-size", type=int, default=128, help="images (features) and probe batch")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--num-features", type=int, default=1281167, help="cached features per epoch (0: skip)")
    ap.add_argument("--dim", type=int, default=768, help="feature width of the epoch case")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="tiny presets on CPU, small sizes")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)
    if args.smoke:
        args.device, args.backbone, args.batch_size, args.iters = (
            "cpu",
            ["gpt:gpt-tiny@tiny", "tokenizer:tiny"],
            2,
            1,
        )
        args.num_features, args.dim, args.classes = min(args.num_features, 4096), 64, 10
    device = resolve_device(args.device)
    amp = resolve_precision(args.precision, device)
    out: dict[str, float] = {}
    for spec in args.backbone:
        rate = features_per_s(spec, device, amp, args.batch_size, args.iters)
        out[f"features_per_s[{spec}]"] = rate
        print(f"{spec:28s} {device.type} {args.precision}: {rate:9.1f} features/s (batch {args.batch_size})")
    if args.num_features:
        sec = epoch_seconds(
            args.num_features, args.dim, args.classes, args.batch_size, device, amp, args.iters
        )
        out["epoch_seconds"] = sec
        print(
            f"probe epoch over {args.num_features} cached features (dim {args.dim}, batch {args.batch_size}): {sec:.2f} s"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
