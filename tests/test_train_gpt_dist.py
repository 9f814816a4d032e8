"""`gigatok train gpt` under torchrun (2 processes, gloo): DDP, and resume on another world size."""

from __future__ import annotations

import pytest
from conftest import run_torchrun
from test_train_gpt import make_codes, runner

from gigatok_cli.main import app
from gigatok_core.checkpoint import load_checkpoint
from gigatok_core.train.run_dir import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
NO_DROPOUT = [
    "model.class_dropout_prob=0.0",
    "model.token_dropout_p=0.0",
    "model.resid_dropout_p=0.0",
    "model.ffn_dropout_p=0.0",
]


def _args(codes, out, steps):
    return [
        "train", "gpt", "--preset", "gpt-tiny", "--codes", str(codes), "--output", str(out),
        "--batch-size", "8", "--max-steps", str(steps), "--save-every", "4", "--log-every", "1",
        "--device", "cpu", "--lr", "1e-3", *NO_DROPOUT,
    ]  # fmt: skip


def test_ddp_resumed_on_another_world_size_follows_the_single_process_run(tmp_path):
    """Steps 1-4 in one process, 5-8 under DDP with two: the losses are the single run's."""
    codes = make_codes(tmp_path / "codes", n=40)
    single = runner.invoke(app, _args(codes, tmp_path / "single", 8))
    assert single.exit_code == 0, single.output

    mixed = runner.invoke(app, _args(codes, tmp_path / "mixed", 4))  # 1 process, then 2
    assert mixed.exit_code == 0, mixed.output
    more = run_torchrun(*_args(codes, tmp_path / "mixed", 8))
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed on 2 processes (was 1)" in more.stderr

    ref = read_metrics(tmp_path / "single")
    rows = read_metrics(tmp_path / "mixed")
    assert [r["step"] for r in rows] == list(range(1, 9))
    for a, b in zip(ref, rows, strict=True):  # same global batches, same schedule
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), a["step"]
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9)
    ckpt = load_checkpoint(tmp_path / "mixed")
    assert ckpt.meta["world_size"] == 2 and len(ckpt.state["rng"]) == 2
    assert ckpt.state["data"] == {"epoch": 1, "position": 24}  # 40 // 8 = 5 steps an epoch
