"""Tokenizer speed: encode and decode images/s for a preset with random weights (docs/benchmarks.md#official-baseline).

    python bench/tokenizer.py --preset s-s --batch-size 1 --iters 3
    python bench/tokenizer.py --preset b-l --device cuda --precision bf16 --batch-size 32 --compile

The workload matches the official reconstruction path: ``encode(x)`` -> codes, then
``decode_codes(codes)``. One warm-up call, then the median of ``--iters`` timed calls. Speed does
not depend on the weight values. On a shared machine, compare only runs taken side by side.

It also counts the FLOPs of one encode + decode (``torch.utils.flop_counter``) and times a large
matrix product in the same dtype, and prints the **compute floor**: FLOPs / that matmul rate, the
time the workload would take if every FLOP ran at dense-GEMM speed.

Measured side by side (S-S, batch 1, fp32, 2-core Xeon with AVX-512/AMX, idle, torch 2.14.1):
413 GFLOP/image (387 in the CNN convolutions), matmul rate 337 GFLOP/s, so the floor is 1.23 s/image;
channels_last (the default) 1.64 s/image = 1.33x the floor, NCHW (``--no-channels-last``) 1.91 s/image.
bf16 on AMX: 0.48 s/image, but bf16 is outside the fp32 parity tolerances (golden S-S: 71% of
codes, recon mean-abs 0.009). A 2x gain over the official 1.6-1.8 s/image in fp32 would need fewer
FLOPs (e.g. Winograd convolutions, which PyTorch's CPU backend does not offer; a pure-PyTorch
F(4x4,3x3) prototype was 2x slower than oneDNN's direct convolution) or lower precision.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from gigatok_core.dist import PRECISIONS, resolve_device, resolve_precision
from gigatok_core.registry import tokenizer_names, tokenizer_preset
from gigatok_core.tokenizer import build_tokenizer, init_weights


def _timed(
    fn: Callable[[], torch.Tensor], device: torch.device, iters: int
) -> tuple[float, float, torch.Tensor]:
    """(median wall seconds, median process CPU seconds, output) over ``iters`` calls after a warm-up."""
    out = fn()  # warm-up (and compilation)
    wall, cpu = [], []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def _matmul_flops_per_s(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matrix product on ``device`` in ``dtype`` (median of 5)."""
    n = 4096 if device.type == "cuda" else 2048
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=dtype) for _ in range(2))
    seconds, _, _ = _timed(lambda: a @ b, device, 5)
    return 2 * n**3 / seconds


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="s-s", choices=tokenizer_names())
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the CNN encoder and decoder",
    )
    ap.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last memory format for the CNNs (default: on CUDA only, as load_tokenizer)",
    )
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # bf16 on CPU is allowed here (AMX/AVX512-BF16 machines), though it is outside fp32 parity.
    cpu_bf16 = device.type == "cpu" and args.precision == "bf16"
    dtype = PRECISIONS["bf16"] if cpu_bf16 else resolve_precision(args.precision, device)
    cfg = tokenizer_preset(args.preset).config
    torch.manual_seed(0)
    model = build_tokenizer(cfg, device="cpu")
    init_weights(model)
    model = model.to(device=device, dtype=dtype).eval()
    channels_last = args.channels_last if args.channels_last is not None else device.type == "cuda"
    if channels_last:
        model.use_channels_last()
    if args.compile:
        model.encoder = torch.compile(model.encoder)
        model.decoder = torch.compile(model.decoder)

    size = cfg.image_size
    x = torch.rand(args.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = x.to(device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        t_enc, c_enc, codes = _timed(lambda: model.encode(x), device, args.iters)
        t_dec, c_dec, recon = _timed(lambda: model.decode_codes(codes), device, args.iters)
    assert recon.shape == (args.batch_size, 3, size, size) and torch.isfinite(recon).all()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.decode_codes(model.encode(x))
    flops = counter.get_total_flops()
    rate = _matmul_flops_per_s(device, dtype)

    b = args.batch_size
    res = {
        "encode_s_per_batch": t_enc,
        "decode_s_per_batch": t_dec,
        "encode_img_per_s": b / t_enc,
        "decode_img_per_s": b / t_dec,
        "s_per_image": (t_enc + t_dec) / b,
        "cpu_s_per_image": (c_enc + c_dec) / b,
        "gflop_per_image": flops / b / 1e9,
        "matmul_gflop_per_s": rate / 1e9,
        "floor_s_per_image": flops / b / rate,
    }
    print(
        f"preset {args.preset}  device {device}  {args.precision}  batch {b}  threads {torch.get_num_threads()}"
        f"  compile {args.compile}  channels_last {channels_last}"
    )
    print(f"encode: {t_enc:.3f} s/batch  {res['encode_img_per_s']:.2f} img/s")
    print(f"decode: {t_dec:.3f} s/batch  {res['decode_img_per_s']:.2f} img/s")
    print(f"encode+decode: {res['s_per_image']:.3f} s/image")
    print(
        f"compute: {res['gflop_per_image']:.0f} GFLOP/image, matmul rate {res['matmul_gflop_per_s']:.0f} GFLOP/s"
        f" -> floor {res['floor_s_per_image']:.3f} s/image; measured = "
        f"{res['s_per_image'] / res['floor_s_per_image']:.2f}x the floor"
    )
    if device.type == "cpu":  # CPU seconds / threads: what the wall time would be without contention
        threads = torch.get_num_threads()
        print(
            f"process CPU time: {res['cpu_s_per_image']:.3f} s/image "
            f"(/{threads} threads = {res['cpu_s_per_image'] / threads:.3f}; robust to other load)"
        )
    return res


if __name__ == "__main__":
    main()
