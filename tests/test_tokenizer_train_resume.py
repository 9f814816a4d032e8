"""`gigatok train tokenizer` in real subprocesses: SIGKILL at any moment then the same command, and a
one-process run continued on two processes (DDP through the CLI's launcher, FSDP2 under torchrun).

The tiny 32x32 setup of test_tokenizer_train (random frozen networks, a generated folder); the
discriminator starts early so its phase is part of what must continue exactly.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_torchrun
from test_tokenizer_train import SMALL, _env
from toktrain_kit import write_frozen, write_images

from gigatok_core.checkpoints.training import load_checkpoint
from gigatok_core.train.run_dir import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
COMPARED = ("loss", "rec", "perceptual", "gen_adv", "d_loss", "grad_norm", "d_grad_norm")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random frozen networks and 8 readable images (2 global batches of 4 an epoch)."""
    root = tmp_path_factory.mktemp("toktrain-resume")
    return {**write_frozen(root / "frozen"), "images": write_images(root / "images", n=8, size=40)}


def _args(
    kit: dict[str, Path],
    run: Path,
    steps: int,
    batch: int,
    *extra: str,
    workers: str | None = "0",
    save: int = 2,
) -> list[str]:
    """``workers=None``: the default DataLoader worker count."""
    return [
        "train", "tokenizer", "--preset", "tiny", "--data", str(kit["images"]), "--output", str(run),
        "--device", "cpu", "--precision", "fp32", *(["--workers", workers] if workers else []), *SMALL,
        "recipe.disc_start=3", "recipe.aux_loss_end=5", "recipe.warmup=20",
        "--batch-size", str(batch), "--max-steps", str(steps), "--log-every", "1", "--save-every", str(save),
        *extra,
    ]  # fmt: skip


def _env_for(kit: dict[str, Path]) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **_env(kit)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gigatok_cli.main", *args]


def _same_losses(ref: list[dict], rows: list[dict], rel: float, what: str) -> None:
    assert [r["step"] for r in rows] == [r["step"] for r in ref], what
    for a, b in zip(ref, rows, strict=True):
        for key in COMPARED:
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=rel), (what, a["step"], key)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9), (what, a["step"])


@pytest.mark.spawn
def test_sigkill_and_resume_log_the_uninterrupted_losses(kit: dict[str, Path], tmp_path: Path) -> None:
    """8 images, batch 4, a checkpoint every 4 steps, the default DataLoader workers: killed after
    the step-4 checkpoint (discriminator already on), the same command logs the losses of an
    uninterrupted run without workers at every later step (rel 1e-6): each sample's crop and flip
    are drawn from (seed, epoch, index), whatever the worker that decodes it (issue 17)."""
    env, steps = _env_for(kit), 8
    full = subprocess.run(
        _cli(*_args(kit, tmp_path / "full", steps, 4, save=4)),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr[-3000:]
    run = tmp_path / "killed"
    args = _args(kit, run, steps, 4, workers=None, save=4)
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "checkpoints" / "step-00000004").is_dir():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(run).meta["step"] == 4  # killed mid-run, after the step-4 checkpoint
    again = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    ref = read_metrics(tmp_path / "full")
    assert all("d_loss" in r for r in ref[2:])  # the discriminator phase is compared too
    _same_losses(ref, read_metrics(run), 1e-6, "sigkill")


@pytest.mark.slow  # ~45 s; the engine's world-size resume is in the default run for the GPT
@pytest.mark.spawn
def test_one_process_run_continues_on_two_under_ddp_and_fsdp(kit: dict[str, Path], tmp_path: Path) -> None:
    """Steps 1-4 in one process, 5-6 on two (same global batch of 4, same data order): DDP through
    the launcher (--nproc-per-node 2), FSDP2 fully_shard under torchrun (gloo on CPU). The
    discriminator stays under DDP with FSDP (docs/recipes.md#fsdp)."""
    env = _env_for(kit)
    first = subprocess.run(
        _cli(*_args(kit, tmp_path / "first", 4, 4)), env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    ref = read_metrics(tmp_path / "first")
    for strategy in ("ddp", "fsdp"):
        run = tmp_path / strategy
        shutil.copytree(tmp_path / "first", run)
        args = _args(kit, run, 6, 4, "--strategy", strategy)
        if strategy == "ddp":
            more = subprocess.run(
                _cli(*args, "--nproc-per-node", "2"), env=env, capture_output=True, text=True, timeout=300
            )
        else:
            more = run_torchrun(*args, env=_env(kit))
        assert more.returncode == 0, (strategy, more.stderr[-3000:])
        assert "resumed on 2 processes (was 1)" in more.stderr
        rows = read_metrics(run)
        _same_losses(ref, rows[:4], 0.0, strategy)  # the one-process part, kept
        # the same global batches and schedule; the augmentation and LPIPS-dropout streams are
        # per rank (reseeded on another world size), so later losses are not bit-identical
        assert [r["step"] for r in rows] == list(range(1, 7))
        # inside the linear warmup (docs/recipes.md#loop-and-data): equal increments
        lrs = [r["lr"] for r in rows[1:]]
        assert all(b - a == pytest.approx(lrs[1] - lrs[0], rel=1e-6) for a, b in itertools.pairwise(lrs))
        for b in rows[4:]:
            assert "d_loss" in b and all(math.isfinite(b[k]) for k in COMPARED), (strategy, b)
        ckpt = load_checkpoint(run)
        assert ckpt.meta["world_size"] == 2 and ckpt.meta["strategy"] == strategy
        assert ckpt.state["data"] == {"epoch": 3, "position": 0}  # 8 images: 2 steps an epoch
        assert set(ckpt.state["optimizers"]["model"]["state"]["state"]) <= set(ckpt.weights["model"])
        assert ckpt.state["optimizers"]["disc"]["state"]["state"]
