"""Sampling speed: tokens/s, ms per decode step, images/s and peak memory (docs/benchmarks.md#official-baseline).

    python bench/sample.py --gpt gpt-b --images 2 --device cpu           # the official CPU baseline's workload
    python bench/sample.py --gpt gpt-xxl --images 32 --device cuda --precision bf16 --tokenizer b-l

Random weights (speed does not depend on the values). The workload matches the official baseline:
``--images`` class labels with CFG (so 2x rows: cond + uncond), 256 tokens, top-k 0, temperature 1.
One warm-up call, then the median of ``--iters`` timed calls of the decode loop (GPT only), then the
same end to end (GPT + tokenizer decode + uint8 conversion) unless ``--no-tokenizer``.
On a shared machine compare only runs taken side by side; the official CPU baseline is
~11.7-12.2 s per 2-image call (5.9-6.1 s/image) on a quiet 2-core machine.

It also prints the **memory floor** of a decode step: the bytes it must read (weights, without the
embedding tables, plus the mean KV cache) over the device's measured streaming-read bandwidth, and
the measured step as a multiple of it (the GPU target: gpt-xxl at batch 8 within 2x).

``--compile`` compiles the static-shape decode step (``gigatok_core/ar/decode.py``; CUDA graphs on
CUDA); the warm-up call pays the compilation. Side by side on the 2-core CPU (gpt-b, 2 images, fp32,
``--no-tokenizer --iters 5``, torch 2.14.1, ms/step = decode-loop time / 256 tokens):

    before the static step     33.4 ms/step  (8.56 s/call)
    eager, this version        33.2 ms/step  (8.50 s/call; same sliced-cache path)
    --compile                  31.7 ms/step  (8.11 s/call; ~7-10 s compile in the warm-up)

(The static step run eagerly was ~6% slower on CPU, 34.8 vs 32.7 ms/step: it attends over all 256
slots; hence eager keeps the sliced path.)

The CPU is not bandwidth-bound at these batches: the matrix products with 4-16 rows run well below
the 24 GB/s streaming read (13-26 GB/s depending on the shape, in MKL's skinny-GEMM kernels), and
the fused attention reads the KV cache at ~35 GB/s. Measured (same machine, idle, decode loop):

    fp32, 2 images (4 rows)    33-38 ms/step, 4.2-4.8 s/image   (~2.3x the memory floor)
    fp32, 8 images (16 rows)   54-57 ms/step, 1.7-1.8 s/image
    bf16, 2 images (4 rows)    24-25 ms/step, 3.1-3.2 s/image   (AMX)
    bf16, 8 images (16 rows)   32 ms/step,    1.0 s/image

``--step-profile`` (with ``--compile``) also times one compiled step early (position 8) and late
(the last position) in the sequence: the step reads its cache-length bucket (64, 128, 192 or 256
slots, ``gigatok_core/ar/decode.py``), so an early step is cheaper than a late one; the same two
positions reading the whole cache (one bucket, as before the buckets) are printed beside them.

No GPU figures yet.

``--compare 1,8,64`` runs the standard sampler and speculative Jacobi decoding (``--sampler sjd``,
``gigatok_core/ar/sjd.py``) side by side at each batch size: forward passes per batch (what every
image of it waits for), SJD's acceptance, ms per pass and s per image. Random weights make the
acceptance meaningless (near-uniform conditionals accept almost every draft); pass
``--gpt-checkpoint RUN_DIR`` for a trained GPT. Shared 2-core CPU (heavily loaded), gpt-tiny trained
here 200 steps on codes of scikit-image photos (``tiny`` tokenizer after 3 steps: 4 codes used),
fp32, CFG 4, window 16, ``--iters 1``:

    batch 1:  256 -> 50 passes (5.1x), 81% accepted, 14.8 -> 50.5 ms/pass, 3.80 -> 2.53 s/image
    batch 8:  256 -> 53 passes (4.8x), 83% accepted, 42.7 -> 601 ms/pass,  1.37 -> 3.98 s/image
    batch 64: 256 -> 63 passes (4.1x), 83% accepted, 119 -> 486 ms/pass,   0.47 -> 0.48 s/image

A pass of ``window + 1`` positions per row costs several decode steps on a CPU, so the fewer passes
pay off only at one image; on a GPU at small batches (memory-bound steps) they should pay more.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch

from gigatok_core.ar import (
    CFGSchedule,
    Drawer,
    SamplingParams,
    SJDStats,
    build_gpt,
    generate,
    generate_sjd,
    sample_generators,
)
from gigatok_core.ar.load import seeded_random_weights
from gigatok_core.ar.sjd import DEFAULT_WINDOW
from gigatok_core.data.images import to_uint8
from gigatok_core.dist import resolve_device, resolve_precision
from gigatok_core.registry import (
    default_tokenizer_for,
    gpt_names,
    gpt_preset,
    tokenizer_names,
    tokenizer_preset,
)


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


def _peak_mem_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def bytes_per_step(model: torch.nn.Module, rows: int, n_tokens: int) -> tuple[int, int]:
    """(weight bytes, mean KV-cache bytes) one decode step must read. Weights: every parameter but
    the embedding tables (a step gathers one row of those). KV cache: keys and values of every layer
    for the positions so far, averaged over the ``n_tokens`` steps (class token + (n_tokens - 1) / 2);
    at 16 rows it is a third of GPT-B's traffic."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    weights = sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in tables)
    cfg = model.config
    per_position = rows * cfg.n_layer * 2 * cfg.dim * next(model.parameters()).element_size()
    return weights, int(per_position * (1 + (n_tokens - 1) / 2))


