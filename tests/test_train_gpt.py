"""`gigatok train gpt` / `train export` on a tiny codes folder (gpt-tiny, CPU)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.checkpoints.files import read_weights_meta
from gigatok_core.checkpoints.training import load_checkpoint
from gigatok_core.data.codes_format import CodesTokenizer, write_manifest, write_shard
from gigatok_core.train.gpt import official_lr_lambda, param_groups, wsd_factor
from gigatok_core.train.run_dir import read_metrics

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny steps: one thread avoids OpenMP stalls
CLASSES = ("ant", "bee", "cat", "dog")


def make_codes(
    root: Path, *, n: int = 48, crops: int = 2, vocab: int = 1024, tokens: int = 256, preset="tiny", **tok
):
    """A codes folder in the contracts.md format: skewed ids (so a GPT can learn them), two shards."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % len(CLASSES)
    base = rng.integers(0, 32, size=(len(CLASSES), tokens))  # a per-class pattern ...
    codes = base[labels][:, None, :] + rng.integers(0, 2, size=(n, crops, tokens))  # ... with noise
    root.mkdir(parents=True, exist_ok=True)
    half = n // 2
    shards = [
        write_shard(root, 0, codes[:half], labels[:half], codebook_size=vocab),
        write_shard(root, 1, codes[half:], labels[half:], codebook_size=vocab),
    ]
    record = CodesTokenizer(codebook_size=vocab, num_tokens=tokens, preset=preset, **tok)
    write_manifest(root, tokenizer=record, crops=crops, classes=CLASSES, shards=shards)
    return root


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory) -> Path:
    return make_codes(tmp_path_factory.mktemp("codes") / "codes")


def _train(codes: Path, out: Path, *extra: str):
    args = ["train", "gpt", "--preset", "gpt-tiny", "--codes", str(codes), "--output", str(out)]
    args += ["--batch-size", "8", "--log-every", "1", "--device", "cpu", "--precision", "fp32", *extra]
    return runner.invoke(app, args)


# ---------------------------------------------------------------------------------------------
# The recipe's pieces
# ---------------------------------------------------------------------------------------------
def test_wsd_schedule_at_the_boundary_steps():
    f = lambda s: wsd_factor(s, total=1000, warmup=100, fract_decay=0.2)  # noqa: E731
    assert f(0) == pytest.approx(0.01)  # warmup starts at lr/100
    assert f(50) == pytest.approx(0.5 + 0.5 / 100)
    assert f(100) == 1.0 and f(799) == 1.0  # constant until 80 %
    assert f(800) == 1.0  # the decay starts at progress 0
    assert f(801) == pytest.approx(1 - math.sqrt(1 / 200))
    assert f(900) == pytest.approx(1 - math.sqrt(0.5))
    assert f(999) == pytest.approx(1 - math.sqrt(199 / 200))
    assert f(1000) == 0.0 and f(5000) == 0.0
    # the official loop steps the scheduler after each update with the pre-increment count
    g = official_lr_lambda(total=1000, warmup=100, fract_decay=0.2)
    assert g(0) == 1.0 and g(1) == pytest.approx(0.01) and g(101) == 1.0 and g(1001) == 0.0
    assert wsd_factor(10, total=100, warmup=0, fract_decay=0.0) == 1.0  # no warmup, no decay


def test_weight_decay_groups_are_the_official_split():
    from gigatok_core.ar.load import build_gpt
    from gigatok_core.config import GPTConfig

    model = build_gpt(GPTConfig(dim=32, n_layer=2, n_head=2, vocab_size=64, block_size=16, num_classes=4))
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in no_decay["params"]) == sorted(
        n for n, p in model.named_parameters() if "norm" in n
    )  # the FSDP script's rule ("norm" in the name) gives the same split
    assert "positional_embedding" in decayed and "tok_embeddings.weight" in decayed
    assert "cls_embedding.embedding_table.weight" in decayed and "output.weight" in decayed
    assert len(decayed) + len(no_decay["params"]) == len(list(model.parameters()))


