"""The training engine with a toy task: resume, run-folder rules, NaN policy, signals, batch split."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from gigatok_core.checkpoints.training import load_checkpoint
from gigatok_core.errors import GigatokError
from gigatok_core.train.engine import Engine, Task
from gigatok_core.train.run_dir import read_metrics
from gigatok_core.train.state import LoopSettings

pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(Task):
    """A small regression MLP with dropout (so RNG state matters for resume)."""

    kind = "toy"

    def __init__(self, *, poison_step: int | None = None, signal_step: int | None = None) -> None:
        self.poison_step, self.signal_step = poison_step, signal_step

    def setup(self, engine: Engine) -> None:
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.Linear(16, 1)).to(engine.device)
        self.wrapped = engine.wrap(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: 1.0 / (1 + s))

    def train_dataset(self) -> TensorDataset:
        x = torch.randn(44, 4, generator=torch.Generator().manual_seed(1))
        return TensorDataset(x, x.sum(1, keepdim=True))

    def weights(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self):
        return {"opt": (self.opt, self.model)}

    def schedulers(self):
        return {"opt": self.sched}

    def train_step(self, engine: Engine, micro):
        total = torch.zeros(())
        for i, (x, y) in enumerate(micro):
            with engine.accumulating(self.wrapped, i == len(micro) - 1), engine.autocast():
                loss = ((self.wrapped(x) - y) ** 2).mean()
            engine.backward(loss / len(micro))
            total += loss.detach() / len(micro)
        if engine.step + 1 == self.poison_step:
            total = total * float("nan")
        if engine.step + 1 == self.signal_step:
            os.kill(os.getpid(), signal.SIGTERM)
        if not engine.check_finite({"loss": total}):
            self.opt.zero_grad(set_to_none=True)
            return {"loss": total, "skipped": 1}
        norm = engine.optimizer_step(self.opt, self.model.parameters(), 1.0)
        self.sched.step()
        return {"loss": total, "grad_norm": norm, "lr": self.sched.get_last_lr()[0]}


def _fit(run_dir, steps, task=None, **kw):
    settings = {"max_steps": steps, "batch_size": 8, "grad_accum": 2, "save_every": 5, "log_every": 1}
    fit_kw = {k: kw.pop(k) for k in ("resume", "overwrite") if k in kw}
    settings.update(kw)
    s = LoopSettings(**settings)
    config = {"model": {"width": 16}, "run": s.to_dict()}
    return Engine(s).fit(task or Toy(), run_dir, config, **fit_kw)


def _losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir)]


def test_resume_continues_exactly_mid_epoch(tmp_path):
    full = _fit(tmp_path / "full", 17)
    assert full.step == 17 and full.checkpoint.name == "step-00000017"
    _fit(tmp_path / "split", 7)  # 44 samples / batch 8 = 5 steps an epoch: stops mid-epoch 2
    ckpt = load_checkpoint(tmp_path / "split")
    assert ckpt.state["data"] == {"epoch": 1, "position": 16}
    assert ckpt.meta["step"] == 7 and ckpt.meta["kind"] == "toy" and ckpt.meta["global_batch_size"] == 8
    _fit(tmp_path / "split", 17)  # only max_steps differs: resumed
    assert _losses(tmp_path / "split") == _losses(tmp_path / "full")
    assert len(_losses(tmp_path / "full")) == 17
    a = load_checkpoint(tmp_path / "full").weights["model"]
    b = load_checkpoint(tmp_path / "split").weights["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lr = [r["lr"] for r in read_metrics(tmp_path / "full")]
    assert lr[0] == pytest.approx(1e-2 / 2) and lr[-1] == pytest.approx(1e-2 / 18)


def test_metrics_logged_after_the_checkpoint_are_redone(tmp_path):
    _fit(tmp_path / "full", 9)
    _fit(tmp_path / "run", 5)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:  # a killed run logged steps 6-7 and half of 8
        f.write(json.dumps({"step": 6, "loss": 1.0}) + "\n" + json.dumps({"step": 7, "loss": 1.0}) + '\n{"st')
    _fit(tmp_path / "run", 9)
    assert _losses(tmp_path / "run") == _losses(tmp_path / "full")


def test_run_folder_rules(tmp_path):
    _fit(tmp_path, 2)
    with pytest.raises(GigatokError, match="another config") as info:
        _fit(tmp_path, 2, seed=5)
    assert "seed" in str(info.value)
    with pytest.raises(GigatokError, match="already holds a training run"):
        _fit(tmp_path, 2, resume="never")
    again = _fit(tmp_path, 3, seed=5, resume="never", overwrite=True)
    assert again.step == 3 and [s for s, _ in _losses(tmp_path)] == [1, 2, 3]
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(GigatokError, match=r"no config\.yaml"):
        _fit(tmp_path, 3, seed=5)
    with pytest.raises(GigatokError, match="--resume must be"):
        _fit(tmp_path / "x", 3, resume="sometimes")


def test_batch_must_divide_and_data_must_fill_a_batch(tmp_path):
    with pytest.raises(GigatokError, match="does not divide") as info:
        _fit(tmp_path / "a", 2, batch_size=6, grad_accum=4)
    assert "multiple of 4" in info.value.hint
    with pytest.raises(GigatokError, match="fewer than one global batch"):
        _fit(tmp_path / "b", 2, batch_size=48, grad_accum=1)


def test_nan_stops_naming_step_and_term_or_is_skipped(tmp_path):
    with pytest.raises(GigatokError, match=r"step 3: the loss term 'loss' is nan"):
        _fit(tmp_path / "stop", 6, Toy(poison_step=3))
    skipped = _fit(tmp_path / "skip", 6, Toy(poison_step=3), on_nan="skip")
    assert skipped.step == 6
    rows = read_metrics(tmp_path / "skip")
    assert rows[2]["skipped"] == 1 and rows[2]["loss"] == "nan"
    assert all(isinstance(r["loss"], float) for r in rows[3:])


def test_sigterm_saves_a_checkpoint_and_returns(tmp_path):
    result = _fit(tmp_path, 50, Toy(signal_step=4))
    assert result.stopped == "SIGTERM" and result.step == 4 and result.exit_code == 143
    assert load_checkpoint(tmp_path).meta["step"] == 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert _fit(tmp_path, 6).step == 6


def test_micro_batch_splits_the_global_batch_over_processes_and_accumulation():
    s = LoopSettings(max_steps=1, batch_size=24, grad_accum=2)
    assert [s.micro_batch(w) for w in (1, 2, 3, 4)] == [12, 6, 4, 3]
    with pytest.raises(GigatokError, match=r"does not divide over 5 process\(es\) x 2") as info:
        s.micro_batch(5)
    assert "multiple of 10" in info.value.hint


def test_strategy_combinations_that_cannot_run_are_refused(tmp_path):
    with pytest.raises(GigatokError, match="--compile is not supported with --strategy fsdp"):
        _fit(tmp_path, 2, strategy="fsdp", compile=True)
    with pytest.raises(GigatokError, match="strategy must be ddp or fsdp"):
        _fit(tmp_path, 2, strategy="zero3")
    with pytest.raises(GigatokError, match="fp16"):
        _fit(tmp_path, 2, precision="fp16")  # fp16 needs CUDA
    assert not (tmp_path / "checkpoints").exists()
