"""The training and data cases of ``bench/gpu_suite.py`` (GPT and tokenizer training, probe epoch,
data loader) and the GPU tests, run last."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from gpu_kit import GB, ROOT, Row, Suite, bench
from gpu_sampling import non_embedding_params, tokenizer_config


# ---------------------------------------------------------------------------------------------
# 3. GPT training
# ---------------------------------------------------------------------------------------------
def case_train_gpt(s: Suite) -> None:
    from gigatok_core.ar import build_gpt
    from gigatok_core.registry import gpt_preset

    s.keep()
    module = bench("train_gpt")
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
                r = module.bench_one(preset, args, c)
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
    module = bench("train_tokenizer")
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
            r = module.bench_one(args)
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
# 7. Probe epoch, 8. data loader
# ---------------------------------------------------------------------------------------------
IMAGENET_TRAIN = 1_281_167


def case_probe(s: Suite) -> None:
    s.keep()
    n, dim, batch = s.sizes["probe"]
    amp = torch.bfloat16 if s.cuda else torch.float32
    sec = bench("probe").epoch_seconds(n, dim, 1000, batch, s.device, amp, 1)
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
        ips = bench("train_tokenizer").loader_speed(args)
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