# ---------------------------------------------------------------------------------------------
# Training end to end
# ---------------------------------------------------------------------------------------------
def test_loss_falls_and_the_run_is_complete(codes_dir, tmp_path):
    out = tmp_path / "run"
    res = _train(
        codes_dir,
        out,
        "--max-steps",
        "20",
        "--lr",
        "3e-3",
        "--save-every",
        "10",
        "--val-every",
        "10",
        "--val-codes",
        str(codes_dir),
        "recipe.warmup=0",
        "run.ema=true",
    )
    assert res.exit_code == 0, res.output
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert rows[0]["loss"] == pytest.approx(math.log(1024), rel=1e-3)  # zero-initialised head: uniform
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"]
    assert {"lr", "grad_norm", "tokens_per_s", "samples_per_s"} <= set(rows[-1])
    assert [r["step"] for r in rows if "val_loss" in r] == [10, 20]
    assert rows[-1]["val_loss"] < rows[9]["val_loss"]
    assert (out / "config.yaml").is_file() and list((out / "tb").iterdir())
    ckpt = load_checkpoint(out)
    assert ckpt.meta["step"] == 20 and set(ckpt.weights) == {"model", "ema"}
    assert ckpt.meta["tokenizer"]["preset"] == "tiny" and ckpt.meta["preset"] == "gpt-tiny"
    assert ckpt.meta["config"]["model"]["vocab_size"] == 1024
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "latest",
        "step-00000010",
        "step-00000020",
    ]

    dest = tmp_path / "mine.safetensors"
    res = runner.invoke(app, ["train", "export", str(out), str(dest)])
    assert res.exit_code == 0, res.output
    meta = read_weights_meta(dest)
    assert meta["kind"] == "gpt" and meta["weights"] == "ema" and meta["step"] == 20
    assert meta["config"]["dim"] == 64 and meta["tokenizer"]["preset"] == "tiny"
    res = runner.invoke(app, ["train", "export", str(out), str(dest)])
    assert res.exit_code == 1 and "already exists" in res.output
    res = runner.invoke(app, ["train", "export", str(out), str(dest), "--weights", "model", "--overwrite"])
    assert res.exit_code == 0 and read_weights_meta(dest)["weights"] == "model"


