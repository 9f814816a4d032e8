"""GPU paths (run with `python -m pytest -m gpu` on a CUDA machine; deselected by default).

They check what only a GPU shows: the half-precision paths and CPU/GPU agreement in fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
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
    from gigatok_core.sample import sample_images

    kw = dict(gpt="gpt-tiny", cfg=CFGSchedule(2.0, "step"), device="cuda", num_per_class=5)
    sample_images("22,388", output=tmp_path / "b1", batch_size=1, **kw)
    sample_images("22,388", output=tmp_path / "b7", batch_size=7, **kw)
    for png in sorted((tmp_path / "b1").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "b7" / png.name).read_bytes(), png.name
