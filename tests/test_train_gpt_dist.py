"""`gigatok train gpt` on 2 processes (gloo): a run started in one process continues under DDP (through
the CLI's launcher, --nproc-per-node) and under FSDP2 (torchrun), and logs the losses of the
uninterrupted single-process run; a worker's error reaches the parent once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import run_torchrun
from test_train_gpt import make_codes, runner

from gigatok_cli.main import app
from gigatok_core.checkpoints.training import load_checkpoint
from gigatok_core.train.run_dir import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
NO_DROPOUT = [
    "model.class_dropout_prob=0.0",
    "model.token_dropout_p=0.0",
    "model.resid_dropout_p=0.0",
    "model.ffn_dropout_p=0.0",
]


def _args(codes, out, steps, *extra):
    return [
        "train", "gpt", "--preset", "gpt-tiny", "--codes", str(codes), "--output", str(out),
        "--batch-size", "8", "--max-steps", str(steps), "--save-every", "4", "--log-every", "1",
        "--device", "cpu", "--lr", "1e-3", *NO_DROPOUT, *extra,
    ]  # fmt: skip


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "gigatok_cli.main", *args, "--nproc-per-node", "2"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.spawn
def test_resume_on_two_processes_under_ddp_and_fsdp(tmp_path):
    codes = make_codes(tmp_path / "codes", n=40)
    single = runner.invoke(app, _args(codes, tmp_path / "single", 8))
    assert single.exit_code == 0, single.output
    first = runner.invoke(app, _args(codes, tmp_path / "first", 4))  # steps 1-4 in one process
    assert first.exit_code == 0, first.output
    ref = read_metrics(tmp_path / "single")

    for strategy in ("ddp", "fsdp"):
        run = tmp_path / strategy
        shutil.copytree(tmp_path / "first", run)
        if strategy == "ddp":  # through the launcher
            more = _launch(*_args(codes, run, 8, "--strategy", strategy))
        else:  # under an outside torchrun
            more = run_torchrun(*_args(codes, run, 8, "--strategy", strategy))  # steps 5-8 on two
        assert more.returncode == 0, more.stderr[-8000:]
        assert "resumed on 2 processes (was 1)" in more.stderr
        rows = read_metrics(run)
        assert [r["step"] for r in rows] == list(range(1, 9))
        for a, b in zip(ref, rows, strict=True):  # same global batches, same schedule
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), (strategy, a["step"])
            assert b["lr"] == pytest.approx(a["lr"], rel=1e-9)
        ckpt = load_checkpoint(run)
        assert ckpt.meta["world_size"] == 2 and ckpt.meta["strategy"] == strategy
        assert len(ckpt.state["rng"]) == 2
        assert ckpt.state["data"] == {"epoch": 1, "position": 24}  # 40 // 8 = 5 steps an epoch
        assert set(ckpt.state["optimizers"]["model"]["state"]["state"]) == set(ckpt.weights["model"])


@pytest.mark.spawn
def test_a_batch_that_two_processes_cannot_split_is_one_clear_error(tmp_path):
    codes = make_codes(tmp_path / "codes", n=16)
    res = _launch(*_args(codes, tmp_path / "run", 2), "--batch-size", "9")
    assert res.returncode == 1, res.stderr[-3000:]
    assert res.stderr.count("does not divide over 2 process(es)") == 1 and "Traceback" not in res.stderr


def test_sigterm_under_the_launcher_saves_then_exits_143(tmp_path):
    """SIGTERM to the launcher reaches the workers (torchrun passes it on), they save a checkpoint,
    and the command exits 128 + 15, so `gigatok train ... && next` stops (issue 17)."""
    import signal
    import time

    codes = make_codes(tmp_path / "codes", n=40)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    args = _args(codes, run, 100000, "--save-every", "100000", "--nproc-per-node", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gigatok_cli.main", *args], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(read_metrics(run) if (run / "metrics.jsonl").exists() else []) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    step = load_checkpoint(run).meta["step"]
    assert step >= 2 and read_metrics(run)[-1]["step"] == step