def test_sample_grid_and_sampling_from_the_run_folder(codes_dir, tmp_path):
    out = tmp_path / "run"
    res = _train(
        codes_dir,
        out,
        "--max-steps",
        "2",
        "--sample-every",
        "2",
        "--val-fraction",
        "0.25",
        "--val-every",
        "2",
    )
    assert res.exit_code == 0, res.output
    assert read_metrics(out)[-1]["val_loss"] == pytest.approx(math.log(1024), rel=0.01)  # 12 held out
    assert load_checkpoint(out).meta["config"]["data"]["val_fraction"] == 0.25
    grid = out / "samples" / "step-00000002.png"
    assert grid.is_file() and grid.stat().st_size > 1000
    # `gigatok sample` finds the GPT config and its tokenizer (tiny) in the run: no --tokenizer
    sample = ["sample", "--gpt", "gpt-tiny", "-c", "1", "--gpt-checkpoint"]
    res = runner.invoke(app, [*sample, str(out), "-o", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    settings = json.loads((tmp_path / "s" / "sample.json").read_text())
    assert settings["tokenizer"] == "tiny" and settings["gpt_config"]["dim"] == 64
    assert len(list((tmp_path / "s").glob("*.png"))) == 1
    dest = tmp_path / "gpt.safetensors"
    assert runner.invoke(app, ["train", "export", str(out), str(dest)]).exit_code == 0
    res = runner.invoke(app, [*sample, str(dest), "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    a = (tmp_path / "s").glob("*.png").__next__().read_bytes()
    assert (tmp_path / "e").glob("*.png").__next__().read_bytes() == a  # same weights, same seed


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("other-vocab", [], "codebook 4096"),
        ("no-manifest", [], "no manifest.json"),
        ("missing", [], "does not exist"),
        ("ok", ["--batch-size", "6", "--grad-accum", "4"], "multiple"),
        ("ok", ["run.max_stpes=3"], "max_steps"),
        ("ok", ["model.nope=1"], "nope"),
        ("ok", ["--precision", "fp16"], "fp16"),
        ("ok", ["run.max_steps=abc"], "'run.max_steps=abc', which 'run.max_steps=2' replaces"),  # issue 17
        ("ok", ["model.n_layer=0"], "n_layer must be positive, got 0"),
    ],
)
def test_bad_inputs_are_clear_errors(tmp_path, codes_dir, setup, args, message):
    codes = codes_dir
    if setup == "other-vocab":
        codes = make_codes(tmp_path / "c4096", vocab=4096, n=8)
    elif setup == "no-manifest":
        codes = tmp_path / "half"
        codes.mkdir()
        (tmp_path / "half" / "shard-00000.codes.npy").write_bytes(b"x")
    elif setup == "missing":
        codes = tmp_path / "nothing"
    res = _train(codes, tmp_path / "run", "--max-steps", "2", *args)
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------
# Resume: SIGKILL at an arbitrary moment, then the same command
# ---------------------------------------------------------------------------------------------
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gigatok_cli.main", *args]


@pytest.mark.spawn
def test_sigkill_and_resume_log_the_uninterrupted_losses(codes_dir, tmp_path):
    common = [
        "train",
        "gpt",
        "--preset",
        "gpt-tiny",
        "--codes",
        str(codes_dir),
        "--batch-size",
        "8",
        "--max-steps",
        "14",
        "--save-every",
        "3",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--lr",
        "1e-3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(
        _cli(*common, "--output", str(tmp_path / "full")),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr[-2000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*common, "--output", str(run)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(read_metrics(run) if (run / "metrics.jsonl").exists() else []) < 8:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read_metrics(run)) < 14  # killed mid-run (after step 6's checkpoint at least)
    again = subprocess.run(
        _cli(*common, "--output", str(run)), env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    a, b = read_metrics(tmp_path / "full"), read_metrics(run)
    assert [r["step"] for r in b] == list(range(1, 15))
    for x, y in zip(a, b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-6), x["step"]
        assert y["lr"] == x["lr"]


@pytest.mark.spawn
def test_sigterm_writes_a_checkpoint_and_exits_143(codes_dir, tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "gpt",
        "--preset",
        "gpt-tiny",
        "--codes",
        str(codes_dir),
        "--batch-size",
        "8",
        "--max-steps",
        "100000",
        "--save-every",
        "100000",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--output",
        str(run),
    ]
    proc = subprocess.Popen(
        _cli(*args), env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(read_metrics(run) if (run / "metrics.jsonl").exists() else []) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # `train ... && next` does not go on
    assert "stopped by SIGTERM" in err and "exit code 143" in err
    step = load_checkpoint(run).meta["step"]
    assert step >= 3 and json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == step


def _text(res) -> str:
    return " ".join(res.output.split())


def test_overwrite_alone_starts_over_and_a_finished_run_names_its_checkpoint(codes_dir, tmp_path):
    """--overwrite removes the previous run's files only (issue 17); rerunning a finished run
    trains nothing and names its real checkpoint."""
    out = tmp_path / "run"
    assert _train(codes_dir, out, "--max-steps", "2").exit_code == 0
    again = _train(codes_dir, out, "--max-steps", "2")
    assert again.exit_code == 0, again.output
    assert "nothing to train" in _text(again) and "None" not in _text(again)
    assert f"checkpoint:{out / 'checkpoints' / 'step-00000002'}" in "".join(again.output.split())  # wrapped
    (out / "notes.txt").write_text("mine")
    fresh = _train(codes_dir, out, "--max-steps", "1", "--seed", "3", "--overwrite")
    assert fresh.exit_code == 0, fresh.output
    assert "removed the previous run" in _text(fresh) and "training gpt-tiny" in _text(fresh)
    assert [r["step"] for r in read_metrics(out)] == [1] and load_checkpoint(out).meta["step"] == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-00000001"]
    assert (out / "notes.txt").read_text() == "mine"
    refused = _train(codes_dir, out, "--max-steps", "1", "--resume", "never")
    assert refused.exit_code == 1 and "--overwrite to start over" in _text(refused)


def test_raising_max_steps_never_silently_restarts_the_lr_schedule(codes_dir, tmp_path):
    """A finished WSD run decayed its LR: --max-steps 8 would send it back up, so it is refused
    with both ways out, the run untouched; a run still in the constant phase is extended."""
    decayed = tmp_path / "decayed"
    assert _train(codes_dir, decayed, "--max-steps", "6", "recipe.fract_decay=0.5").exit_code == 0
    assert read_metrics(decayed)[-1]["lr"] < 0.5e-4  # steps 5-6 decayed
    before = [(decayed / f).read_text() for f in ("config.yaml", "metrics.jsonl")]
    res = _train(codes_dir, decayed, "--max-steps", "12", "recipe.fract_decay=0.5")
    text = _text(res)
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "trained 6 steps on a learning-rate schedule for 6 steps" in text
    assert "would send it back up to 0.0001 at step 7" in text
    assert "continue with --max-steps 6" in text and "--overwrite" in text
    assert [(decayed / f).read_text() for f in ("config.yaml", "metrics.jsonl")] == before
    constant = tmp_path / "constant"
    assert _train(codes_dir, constant, "--max-steps", "2", "recipe.fract_decay=0.5").exit_code == 0
    res = _train(codes_dir, constant, "--max-steps", "8", "recipe.fract_decay=0.5")
    assert res.exit_code == 0, res.output
    lrs = [r["lr"] for r in read_metrics(constant)]
    assert len(lrs) == 8 and lrs[:5] == [pytest.approx(1e-4)] * 5 and lrs[-1] < 1e-4


def test_a_full_disk_while_saving_is_one_clear_message(codes_dir, tmp_path, monkeypatch):
    """safetensors reports ENOSPC as a SafetensorError (issue 17): training says which checkpoint,
    how many bytes it needs and that the previous one is intact; `train export` names the folder."""
    import safetensors.torch
    from safetensors import SafetensorError

    real = safetensors.torch.save_file
    full = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'

    def save_file(tensors, filename, metadata=None):
        if "step-00000004" in str(filename) or "full-disk" in str(filename):
            raise SafetensorError(full)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    out = tmp_path / "run"
    res = _train(codes_dir, out, "--max-steps", "4", "--save-every", "2")
    text = _text(res)
    assert res.exit_code == 1 and "Traceback" not in res.output and "SafetensorError" not in res.output
    assert "the disk is full: checkpoint" in text and "needs about" in text and " MB" in text
    assert f"checkpoint{out / 'checkpoints' / 'step-00000004'}needsabout" in "".join(res.output.split())
    assert "the previous checkpoint step-00000002 is intact" in text and "free at least" in text
    assert load_checkpoint(out).meta["step"] == 2  # `latest` stayed on the previous step
    dest = tmp_path / "full-disk" / "gpt.safetensors"
    res = runner.invoke(app, ["train", "export", str(out), str(dest)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "No space left on device" in _text(res)
    assert f"thediskholding{dest.parent}" in "".join(res.output.split())


def test_images_to_codes_to_gpt_to_samples(tmp_path):
    """The whole pipeline through the CLI: extract-codes (tiny), train gpt, sample from the run."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("a_cat", "b_dog")):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(4):
            pixels = (rng.integers(0, 64, (32, 32, 3)) + 128 * c).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / name / f"{i}.png")
    codes = tmp_path / "codes"
    res = runner.invoke(
        app,
        ["train", "extract-codes", "--tokenizer", "tiny", "--workers", "0", "--data", str(tmp_path / "img"),
         "--output", str(codes)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    res = _train(codes, tmp_path / "run", "--max-steps", "6", "--lr", "3e-3", "recipe.warmup=0")
    assert res.exit_code == 0, res.output
    rows = read_metrics(tmp_path / "run")
    assert rows[-1]["loss"] < rows[0]["loss"]
    res = runner.invoke(
        app,
        [
            "sample",
            "--gpt",
            "gpt-tiny",
            "--gpt-checkpoint",
            str(tmp_path / "run"),
            "-c",
            "0",
            "-o",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "s").glob("*.png"))) == 1


def test_a_local_tokenizer_checkpoint_is_found_by_path_and_hash(tmp_path):
    from safetensors.torch import save_file

    from gigatok_core.ar.load import resolve_gpt
    from gigatok_core.ar.trained import paired_tokenizer_checkpoint
    from gigatok_core.errors import GigatokError
    from gigatok_core.tokenizer import load_tokenizer
    from gigatok_core.utils.fileio import sha256_file

    tok_file = tmp_path / "tok.safetensors"
    save_file(load_tokenizer("tiny").state_dict(), str(tok_file))
    codes = make_codes(tmp_path / "codes", n=8, checkpoint=str(tok_file), sha256=sha256_file(tok_file))
    run = tmp_path / "run"
    assert _train(codes, run, "--max-steps", "1").exit_code == 0
    cfg, tok_name, release = resolve_gpt("gpt-tiny", None, run)
    assert (cfg.dim, tok_name, release) == (64, "tiny", None)
    assert paired_tokenizer_checkpoint(run, None) == tok_file
    assert paired_tokenizer_checkpoint(run, "tiny") == tok_file  # its own preset: still the recorded file
    args = ["sample", "--gpt", "gpt-tiny", "--gpt-checkpoint", str(run), "-c", "2"]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["tokenizer_checkpoint"] == str(tok_file)
    tok_file.write_bytes(tok_file.read_bytes()[:-1] + b"x")  # the file changed since extraction
    with pytest.raises(GigatokError, match="changed since"):
        paired_tokenizer_checkpoint(run, None)
    tok_file.unlink()
    with pytest.raises(GigatokError, match="was not found"):
        paired_tokenizer_checkpoint(run, None)


def test_prefetch_checks_the_codes_before_any_worker_starts(tmp_path, codes_dir):
    from gigatok_core.config import GPTTrainConfig
    from gigatok_core.errors import GigatokError
    from gigatok_core.train.gpt import prefetch_gpt_training

    cfg = GPTTrainConfig.from_name("gpt-tiny", overrides=["run.sample_every=10"])
    assert prefetch_gpt_training(cfg, codes_dir) == []  # tiny has random weights: nothing to fetch
    with pytest.raises(GigatokError, match="codebook 4096"):
        prefetch_gpt_training(cfg, make_codes(tmp_path / "other", n=8, vocab=4096))
    with pytest.raises(GigatokError, match="does not exist"):
        prefetch_gpt_training(cfg, codes_dir, val_codes=tmp_path / "missing")
