"""GPT training on a GPU (run with `python -m pytest -m gpu`; deselected by default): the autocast
precisions (GradScaler for fp16), torch.compile agreeing with eager, the benchmark on CUDA."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import REPO
from test_train_gpt import make_codes, runner

from gigatok_cli.main import app
from gigatok_core.checkpoints.training import load_checkpoint
from gigatok_core.train.run_dir import read_metrics

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
NO_DROPOUT = [
    "model.class_dropout_prob=0.0",
    "model.token_dropout_p=0.0",
    "model.resid_dropout_p=0.0",
    "model.ffn_dropout_p=0.0",
]


def _train(codes, out, *extra):
    args = ["train", "gpt", "--preset", "gpt-tiny", "--codes", str(codes), "--output", str(out)]
    args += ["--batch-size", "16", "--log-every", "1", "--device", "cuda", "--lr", "3e-3", "recipe.warmup=0"]
    res = runner.invoke(app, [*args, *extra])
    assert res.exit_code == 0, res.output
    return read_metrics(out)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_training_on_cuda(tmp_path, precision):
    codes = make_codes(tmp_path / "codes")
    rows = _train(codes, tmp_path / "run", "--max-steps", "15", "--precision", precision)
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]
    scaler = load_checkpoint(tmp_path / "run").state["scaler"]
    assert bool(scaler) == (precision == "fp16")  # a GradScaler for fp16 only


def test_compiled_training_follows_eager_on_cuda(tmp_path):
    codes = make_codes(tmp_path / "codes")
    eager = _train(codes, tmp_path / "eager", "--max-steps", "5", "--precision", "fp32", *NO_DROPOUT)
    compiled = _train(
        codes, tmp_path / "compiled", "--max-steps", "5", "--precision", "fp32", "--compile", *NO_DROPOUT
    )
    for a, b in zip(eager, compiled, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)


def test_bench_on_cuda():
    spec = importlib.util.spec_from_file_location("bench_train_gpt", REPO / "bench" / "train_gpt.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--preset", "gpt-tiny", "--device", "cuda", "--steps", "3", "--warmup", "1", "--json"]
    (row,) = bench.main([*args, "--batch-size", "8", "--precision", "bf16", "--peak-tflops", "100"])
    assert row["tokens_per_s"] > 0 and row["peak_mem_gib"] > 0 and 0 < row["mfu"] < 1
