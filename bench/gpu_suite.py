"""Every check only a GPU can make, in one command that fits a short GPU rental (random weights).

    bash bench/device_run.sh                     # on the GPU machine (installs the carried wheels)
    python bench/gpu_suite.py --json out.json    # the suite alone, on a CUDA machine
    python bench/gpu_suite.py --smoke            # the same code paths on CPU, tiny presets, seconds

The cases run in order of value, each under its own deadline and all within ``--budget-s``; after
every row the JSON file is rewritten (atomically) and the row is printed, so a kill at any moment
leaves every finished figure on disk. Each measurement inside a case is guarded: a failure (out of
memory, a refused combination) becomes a row and the case goes on. Models are built once, on the
device, and reused; between cases the suite frees static KV caches, compiled graphs and the
allocator's cache, and records each case's peak memory above its own starting point.

1. GPT-XXL decode step at batch 8 with CFG (16 rows), eager and compiled (CUDA graphs), against
   the physical floor (weight bytes / the card's published HBM bandwidth; target <= 2x) and the
   measured floor ((weights + mean KV cache) / measured read bandwidth); checks that no CUDA graph
   was skipped and nothing recompiled in the timed steps; step time early vs late in the sequence.
2. Peak memory of xl-xxl + gpt-xxl sampling at batch 8 (target <= 12 GB).
3. GPT training tokens/s and MFU for gpt-b and gpt-xxl at 32 per GPU, eager and compiled: MFU =
   (6 N + 12 L d T) tokens/s / the card's dense bf16 peak (N: parameters without the embedding
   tables; 12 L d T: the attention products, PaLM's appendix B); target >= 40% for gpt-xxl.
4. Tokenizer training images/s and peak memory (s-s, b-l at their official per-GPU batch; xl-xxl
   at 8: the one-GPU peak, and the per-GPU estimate under 8-way FSDP).
5. gFID timing: compiled sampling, tokenizer decode, PNG writing and reading back (the path of
   ``gigatok eval gfid``), Inception in fp32 without TF32 (the evaluation's precision), extrapolated
   to 50k samples beside the 50k floor on this card (target <= 5 min).
6. Tokenizer encode+decode images/s (s-s, b-l, xl-xxl; eager and compiled) beside the compute floor.
7. Probe epoch over cached features (target: 1.28M features <= 1 min) and 8. the tokenizer data
   loader's images/s. 9. ``pytest -m gpu`` on the GPU test files, last, with a timeout.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from gpu_kit import GB, CaseTimeout, Row, Suite, run_cases  # noqa: E402


def _bench(name: str) -> Any:
    """bench/NAME.py as a module (bench/ is a folder of scripts, not a package)."""
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
# Models, built once on the device with random weights (speed does not depend on the values)
# ---------------------------------------------------------------------------------------------
def gpt_config(s: Suite) -> Any:
    from dataclasses import replace

    from gigatok_core.registry import gpt_preset

    cfg = gpt_preset(s.sizes["gpt"]).config
    return replace(cfg, block_size=s.sizes["tokens"]) if s.smoke else cfg


def tokenizer_config(s: Suite, name: str) -> Any:
    from dataclasses import replace

    from gigatok_core.registry import tokenizer_preset

    cfg = tokenizer_preset(name).config
    return replace(cfg, image_size=64, num_latent_tokens=s.sizes["tokens"]) if s.smoke else cfg


def build_gpt_on_device(s: Suite) -> torch.nn.Module:
    from gigatok_core.ar import build_gpt

    model = build_gpt(gpt_config(s), device="meta").to_empty(device=s.device)
    gen = torch.Generator(device=s.device).manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.normal_(0.0, 0.02, generator=gen)  # a non-zero head: samples vary
            else:
                p.fill_(1.0)
    return model.to(s.dtype).eval()


def build_tokenizer_on_device(s: Suite, name: str) -> torch.nn.Module:
    from gigatok_core.tokenizer import build_tokenizer, init_weights

    model = build_tokenizer(tokenizer_config(s, name), device=s.device)
    init_weights(model)
    model = model.to(s.dtype).eval()
    return model.use_channels_last() if s.cuda else model


def gpt(s: Suite) -> torch.nn.Module:
    return s.model("gpt", lambda: build_gpt_on_device(s))


def tokenizer(s: Suite, name: str | None = None) -> torch.nn.Module:
    name = name or s.sizes["gpt_tokenizer"]
    return s.model(f"tokenizer:{name}", lambda: build_tokenizer_on_device(s, name))


def inception(s: Suite) -> torch.nn.Module:
    from gigatok_core.evaluation import FIDInception

    return s.model("inception", lambda: FIDInception().to(s.device).eval())  # fp32, as the evaluation


def generate(s: Suite, model: torch.nn.Module, n: int, *, compile: bool, start: int = 0) -> torch.Tensor:
    from gigatok_core.ar import CFGSchedule, Drawer, generate, sample_generators

    classes = [(start + i) % model.config.num_classes for i in range(n)]
    drawer = Drawer("per-sample", generators=sample_generators(0, classes, list(range(start, start + n))))
    return generate(model, torch.tensor(classes), drawer, cfg=CFGSchedule(1.75), compile=compile)


def non_embedding_params(model: torch.nn.Module) -> int:
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(
        p.numel() for n, p in model.named_parameters() if id(p) not in tables and "positional" not in n
    )


def _graph_counters() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], counters["inductor"]["cudagraph_skips"]


# ---------------------------------------------------------------------------------------------
# 1. The decode step
# ---------------------------------------------------------------------------------------------
def case_decode(s: Suite) -> None:
    from gigatok_core.ar.decode import DecodeStep, length_buckets

    sample, model, b = _bench("sample"), gpt(s), s.sizes["batch"]
    rows, steps = 2 * b, model.config.block_size  # CFG: cond + uncond rows
    weights, kv = sample.bytes_per_step(model, rows, steps)
    measured_bw = sample.read_bandwidth(s.device)
    published = s.card.hbm_bytes_per_s
    hbm_floor = weights / published * 1e3 if published else None  # ms: the weights read once per step
    measured_floor = (weights + kv) / measured_bw * 1e3
    floor_note = (
        f"measured floor {measured_floor:.3g} ms ({weights / GB:.2f} GB weights + {kv / GB:.3f} GB mean KV"
        f" at {measured_bw / GB:.0f} GB/s read)"
    )
    target = "<= 2x HBM floor" if hbm_floor else "(no published bandwidth)"
    label = f"{s.sizes['gpt']} decode b{b} CFG"

    def row(mode: str, ms: float, note: str, **extra: Any) -> Row:
        ratio = f"{ms / hbm_floor:.2f}x HBM floor ({published / 1e12:.2f} TB/s), " if hbm_floor else ""
        return Row(
            f"{label} {mode}",
            ms,
            "ms/step",
            hbm_floor,
            target,
            ok=(ms <= 2 * hbm_floor) if hbm_floor else None,
            note=f"{ratio}{note}; {floor_note}",
            extra={"measured_floor_ms": measured_floor, "weight_bytes": weights, "kv_bytes": kv, **extra},
        )

    def eager() -> None:
        ms = 1e3 * s.timed(lambda: generate(s, model, b, compile=False), warmup=1) / steps
        s.emit(row("eager", ms, "sliced cache"))

    s.guarded(f"{label} eager", eager)

    def compiled() -> None:
        t0 = time.perf_counter()
        generate(s, model, b, compile=True)  # compiles one graph per cache-length bucket
        s.sync()
        compile_s = time.perf_counter() - t0
        graphs0, _ = _graph_counters()
        recompiled = ""
        try:
            with torch._dynamo.config.patch(error_on_recompile=True):
                ms = 1e3 * s.timed(lambda: generate(s, model, b, compile=True), warmup=0) / steps
                with torch.inference_mode():  # as in generate(): the same guards, no recompile
                    step = DecodeStep(model, compile=True)
                    cache = step.new_cache(rows, steps)
                    prev = torch.zeros(rows, 1, dtype=torch.long, device=s.device)
                    early, late = (
                        1e3 * s.timed(lambda j=j: step(prev, j, cache), iters=5) for j in (1, steps - 1)
                    )
        except CaseTimeout:
            raise
        except Exception as err:  # a recompilation in the timed steps
            recompiled, ms, early, late = str(err).splitlines()[0][:100], float("nan"), 0.0, 0.0
        graphs1, skips1 = _graph_counters()
        buckets = length_buckets(steps)
        s.emit(
            row(
                "compiled",
                ms,
                f"step early {early:.3g} / late {late:.3g} ms, {len(buckets)} length buckets, "
                f"compile {compile_s:.0f} s",
                early_ms=early,
                late_ms=late,
                compile_s=compile_s,
            )
        )
        cudagraphs = s.cuda
        ok = not recompiled and graphs1 == graphs0 and (skips1 == 0 or not cudagraphs)
        s.emit(
            Row(
                "decode CUDA graphs / recompiles",
                ok=ok,
                target="no skip, no recompile",
                note=(
                    f"{graphs1} graphs ({len(buckets)} buckets), {graphs1 - graphs0} new in the timed steps, "
                    f"{skips1} cudagraph skips"
                    + ("" if cudagraphs else " (no CUDA graphs off CUDA)")
                    + (f"; recompiled: {recompiled}" if recompiled else "")
                ),
            )
        )

    s.guarded(f"{label} compiled", compiled)


# ---------------------------------------------------------------------------------------------
# 2. Peak memory of sampling
# ---------------------------------------------------------------------------------------------
def case_peak_memory(s: Suite) -> None:
    from gigatok_core.sample import decode_fixed_batches

    s.keep("gpt", f"tokenizer:{s.sizes['gpt_tokenizer']}")
    model, tok, b = gpt(s), tokenizer(s), s.sizes["batch"]
    label = f"peak {s.sizes['gpt_tokenizer']} + {s.sizes['gpt']} b{b}"
    if s.cuda:
        torch.cuda.reset_peak_memory_stats(s.device)
    resident = s.allocated()
    pixels = decode_fixed_batches(tok, generate(s, model, b, compile=False))
    assert pixels.shape[0] == b
    if not s.cuda:
        s.emit(Row(label, note="CUDA only (no allocator statistics on CPU)"))
        return
    peak = s.peak()
    s.emit(
        Row(
            label,
            peak,
            "GB",
            target="<= 12 GB",
            ok=peak <= 12,
            note=f"weights {resident:.2f} GB resident, {peak - resident:.2f} GB above them",
        )
    )


# ---------------------------------------------------------------------------------------------
# 3. GPT training
# ---------------------------------------------------------------------------------------------
def case_train_gpt(s: Suite) -> None:
    from gigatok_core.ar import build_gpt
    from gigatok_core.registry import gpt_preset

    s.keep()
    bench = _bench("train_gpt")
    peak = s.card.bf16_flops
    for preset, batch in s.sizes["train_gpt"]:
        cfg = gpt_preset(preset).config
        n = non_embedding_params(build_gpt(cfg, device="meta"))
        seq = cfg.block_size + 1  # class token + image tokens
        flops_per_token = 6 * n + 12 * cfg.n_layer * cfg.dim * seq
        for compiled in (False, True):
            label = f"train {preset} b{batch} {'compiled' if compiled else 'eager'}"
            args = argparse.Namespace(
                batch_size=batch,
                device=str(s.device),
                precision="bf16" if s.cuda else "fp32",
                ema=False,
                activation_checkpointing=False,
                steps=s.sizes["train_steps"],
                warmup=s.sizes["train_warmup"],
                peak_tflops=None,
                strategy="ddp",  # one process: the plain model (FSDP over one rank shards nothing)
            )
            if compiled and s.smoke:
                s.emit(Row(label, note="skipped in --smoke (inductor build)"))
                continue

            def run(
                args: argparse.Namespace = args,
                label: str = label,
                preset: str = preset,
                c: bool = compiled,
                flops_per_token: float = flops_per_token,
            ) -> None:
                r = bench.bench_one(preset, args, c)
                mfu = flops_per_token * r["tokens_per_s"] / peak if peak else None
                s.emit(
                    Row(
                        label,
                        r["tokens_per_s"],
                        "tok/s",
                        target=">= 40% MFU" if preset == "gpt-xxl" else "",
                        ok=(mfu >= 0.40) if preset == "gpt-xxl" and mfu is not None else None,
                        note=(
                            f"MFU {mfu:.1%} of {s.card.name} {peak / 1e12:.0f} TFLOP/s bf16, " if mfu else ""
                        )
                        + f"peak {r['peak_mem_gib'] * 2**30 / GB:.1f} GB, strategy ddp (1 process)",
                        extra={"mfu": mfu, "flops_per_token": flops_per_token, "step_s": r["step_s"]},
                    )
                )

            s.guarded(label, run)
            s.free()


# ---------------------------------------------------------------------------------------------
# 4. Tokenizer training
# ---------------------------------------------------------------------------------------------
FSDP_WAYS, XL_LIMIT_GB = 8, 80.0


def case_train_tokenizer(s: Suite) -> None:
    from gigatok_core.tokenizer import build_tokenizer
    from gigatok_core.train.tokenizer import PatchGAN

    s.keep()
    bench = _bench("train_tokenizer")
    for preset, batch in s.sizes["train_tokenizer"]:
        label = f"train tokenizer {preset} b{batch}"
        args = argparse.Namespace(
            preset=preset,
            batch_size=batch,
            device=str(s.device),
            precision="bf16" if s.cuda else "fp32",
            steps=s.sizes["train_steps"],
            smoke=s.smoke,
            channels_last=True,
        )

        def run(args: argparse.Namespace = args, label: str = label, preset: str = preset) -> None:
            r = bench.bench_one(args)
            peak = None if r["peak_mem_gib"] is None else r["peak_mem_gib"] * 2**30 / GB
            split = ", ".join(f"{k} {r['split'][k] * 1e3:.0f}" for k in ("forward", "lpips", "backward"))
            note = (f"one-GPU peak {peak:.1f} GB; " if peak is not None else "") + f"ms: {split}"
            s.emit(Row(label, r["images_per_s"], "img/s", note=note, extra={"peak_gb": peak}))
            if preset == "xl-xxl" or s.smoke:
                # FSDP shards the trained weights, gradients and AdamW states (fp32: 4 + 4 + 8
                # bytes a parameter) over the ranks; activations and the frozen nets stay per GPU.
                trained = build_tokenizer(tokenizer_config(s, preset), with_distill=True, device="meta")
                params = sum(p.numel() for p in trained.parameters()) + sum(
                    p.numel() for p in PatchGAN().parameters()
                )
                states = 16 * params / GB
                est = None if peak is None else peak - states * (1 - 1 / FSDP_WAYS)
                s.emit(
                    Row(
                        f"{label} per GPU, {FSDP_WAYS}-way FSDP (estimate)",
                        est,
                        "GB",
                        target=f"<= {XL_LIMIT_GB:.0f} GB/GPU",
                        ok=None if est is None else est <= XL_LIMIT_GB,
                        note=f"one-GPU peak minus 7/8 of {states:.1f} GB of sharded states",
                    )
                )

        s.guarded(label, run)
        s.free()


# ---------------------------------------------------------------------------------------------
# 5. gFID timing
# ---------------------------------------------------------------------------------------------
def _flops(fn: Any) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def case_gfid(s: Suite) -> None:
    from gigatok_core.evaluation.features import extract_features, iter_folder, rebatch
    from gigatok_core.images import save_png
    from gigatok_core.sample import decode_fixed_batches

    sample = _bench("sample")
    model, tok, net = gpt(s), tokenizer(s), inception(s)
    bsz, total, inc_batch = s.sizes["gfid_batch"], s.sizes["gfid_samples"], s.sizes["inception_batch"]
    t0 = time.perf_counter()
    generate(s, model, bsz, compile=True)  # compiles the decode step at this batch
    s.sync()
    compile_s = time.perf_counter() - t0
    parts = {"sample": 0.0, "decode": 0.0, "png write": 0.0, "png read + inception": 0.0}

    def lap(key: str, t: float) -> float:
        s.sync()
        now = time.perf_counter()
        parts[key] += now - t
        return now

    with tempfile.TemporaryDirectory() as tmp:
        paths: list[Path] = []
        for start in range(0, total, bsz):
            t = time.perf_counter()
            codes = generate(s, model, min(bsz, total - start), compile=True, start=start)
            t = lap("sample", t)
            pixels = decode_fixed_batches(tok, codes)  # (n, H, W, 3) uint8
            t = lap("decode", t)
            for i, px in enumerate(pixels):
                paths.append(Path(tmp) / f"{start + i:06d}.png")
                save_png(paths[-1], px)
            lap("png write", t)
        t = time.perf_counter()
        extract_features(net, rebatch(iter_folder(paths), inc_batch), device=s.device)
        lap("png read + inception", t)
    per_sample = sum(parts.values()) / total
    minutes = per_sample * 50_000 / 60

    # The floor for 50k samples on this card: each decode step reads the weights and the KV cache
    # or does its FLOPs, whichever is longer; plus the tokenizer decode and Inception FLOPs.
    card, steps, rows = s.card, model.config.block_size, 2 * bsz
    weights, kv = sample.bytes_per_step(model, rows, steps)
    step_flops = 2 * non_embedding_params(model) * rows
    x = torch.zeros(1, steps, dtype=torch.long, device=s.device)
    dec_flops = _flops(lambda: tok.decode_codes(x))
    inc_flops = _flops(lambda: net(torch.zeros(1, 3, 256, 256, device=s.device)))
    floor_min = None
    if card.hbm_bytes_per_s and card.bf16_flops and card.fp32_flops:
        step_s = max((weights + kv) / card.hbm_bytes_per_s, step_flops / card.bf16_flops)
        floor_s = (
            50_000 / bsz * steps * step_s
            + 50_000 * dec_flops / card.bf16_flops
            + 50_000 * inc_flops / card.fp32_flops  # Inception in fp32 without TF32
        )
        floor_min = floor_s / 60
    split = ", ".join(f"{k} {v / total * 50_000 / 60:.2f}" for k, v in parts.items())
    s.emit(
        Row(
            "50k gFID wall time",
            minutes,
            "min",
            floor_min,
            "<= 5 min",
            ok=minutes <= 5,
            note=f"from {total} samples, batch {bsz}, compiled decode (compile {compile_s:.0f} s); min: {split}",
            extra={"parts_s_per_sample": {k: v / total for k, v in parts.items()}},
        )
    )


# ---------------------------------------------------------------------------------------------
# 6. Tokenizer encode + decode
# ---------------------------------------------------------------------------------------------
def case_tokenizer_codec(s: Suite) -> None:
    rate = _bench("tokenizer")._matmul_flops_per_s(s.device, s.dtype)
    s.keep(f"tokenizer:{s.sizes['gpt_tokenizer']}")
    batch = s.sizes["tok_batch"]
    for name in s.sizes["tokenizers"]:
        model = tokenizer(s, name)
        size = model.config.image_size
        x = (torch.rand(batch, 3, size, size, device=s.device) * 2 - 1).to(s.dtype)
        floor = batch * rate / _flops(lambda m=model, x=x: m.decode_codes(m.encode(x)))  # img/s
        for compiled in (False, True):
            label = f"{name} enc+dec b{batch} {'compiled' if compiled else 'eager'}"

            def run(
                m: torch.nn.Module = model,
                x: torch.Tensor = x,
                c: bool = compiled,
                label: str = label,
                floor: float = floor,
            ) -> None:
                enc, dec = (s.compile(m.encoder), s.compile(m.decoder)) if c else (m.encoder, m.decoder)
                saved = m.encoder, m.decoder
                m.encoder, m.decoder = enc, dec
                try:

                    def once() -> object:
                        with torch.inference_mode():
                            return m.decode_codes(m.encode(x))

                    ips = batch / s.timed(once, iters=s.sizes["iters"])
                finally:
                    m.encoder, m.decoder = saved
                s.emit(
                    Row(label, ips, "img/s", floor, "<= floor", note=f"{ips / floor:.0%} of the matmul floor")
                )

            s.guarded(label, run)
        if name != s.sizes["gpt_tokenizer"]:
            s.keep(f"tokenizer:{s.sizes['gpt_tokenizer']}")


# ---------------------------------------------------------------------------------------------
# 7. Probe epoch, 8. data loader
# ---------------------------------------------------------------------------------------------
IMAGENET_TRAIN = 1_281_167


def case_probe(s: Suite) -> None:
    s.keep()
    n, dim, batch = s.sizes["probe"]
    amp = torch.bfloat16 if s.cuda else torch.float32
    sec = _bench("probe").epoch_seconds(n, dim, 1000, batch, s.device, amp, 1)
    full = sec * IMAGENET_TRAIN / n
    s.emit(
        Row(
            f"probe epoch, 1.28M cached features (dim {dim})",
            full,
            "s",
            target="<= 60 s",
            ok=full <= 60,
            note=f"measured over {n} features, batch {batch}, extrapolated",
        )
    )


def case_loader(s: Suite) -> None:
    import numpy as np
    from PIL import Image

    images, batch, workers, batches = s.sizes["loader"]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(images):
            folder = Path(tmp) / f"n{i % 2:08d}"
            folder.mkdir(exist_ok=True)
            px = rng.integers(0, 256, (320, 400, 3), dtype=np.uint8)
            Image.fromarray(px).save(folder / f"{i:05d}.JPEG", quality=90)
        args = argparse.Namespace(data=Path(tmp), batch_size=batch, workers=workers, loader_batches=batches)
        ips = _bench("train_tokenizer").loader_speed(args)
    s.emit(
        Row(
            f"tokenizer data loader, {workers} workers",
            ips,
            "img/s",
            note=f"JPEG 400x320 -> train augment 256, batch {batch}",
        )
    )


# ---------------------------------------------------------------------------------------------
# 9. The GPU tests, last
# ---------------------------------------------------------------------------------------------
GPU_TEST_FILES = ("tests/test_gpu.py", "tests/test_train_gpt_gpu.py")


def case_pytest(s: Suite) -> None:
    timeout = s.sizes["pytest_timeout"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *GPU_TEST_FILES]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        s.emit(Row("pytest -m gpu", ok=False, note=f"killed after {timeout} s; {out.strip()[-150:]}"))
        return
    lines = proc.stdout.strip().splitlines() or ["(no output)"]
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    ok = proc.returncode == 0
    s.emit(
        Row("pytest -m gpu", ok=ok, note=lines[-1][:150], extra={"failed": failed[:20], "tail": lines[-40:]})
    )


CASES = [  # (name, deadline in seconds, function), in order of value
    ("GPT decode step", 150, case_decode),
    ("peak memory, sampling", 40, case_peak_memory),
    ("GPT training", 120, case_train_gpt),
    ("tokenizer training", 80, case_train_tokenizer),
    ("gFID timing", 90, case_gfid),
    ("tokenizer encode/decode", 70, case_tokenizer_codec),
    ("probe epoch", 30, case_probe),
    ("data loader", 30, case_loader),
    ("pytest -m gpu", 120, case_pytest),
]


# ---------------------------------------------------------------------------------------------
# Sizes and the command line
# ---------------------------------------------------------------------------------------------
REAL = {
    "gpt": "gpt-xxl",
    "gpt_tokenizer": "xl-xxl",
    "batch": 8,
    "gfid_batch": 128,
    "gfid_samples": 256,
    "inception_batch": 64,  # eval gfid's --batch-size
    "tokenizers": ("s-s", "b-l", "xl-xxl"),
    "tok_batch": 16,
    "iters": 3,
    # The official per-GPU batches: the preset's global batch over the 8 GPUs of the official scripts.
    "train_gpt": (("gpt-xxl", 32), ("gpt-b", 32)),  # the target (gpt-xxl) first
    "train_tokenizer": (("s-s", 16), ("b-l", 32), ("xl-xxl", 8)),
    "train_steps": 5,
    "train_warmup": 2,
    "probe": (262_144, 1536, 128),  # features, width (gpt-xxl), batch
    "loader": (224, 32, 8, 6),  # images, batch, workers, timed batches
    "pytest_timeout": 110,
}
SMOKE = {
    **REAL,
    "gpt": "gpt-tiny",
    "gpt_tokenizer": "tiny",
    "tokens": 16,
    "batch": 2,
    "gfid_batch": 2,
    "gfid_samples": 2,
    "inception_batch": 2,
    "tokenizers": ("tiny",),
    "tok_batch": 1,
    "iters": 1,
    "train_gpt": (("gpt-tiny", 2),),
    "train_tokenizer": (("tiny", 1),),
    "train_steps": 1,
    "train_warmup": 1,
    "probe": (512, 32, 64),
    "loader": (6, 2, 0, 2),
    "pytest_timeout": 60,
}


SMOKE_DEADLINE_FACTOR = 4


def make_suite(smoke: bool, device: str | None, json_path: Path | None) -> Suite:
    if not smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke on CPU")
    dev = torch.device(device or ("cpu" if smoke else "cuda"))
    s = Suite(
        smoke=smoke,
        device=dev,
        dtype=torch.float32 if smoke else torch.bfloat16,
        json_path=json_path,
        sizes=dict(SMOKE if smoke else REAL),
    )
    if smoke:  # dynamo traces as on the GPU, without an inductor (C++) build: seconds, not minutes
        from gigatok_core.ar import decode
        from gigatok_core.ar.gpt import GPT

        decode._COMPILED["default"] = torch.compile(
            GPT.decode_step, backend="eager", fullgraph=True, dynamic=False
        )
    card = s.card
    s.meta = {
        "device": torch.cuda.get_device_name(dev) if s.cuda else "CPU",
        "card": card.name,
        "published_hbm_tb_s": None if card.hbm_bytes_per_s is None else card.hbm_bytes_per_s / 1e12,
        "published_bf16_tflops": None if card.bf16_flops is None else card.bf16_flops / 1e12,
        "smoke": smoke,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return s


def render(s: Suite) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gigatok GPU suite on {s.meta['device']}{' (--smoke)' if s.smoke else ''}")
    for col in ("case", "value", "floor", "target", "ok", "note"):
        table.add_column(col, justify="right" if col in ("value", "floor") else "left")

    def num(v: float | None, unit: str) -> str:
        return "" if v is None else f"{v:,.3g} {unit}"

    for r in s.rows:
        ok = "" if r.ok is None else "[green]yes[/]" if r.ok else "[red]NO[/]"
        table.add_row(r.case, num(r.value, r.unit), num(r.floor, r.unit), r.target, ok, r.note)
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> Suite:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny presets, fp32: the code paths in seconds")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here after every row")
    ap.add_argument("--budget-s", type=float, default=360.0, help="all cases end within this (seconds)")
    ap.add_argument("--only", action="append", help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--skip", action="append", default=[], help="skip cases whose name contains this")
    ap.add_argument("--list", action="store_true", help="print the cases and their deadlines, then exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, limit, _ in CASES:
            print(f"{limit:.0f} s\t{name}")
        sys.exit(0)

    torch.backends.cuda.matmul.allow_tf32 = True  # bf16 cases; fp32 matmuls as a GPU user runs them
    s = make_suite(args.smoke, args.device, args.json)
    s.meta["budget_s"] = args.budget_s
    print(
        f"gigatok GPU suite on {s.meta['device']} ({s.card.name}), budget {args.budget_s:.0f} s", flush=True
    )
    # --smoke runs on a CPU that may be small and shared: the deadlines are those of the GPU x4
    cases = [(name, limit * (SMOKE_DEADLINE_FACTOR if s.smoke else 1), fn) for name, limit, fn in CASES]
    run_cases(s, cases, budget_s=args.budget_s, only=args.only, skip=args.skip)
    s.write(finished=True)
    render(s)
    return s


if __name__ == "__main__":
    main()
