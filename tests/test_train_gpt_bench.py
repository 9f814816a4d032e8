"""bench/train_gpt.py runs its CPU smoke case and reports the fields it promises."""

from __future__ import annotations

import importlib.util
import math

import pytest
from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_smoke_reports_throughput_and_memory():
    spec = importlib.util.spec_from_file_location("bench_train_gpt", REPO / "bench" / "train_gpt.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (row,) = bench.main(["--smoke", "--json"])
    assert row["preset"] == "gpt-tiny" and row["device"] == "cpu" and row["compile"] is False
    assert row["tokens_per_s"] > 0 and row["peak_mem_gib"] > 0 and math.isfinite(row["loss"])
    assert row["mfu"] is None  # no known peak for a CPU
    (row,) = bench.main(["--smoke", "--json", "--peak-tflops", "1"])
    assert row["mfu"] == pytest.approx(6 * row["params"] * 4 * 256 / row["step_s"] / 1e12)


def test_side_by_side_bench_switches_the_cpu_kernels_off_and_back(monkeypatch):
    """bench/train_gpt_vs_official.py --plain: inside ``plain_levers`` the GPT runs nn.Linear,
    nn.Dropout and the unfused head (no oneDNN or fused autograd nodes), the same loss; after it,
    the kernels are back."""
    import torch

    from gigatok_core.ar import build_gpt
    from gigatok_core.ar.loss import token_loss
    from gigatok_core.config import GPTConfig

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location(
        "bench_vs_official", REPO / "bench" / "train_gpt_vs_official.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = GPTConfig(size="gpt-b", dim=16, n_layer=1, n_head=2, vocab_size=32, block_size=8, num_classes=4)
    model = build_gpt(cfg).train()
    codes, labels = torch.randint(0, 32, (2, 8)), torch.randint(0, 4, (2,))

    def nodes(loss: torch.Tensor) -> set[str]:
        seen, todo = {}, [loss.grad_fn]
        while todo:
            fn = todo.pop()
            if fn is not None and id(fn) not in seen:
                seen[id(fn)] = type(fn).__name__
                todo.extend(f for f, _ in fn.next_functions)
        return set(seen.values())

    fast = nodes(token_loss(model, labels, codes))
    with bench.plain_levers():
        plain = nodes(token_loss(model, labels, codes))
    again = nodes(token_loss(model, labels, codes))
    kernels = (
        "_LinearCrossEntropy",
        "_CPUDropout",
        "_OneDNNLinear",
        "_RMSNorm",
        "_CausalAttention",
        "_SwiGLU",
    )
    assert {f"{k}Backward" for k in kernels} <= fast and fast == again
    assert not any(n.startswith(kernels) for n in plain)
    assert "NllLossBackward0" in plain
