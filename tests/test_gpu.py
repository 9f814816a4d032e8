"""GPU paths (run with `python -m pytest -m gpu` on a CUDA machine; deselected by default).

They check what only a GPU shows: the half-precision paths and CPU/GPU agreement in fp32; bf16
against fp32 and compiled against eager for the GPT, CUDA graphs that really replay (no skip, no
recompilation), one gpt-xxl-shaped layer, the static KV cache across batch sizes, the tokenizer's
GAN step, and FSDP in one process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from typer.testing import CliRunner

from gigatok_cli.main import app

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _no_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _images(n: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 256, 256, generator=g) * 2 - 1


def test_tokenizer_fp32_cuda_matches_cpu() -> None:
    from gigatok_core.tokenizer import load_tokenizer

    x = _images()
    cpu = load_tokenizer("tiny")
    gpu = load_tokenizer("tiny", device="cuda")
    with torch.inference_mode():
        codes_cpu, codes_gpu = cpu.encode(x), gpu.encode(x.cuda()).cpu()
        assert (codes_cpu == codes_gpu).float().mean() >= 0.99
        recon_cpu = cpu.decode_codes(codes_cpu)
        recon_gpu = gpu.decode_codes(codes_cpu.cuda()).cpu()
    assert torch.allclose(recon_cpu, recon_gpu, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_tokenizer_half_precision_runs_and_agrees(dtype: torch.dtype) -> None:
    from gigatok_core.tokenizer import load_tokenizer

    x = _images().cuda()
    ref = load_tokenizer("tiny", device="cuda")
    half = load_tokenizer("tiny", device="cuda", dtype=dtype)
    with torch.inference_mode():
        codes_ref, codes = ref.encode(x), half.encode(x.to(dtype))
        recon = half.decode_codes(codes_ref).float()
        recon_ref = ref.decode_codes(codes_ref)
    assert codes.dtype == torch.int64 and codes.shape == codes_ref.shape
    assert (codes == codes_ref).float().mean() >= 0.8
    assert torch.isfinite(recon).all() and (recon - recon_ref).abs().mean() < 0.05


def test_gpt_teacher_forced_logits_cuda_match_cpu() -> None:
    from gigatok_core.ar.load import load_gpt

    cpu, _ = load_gpt("gpt-tiny", tokenizer="tiny")
    gpu, _ = load_gpt("gpt-tiny", tokenizer="tiny", device="cuda")
    labels = torch.tensor([22, 388])
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 1024, (2, 32)))
    with torch.inference_mode():
        a = cpu(labels, tokens)
        b = gpu(labels.cuda(), tokens.cuda()).cpu()
    assert torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cli_half_precision_on_cuda(tmp_path: Path, precision: str) -> None:
    from PIL import Image

    img = (np.random.default_rng(0).integers(0, 256, (300, 300, 3))).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "reconstruct",
            str(tmp_path / "a.png"),
            "-t",
            "tiny",
            "-o",
            str(tmp_path / "r"),
            "--device",
            "cuda",
            "--precision",
            precision,
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "sample",
            "--gpt",
            "gpt-tiny",
            "--tokenizer",
            "tiny",
            "--classes",
            "22,388",
            "-o",
            str(tmp_path / "s"),
            "--device",
            "cuda",
            "--precision",
            precision,
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "s").glob("*.png"))) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_decode_with_cuda_graphs(dtype: torch.dtype) -> None:
    from gigatok_core.ar import CFGSchedule, Drawer, SamplingParams, generate, sample_generators
    from gigatok_core.ar.load import load_gpt

    model, _ = load_gpt("gpt-tiny", tokenizer="tiny", device="cuda", dtype=dtype)
    labels, cfg, sampling = torch.tensor([22, 388]), CFGSchedule(4.0, "constant"), SamplingParams(top_k=50)

    def run(compile: bool) -> torch.Tensor:
        drawer = Drawer("per-sample", generators=sample_generators(3, [22, 388], [0, 0]))
        return generate(model, labels, drawer, cfg=cfg, sampling=sampling, compile=compile)

    first = run(True)
    assert torch.equal(run(True), first)  # the captured graph replays with a fresh (zeroed) cache
    assert first.shape == (2, 256) and int(first.min()) >= 0 and int(first.max()) < 1024
    if dtype == torch.float32:  # half precision may round differently in fused kernels
        assert torch.equal(first, run(False))


def test_sample_pngs_do_not_depend_on_the_batch_size_on_cuda(tmp_path: Path) -> None:
    from gigatok_core.ar import CFGSchedule
    from gigatok_core.tasks.sample import sample_images

    kw = dict(gpt="gpt-tiny", cfg=CFGSchedule(2.0, "step"), device="cuda", num_per_class=5)
    sample_images("22,388", output=tmp_path / "b1", batch_size=1, **kw)
    sample_images("22,388", output=tmp_path / "b7", batch_size=7, **kw)
    for png in sorted((tmp_path / "b1").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "b7" / png.name).read_bytes(), png.name


# ---------------------------------------------------------------------------------------------
# What the review of the GPU suite found missing
# ---------------------------------------------------------------------------------------------
def _random_gpt(cfg, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from gigatok_core.ar import build_gpt
    from gigatok_core.ar.load import seeded_random_weights

    return seeded_random_weights(build_gpt(cfg), seed=1).to("cuda", dtype).eval()


def _gpt_tiny_cfg():
    from gigatok_core.registry import gpt_preset

    return gpt_preset("gpt-tiny").config


def test_gpt_bf16_agrees_with_fp32_on_cuda() -> None:
    cfg = _gpt_tiny_cfg()
    ref, half = _random_gpt(cfg), _random_gpt(cfg, torch.bfloat16)
    labels = torch.tensor([22, 388], device="cuda")
    tokens = torch.randint(
        0, cfg.vocab_size, (2, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(0)
    )
    with torch.inference_mode():
        a, b = ref(labels, tokens), half(labels, tokens)
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.9
    assert (a - b).abs().max() < 0.1 * a.abs().max() + 0.05


def _decode_logits(model, rows: int, n: int, *, compile: bool) -> torch.Tensor:
    """Logits of decode steps 1..n-1 (teacher forced on random tokens) through DecodeStep."""
    from gigatok_core.ar.decode import DecodeStep

    g = torch.Generator("cuda").manual_seed(0)
    labels = torch.randint(0, 1000, (rows,), device="cuda", generator=g)
    tokens = torch.randint(0, model.config.vocab_size, (rows, n), device="cuda", generator=g)
    with torch.inference_mode():
        step = DecodeStep(model, compile=compile)
        cache = step.new_cache(rows, n)
        model(labels, None, cache=cache, start=0)
        return torch.stack([step(tokens[:, j - 1 : j], j, cache) for j in range(1, n)])


def test_bf16_compiled_decode_agrees_with_eager_and_records_no_graph_skip_or_recompile() -> None:
    from torch._dynamo.utils import counters

    from gigatok_core.ar.decode import length_buckets, release_static_cache

    model = _random_gpt(_gpt_tiny_cfg(), torch.bfloat16)
    torch._dynamo.reset()
    counters.clear()
    eager = _decode_logits(model, 4, 256, compile=False)
    compiled = _decode_logits(model, 4, 256, compile=True)
    assert counters["inductor"]["cudagraph_skips"] == 0  # every step replayed a CUDA graph
    assert counters["stats"]["unique_graphs"] == len(length_buckets(256))
    with torch._dynamo.config.patch(error_on_recompile=True):
        again = _decode_logits(model, 4, 256, compile=True)
    torch.testing.assert_close(again, compiled, atol=0, rtol=0)
    assert (compiled.argmax(-1) == eager.argmax(-1)).float().mean() >= 0.95
    assert (compiled - eager).abs().max() < 0.05 * eager.abs().max() + 0.05
    release_static_cache(model)


def test_one_xxl_shaped_layer_compiled_matches_the_sliced_path() -> None:
    """dim 1536, 24 heads, 257 slots (gpt-xxl's attention shape), one layer, bf16."""
    from dataclasses import replace

    from gigatok_core.registry import gpt_preset

    cfg = replace(gpt_preset("gpt-xxl").config, n_layer=1, vocab_size=1024)
    assert (cfg.dim, cfg.n_head, cfg.block_size + 1) == (1536, 24, 257)
    model = _random_gpt(cfg, torch.bfloat16)
    eager = _decode_logits(model, 16, 257, compile=False)
    compiled = _decode_logits(model, 16, 257, compile=True)
    assert torch.isfinite(compiled).all()
    assert (compiled.argmax(-1) == eager.argmax(-1)).float().mean() >= 0.95


def test_static_cache_is_reused_per_batch_size_and_rebuilt_for_another() -> None:
    from gigatok_core.ar import Drawer, SamplingParams, generate, sample_generators
    from gigatok_core.ar.decode import _STATIC_CACHES

    model = _random_gpt(_gpt_tiny_cfg())

    def run(classes: list[int], compile: bool) -> torch.Tensor:
        drawer = Drawer("per-sample", generators=sample_generators(0, classes, list(range(len(classes)))))
        return generate(
            model, torch.tensor(classes), drawer, sampling=SamplingParams(top_k=1), compile=compile
        )

    two, three = [1, 2], [1, 2, 3]
    a = run(two, True)
    ptr = _STATIC_CACHES[model].k[0].data_ptr()
    assert torch.equal(run(two, True), a) and _STATIC_CACHES[model].k[0].data_ptr() == ptr  # reused
    b = run(three, True)  # another batch size: a new cache (and graphs)
    assert _STATIC_CACHES[model].k[0].shape[0] == 6  # cond + uncond rows (CFG on by default)
    c = run(two, True)
    assert torch.equal(a, c) and torch.equal(b[:2], a)  # per-sample: batch mates change nothing
    assert torch.equal(a, run(two, False))
    assert _STATIC_CACHES[model].k[0].shape[0] == 4


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tokenizer_gan_step_on_cuda(precision: str) -> None:
    """The whole tokenizer recipe step (generator + discriminator, LPIPS, teacher) on CUDA."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_train_tokenizer", REPO / "bench" / "train_tokenizer.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(
        preset="tiny",
        batch_size=2,
        device="cuda",
        precision=precision,
        steps=2,
        smoke=True,
        channels_last=True,
    )
    r = bench.bench_one(args)
    assert r["images_per_s"] > 0 and r["peak_mem_gib"] > 0
    assert all(v >= 0 for v in r["split"].values())


def test_fsdp_wrap_on_a_one_rank_group_trains_like_the_plain_model() -> None:
    """FSDP2 as the trainer applies it (``train/parallel.py``: each block a unit, bf16 mixed
    precision) on a one-rank NCCL group, the FSDP path one GPU allows: same loss and gradients
    as the unsharded model under bf16 autocast; compile with FSDP is refused before anything runs."""
    import copy
    from types import SimpleNamespace

    import torch.distributed as tdist

    from gigatok_core.errors import GigatokError
    from gigatok_core.train.parallel import check_strategy, wrap

    settings = SimpleNamespace(
        strategy="fsdp", compile=False, activation_checkpointing=False, precision="bf16"
    )
    ctx, device = SimpleNamespace(distributed=True), torch.device("cuda")
    with pytest.raises(GigatokError, match="--compile is not supported with --strategy fsdp"):
        check_strategy(SimpleNamespace(**{**vars(settings), "compile": True}), ctx, device)
    store = tdist.HashStore()
    tdist.init_process_group("nccl", store=store, rank=0, world_size=1, device_id=device)
    try:
        plain = _random_gpt(_gpt_tiny_cfg())  # eval mode: no dropout, no class dropout; same numbers
        g = torch.Generator("cuda").manual_seed(0)
        labels = torch.randint(0, 1000, (4,), device="cuda", generator=g)
        tokens = torch.randint(0, 1024, (4, 32), device="cuda", generator=g)

        def loss(model: torch.nn.Module) -> torch.Tensor:
            logits = model(labels, tokens[:, :-1])  # (B, 32, V): row j predicts token j
            return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())

        ref = loss(plain)
        ref.backward()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ref_bf16 = loss(plain).item()
        for dtype in (torch.float32, torch.bfloat16):
            sharded = copy.deepcopy(plain)
            sharded.zero_grad(set_to_none=True)
            wrapped = wrap(sharded, settings, ctx, device, dtype, units=sharded.layers)
            assert type(next(sharded.parameters())).__name__ == "DTensor"
            got = loss(wrapped)
            got.backward()
            grad = sharded.layers[0].attention.wqkv.weight.grad.full_tensor().float()
            assert torch.isfinite(grad).all()
            if dtype == torch.float32:  # one rank: the same numbers as the plain model
                assert got.item() == pytest.approx(ref.item(), rel=1e-5)
                torch.testing.assert_close(
                    grad, plain.layers[0].attention.wqkv.weight.grad, rtol=1e-4, atol=1e-6
                )
            else:  # bf16 parameters and reductions (MixedPrecisionPolicy)
                assert got.item() == pytest.approx(ref_bf16, rel=2e-2)
    finally:
        tdist.destroy_process_group()
