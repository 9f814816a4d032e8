"""The sampling cases of ``bench/gpu_suite.py`` (decode step, peak memory, gFID timing, tokenizer
encode/decode) and the models they share, built once on the device with random weights."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from gpu_kit import GB, CaseTimeout, Row, Suite, bench


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

    sample, model, b = bench("sample"), gpt(s), s.sizes["batch"]
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
    from gigatok_core.tasks.sample import decode_fixed_batches

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
# 5. gFID timing
# ---------------------------------------------------------------------------------------------
def _flops(fn: Any) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def case_gfid(s: Suite) -> None:
    from gigatok_core.data.images import save_png
    from gigatok_core.evaluation.features import extract_features, iter_folder, rebatch
    from gigatok_core.tasks.sample import decode_fixed_batches

    sample = bench("sample")
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
    rate = bench("tokenizer")._matmul_flops_per_s(s.device, s.dtype)
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