def read_bandwidth(device: torch.device) -> float:
    """Bytes/s of a streaming read (a sum over 1 GiB on CUDA, 512 MiB on CPU), median of 5."""
    n = (2**30 if device.type == "cuda" else 2**29) // 4
    buf = torch.ones(n, device=device)
    seconds = _timed(lambda: buf.sum(), device, 5)
    return n * 4 / seconds


def step_profile(
    model: torch.nn.Module, rows: int, n_tokens: int, device: torch.device, iters: int = 20
) -> dict[str, float]:
    """ms of one compiled decode step early (position 8) and late (n_tokens - 1) in the sequence,
    reading its cache-length bucket (the default) or the whole cache (one bucket: every step
    reads all slots, as before the buckets)."""
    from gigatok_core.ar.decode import DecodeStep, bucket_length, length_buckets

    out = {}
    with torch.inference_mode():
        for label, buckets in (("bucketed", None), ("whole_cache", 1)):
            step = DecodeStep(model, compile=True, **({} if buckets is None else {"buckets": buckets}))
            cache = step.new_cache(rows, n_tokens)
            prev = torch.zeros(rows, 1, dtype=torch.long, device=device)
            for where, j in (("early", 8), ("late", n_tokens - 1)):
                ends = length_buckets(n_tokens, step.buckets)
                out[f"{label}_{where}_slots"] = bucket_length(j, ends)
                out[f"{label}_{where}_ms"] = 1e3 * _timed(
                    lambda j=j, step=step, prev=prev, cache=cache: step(prev, j, cache), device, iters
                )
    return out


def _draw_batch(
    model: torch.nn.Module, classes: list[int], window: int | None, stats: SJDStats | None, kw: dict
) -> torch.Tensor:
    """One batch with the standard sampler (``window`` None) or SJD (``stats`` keeps the last call's
    figures; every call draws the same tokens)."""
    gens = sample_generators(0, classes, list(range(len(classes))))
    labels = torch.tensor(classes)
    if window is None:
        return generate(model, labels, Drawer("per-sample", generators=gens), **kw)
    assert stats is not None
    stats.__init__()
    return generate_sjd(model, labels, gens, window=window, stats=stats, **kw)


def compare_samplers(
    model: torch.nn.Module,
    batches: list[int],
    *,
    device: torch.device,
    cfg: CFGSchedule,
    sampling: SamplingParams,
    n_tokens: int,
    window: int,
    iters: int,
    compile: bool,
) -> list[dict[str, float]]:
    """Standard sampler against SJD at each batch size: forward passes and wall time per image.

    ``passes`` is the number of sequential GPT forward passes a batch takes (what each of its images
    waits for; the standard sampler needs one per token), ``row_passes`` the mean pass after which
    a row was complete (the batch waits for its slowest row), ``acceptance`` the share of verified
    drafts SJD accepted. Wall times: the median of ``iters`` calls after one warm-up call.
    """
    rows = []
    num_classes = model.config.num_classes
    for b in batches:
        classes = [(22 + 366 * i) % num_classes for i in range(b)]
        stats = SJDStats()
        kw = dict(cfg=cfg, sampling=sampling, num_tokens=n_tokens, compile=compile)
        standard = functools.partial(_draw_batch, model, classes, None, None, kw)
        sjd = functools.partial(_draw_batch, model, classes, window, stats, kw)
        t_std, t_sjd = _timed(standard, device, iters), _timed(sjd, device, iters)
        rows.append(
            {
                "batch": b,
                "standard_passes": n_tokens,
                "standard_s_per_image": t_std / b,
                "sjd_passes": stats.passes,
                "sjd_row_passes": stats.mean_row_passes,
                "sjd_acceptance": stats.acceptance,
                "sjd_s_per_image": t_sjd / b,
                "standard_ms_per_pass": 1000 * t_std / n_tokens,
                "sjd_ms_per_pass": 1000 * t_sjd / stats.passes,
                "pass_reduction": n_tokens / stats.passes,
                "speedup": t_std / t_sjd,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpt", default="gpt-b", choices=gpt_names())
    ap.add_argument("--tokenizer", default=None, choices=tokenizer_names(), help="default: the paper pairing")
    ap.add_argument("--images", type=int, default=2, help="images per call (classes 22, 388, ... repeated)")
    ap.add_argument(
        "--tokens", type=int, default=None, help="tokens per image (default: the GPT's block size)"
    )
    ap.add_argument("--cfg-scale", type=float, default=4.0)
    ap.add_argument("--rng", default="per-sample", choices=["per-sample", "official"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument(
        "--compile", action="store_true", help="torch.compile the decode step (compiled in the warm-up)"
    )
    ap.add_argument("--no-tokenizer", action="store_true", help="decode loop only")
    ap.add_argument(
        "--step-profile",
        action="store_true",
        help="also time one compiled step early vs late in the sequence (length buckets vs whole cache)",
    )
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    ap.add_argument(
        "--compare",
        default=None,
        metavar="BATCHES",
        help="comma-separated images per call, e.g. 1,8,64: standard sampler vs --sampler sjd at each "
        "(forward passes and wall time per image; decode loop only)",
    )
    ap.add_argument("--sjd-window", type=int, default=DEFAULT_WINDOW, help="SJD draft tokens per pass")
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument(
        "--gpt-checkpoint", default=None, help="trained weights (file or run folder) instead of random ones"
    )
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    if args.gpt_checkpoint:
        from gigatok_core.ar.load import load_gpt

        model, _ = load_gpt(args.gpt, tokenizer=args.tokenizer, checkpoint=args.gpt_checkpoint)
        gpt_cfg = model.config
    else:
        gpt_cfg = gpt_preset(args.gpt).config
        model = seeded_random_weights(build_gpt(gpt_cfg, device="meta").to_empty(device="cpu"))
    model = model.to(device=device, dtype=dtype).eval()
    n_tokens = args.tokens or gpt_cfg.block_size
    base = [22, 388, 90, 978, 207, 360, 387, 974]
    classes = [base[i % len(base)] for i in range(args.images)]
    labels = torch.tensor(classes)
    cfg, sampling = CFGSchedule(args.cfg_scale), SamplingParams(top_k=args.top_k, top_p=args.top_p)
    if args.compare:
        table = compare_samplers(
            model,
            [int(x) for x in args.compare.split(",")],
            device=device,
            cfg=cfg,
            sampling=sampling,
            n_tokens=n_tokens,
            window=args.sjd_window,
            iters=args.iters,
            compile=args.compile,
        )
        weights = "trained " + args.gpt_checkpoint if args.gpt_checkpoint else "random weights"
        if args.json:
            print(json.dumps(table, indent=2))
        else:
            print(
                f"{args.gpt} ({weights}) on {device} ({args.precision}, {torch.get_num_threads()} threads"
                f"{', compiled' if args.compile else ''}): {n_tokens} tokens, CFG {args.cfg_scale}, "
                f"top-k {args.top_k}, top-p {args.top_p}, SJD window {args.sjd_window}"
            )
            print(
                "  batch | passes std -> sjd (row mean) | reduction | acceptance | ms/pass std -> sjd"
                " | s/image std -> sjd | speed-up"
            )
            for r in table:
                print(
                    f"  {r['batch']:5d} | {r['standard_passes']:4d} -> {r['sjd_passes']:4d} ({r['sjd_row_passes']:6.1f})"
                    f"    | {r['pass_reduction']:8.2f}x | {r['sjd_acceptance']:10.3f} | "
                    f"{r['standard_ms_per_pass']:7.1f} -> {r['sjd_ms_per_pass']:7.1f} | "
                    f"{r['standard_s_per_image']:7.3f} -> {r['sjd_s_per_image']:7.3f} | {r['speedup']:7.2f}x"
                )
        return {"compare": table}  # type: ignore[dict-item]

    def decode_loop() -> torch.Tensor:
        drawer = (
            Drawer("official", seed=0, device=device)
            if args.rng == "official"
            else Drawer("per-sample", generators=sample_generators(0, classes, list(range(len(classes)))))
        )
        return generate(
            model, labels, drawer, cfg=cfg, sampling=sampling, num_tokens=n_tokens, compile=args.compile
        )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_gen = _timed(decode_loop, device, args.iters)
    rows = args.images * (2 if cfg.enabled else 1)
    res = {
        "gpt": args.gpt,
        "device": str(device),
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "images": args.images,
        "rows": rows,
        "tokens": n_tokens,
        "gen_s_per_call": t_gen,
        "gen_ms_per_step": 1000 * t_gen / n_tokens,
        "gen_image_tokens_per_s": args.images * n_tokens / t_gen,
        "gen_row_tokens_per_s": rows * n_tokens / t_gen,
        "gen_images_per_s": args.images / t_gen,
        "gen_s_per_image": t_gen / args.images,
        "gen_peak_mem_mib": _peak_mem_mib(device),
        "read_gb_per_s": read_bandwidth(device) / 1e9,
    }
    weight_bytes, kv_bytes = bytes_per_step(model, rows, n_tokens)
    res["weight_mb_per_step"], res["kv_mb_per_step"] = weight_bytes / 1e6, kv_bytes / 1e6
    res["floor_ms_per_step"] = (weight_bytes + kv_bytes) / 1e6 / res["read_gb_per_s"]
    res["x_floor"] = res["gen_ms_per_step"] / res["floor_ms_per_step"]
    if args.step_profile:
        res |= step_profile(model, rows, n_tokens, device)
    tok_name = args.tokenizer or default_tokenizer_for(args.gpt)
    if not args.no_tokenizer:
        from gigatok_core.tokenizer import build_tokenizer, init_weights

        tok_cfg = tokenizer_preset(tok_name).config
        if n_tokens != tok_cfg.num_latent_tokens or gpt_cfg.vocab_size != tok_cfg.codebook_size:
            sys.exit(
                f"{args.gpt} ({gpt_cfg.vocab_size} ids, {n_tokens} tokens) does not fit tokenizer {tok_name}"
            )
        tok = build_tokenizer(tok_cfg, device="cpu")
        init_weights(tok, generator=torch.Generator().manual_seed(0))
        tok = tok.to(device=device, dtype=dtype).eval()

        def end_to_end() -> object:
            codes = decode_loop()
            with torch.inference_mode():
                return to_uint8(tok.decode_codes(codes).float())

        t_e2e = _timed(end_to_end, device, args.iters)
        res.update(
            {
                "tokenizer": tok_name,
                "e2e_s_per_call": t_e2e,
                "e2e_images_per_s": args.images / t_e2e,
                "e2e_s_per_image": t_e2e / args.images,
                "e2e_peak_mem_mib": _peak_mem_mib(device),
            }
        )

    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"{args.gpt} on {device} ({args.precision}, {res['threads']} threads"
            f"{', compiled' if args.compile else ''}): {args.images} images, "
            f"{rows} rows with CFG, {n_tokens} tokens"
        )
        print(
            f"  decode loop: {t_gen:.2f} s/call, {res['gen_ms_per_step']:.1f} ms/step, "
            f"{res['gen_image_tokens_per_s']:.1f} image tokens/s ({res['gen_row_tokens_per_s']:.1f} rows*tokens/s), "
            f"{res['gen_images_per_s']:.3f} images/s = {res['gen_s_per_image']:.2f} s/image, "
            f"peak {res['gen_peak_mem_mib']:.0f} MiB"
        )
        print(
            f"  memory floor: {res['weight_mb_per_step']:.0f} MB weights + {res['kv_mb_per_step']:.0f} MB KV cache"
            f" per step at {res['read_gb_per_s']:.1f} GB/s (measured streaming read)"
            f" = {res['floor_ms_per_step']:.1f} ms/step; "
            f"decode step = {res['x_floor']:.2f}x the floor"
        )
        if args.step_profile:
            print(
                "  compiled step, early (position 8) vs late (last): "
                f"{res['bucketed_early_ms']:.2f} ms reading {res['bucketed_early_slots']} slots vs "
                f"{res['bucketed_late_ms']:.2f} ms reading {res['bucketed_late_slots']}; "
                f"reading the whole cache: {res['whole_cache_early_ms']:.2f} vs {res['whole_cache_late_ms']:.2f} ms"
            )
        if "e2e_s_per_call" in res:
            print(
                f"  end to end with {tok_name}: {res['e2e_s_per_call']:.2f} s/call, "
                f"{res['e2e_images_per_s']:.3f} images/s = {res['e2e_s_per_image']:.2f} s/image, "
                f"peak {res['e2e_peak_mem_mib']:.0f} MiB"
            )
    return res


if __name__ == "__main__":
    main()
