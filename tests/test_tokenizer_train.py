"""`gigatok train tokenizer` end to end on CPU: the `tiny` preset at 32x32 on a generated folder.

Frozen networks (DINOv2-format teacher, DINO ViT-S/16-format backbone, VGG16) are small random
weight files given through the options/env, so nothing is downloaded. The run switches every term
on within a few steps (aux window open then closed, discriminator from step 36, entropy loss, EMA).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from toktrain_kit import write_frozen, write_images
from typer.testing import CliRunner

from gigatok_cli.main import app

TERMS = (
    "rec rec_direct perceptual perceptual_direct gen_adv gen_adv_direct vq commit entropy fea_rec proj "
    "d_loss d_adv d_adv_direct"
).split()
SMALL = [  # 32x32 images -> a 2x2 grid of 4 tokens; teacher width 64
    "model.image_size=32",
    "model.num_latent_tokens=4",
    "model.distill_dim=64",
    "model.entropy_loss_ratio=0.005",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny steps: OpenMP stalls on a busy machine


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("toktrain")
    files = write_frozen(root / "frozen")
    images = write_images(root / "images", n=6, size=40)
    (images / "img99_broken.png").write_bytes(b"not a png")  # skipped, never ends a run
    return {**files, "images": images}


def _env(kit: dict[str, Path]) -> dict[str, str]:
    return {
        "GIGATOK_TEACHER_WEIGHTS": str(kit["teacher"]),
        "GIGATOK_DINO_WEIGHTS": str(kit["dino"]),
        "GIGATOK_VGG_WEIGHTS": str(kit["vgg"]),
    }


def _train(kit: dict[str, Path], output: Path, *args: str, workers: str | None = "0") -> object:
    """``workers=None``: the default DataLoader worker count."""
    cmd = [
        "train",
        "tokenizer",
        "--preset",
        "tiny",
        "--data",
        str(kit["images"]),
        "--output",
        str(output),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        *(["--workers", workers] if workers is not None else []),
        *args,
    ]
    return CliRunner().invoke(app, cmd, env=_env(kit))


@pytest.fixture(scope="module")
def trained(kit: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    run = tmp_path_factory.mktemp("run") / "tiny"
    res = _train(
        kit,
        run,
        *SMALL,
        "recipe.disc_start=36",
        "recipe.aux_loss_end=38",
        "recipe.warmup=2",
        "--max-steps",
        "40",
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
        "--log-every",
        "1",
        "--save-every",
        "20",
        "--sample-every",
        "20",
        "--ema",
    )
    assert res.exit_code == 0, res.output
    return run


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_with_every_term(trained: Path) -> None:
    recs = _records(trained)
    assert [r["step"] for r in recs] == list(range(1, 41))
    for term in TERMS:
        assert any(r.get(term, 0.0) != 0.0 for r in recs), f"{term} never exercised"
    assert all(r["rec_direct"] == 0 and r["fea_rec"] == 0 for r in recs if r["step"] >= 38)  # aux closed
    assert all(r.get("d_loss") is None for r in recs if r["step"] < 36)  # D off before disc_start
    for key, factor in (("loss", 0.8), ("rec", 0.9)):  # before the discriminator starts
        first = sum(r[key] for r in recs[:4]) / 4
        later = sum(r[key] for r in recs[29:35]) / 6
        assert later < factor * first, (key, first, later)
    for key in ("lr", "grad_norm", "codebook_usage", "samples_per_s"):
        assert key in recs[-1]


def test_run_folder(trained: Path) -> None:
    ckpt = trained / "checkpoints" / "step-00000040"
    assert {p.name for p in ckpt.glob("*.safetensors")} == {
        "model.safetensors",
        "ema.safetensors",
        "disc.safetensors",
    }
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["kind"] == "tokenizer" and meta["config"]["model"]["image_size"] == 32
    assert sorted(p.name for p in (trained / "samples").glob("*.png")) == [
        "step-00000020.png",
        "step-00000040.png",
    ]
    assert (trained / "config.yaml").is_file()


def test_reconstruct_from_run_dir(trained: Path, kit: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "recon"
    res = CliRunner().invoke(
        app,
        ["reconstruct", str(kit["images"]), "--checkpoint", str(trained), "-t", "tiny", "-o", str(out)],
        env=_env(kit),
    )
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("*.png"))) == 6  # the broken file is reported and skipped


def test_dino_discriminator_and_resume(kit: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """The b-l-dino recipe's discriminator (DiffAug, frozen DINO taps, five heads) on `tiny`, with
    the default DataLoader workers: stopped after step 2 and run again to step 3, it logs the losses
    of the uninterrupted run. Every discriminator call gets its images' keys (the DiffAug and crop
    draws per sample, step and call, issue 17)."""
    from gigatok_core.train.tokenizer.dinodisc import DinoDiscriminator

    calls: list[int | None] = []  # per discriminator call: how many keys it got
    forward = DinoDiscriminator.forward

    def spy(self, x, keys=None):
        calls.append(None if keys is None else len(keys))
        return forward(self, x, keys)

    monkeypatch.setattr(DinoDiscriminator, "forward", spy)
    common = [*SMALL, "recipe.disc_type=dinodisc", "recipe.disc_start=1", "recipe.aux_loss_end=3"]
    common += ["recipe.warmup=10", "--batch-size", "2", "--log-every", "1", "--save-every", "2"]
    res = _train(kit, tmp_path / "full", *common, "--max-steps", "3", workers=None)
    assert res.exit_code == 0, res.output
    # the keys of the step's readable images (the folder's broken file leaves one), every call;
    # steps 1-2 with the aux window open: 5 calls; step 3: 3
    assert len(calls) == 2 * 5 + 3 and None not in calls and set(calls) <= {1, 2}, calls
    run = tmp_path / "dino"
    res = _train(kit, run, *common, "--max-steps", "2", workers=None)
    assert res.exit_code == 0, res.output
    res = _train(kit, run, *common, "--max-steps", "3", workers=None)
    assert res.exit_code == 0, res.output
    full, resumed = _records(tmp_path / "full"), _records(run)
    assert [r["step"] for r in resumed] == [1, 2, 3]
    assert all(r["d_loss"] > 0 for r in resumed)
    for a, b in zip(full, resumed, strict=True):
        for key in ("loss", "gen_adv", "d_loss", "d_adv", "grad_norm", "d_grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-6), (a["step"], key)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.codebok_size=8"], "codebook_size"),
        (["--batch-size", "3", "--grad-accum", "2"], "batch"),
    ],
)
def test_bad_settings(kit: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    res = _train(kit, tmp_path / "bad", *SMALL, "--max-steps", "1", *args)
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output


def test_empty_data_folder(kit: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(
        app,
        [
            "train",
            "tokenizer",
            "-p",
            "tiny",
            "--data",
            str(empty),
            "-o",
            str(tmp_path / "o"),
            "--max-steps",
            "1",
        ],
        env=_env(kit),
    )
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "image" in res.output


def test_a_folder_of_unreadable_images_is_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    """Before any step, download or run folder: the folder, how many files and why (issue 17)."""
    data = tmp_path / "broken"
    data.mkdir()
    for i in range(3):
        (data / f"img{i}.png").write_bytes(b"not a png")
    res = _train(kit, tmp_path / "o", *SMALL, "--max-steps", "2", "--data", str(data))
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert (
        f"--data {data}" in text
        and "none of its 3 image files can be read (3 not an image or corrupt)" in text
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.spawn
def test_ddp_two_processes(kit: dict[str, Path], tmp_path: Path) -> None:
    """2-process DDP with gloo through the CLI's launcher (--nproc-per-node 2): the model under
    DDP, the discriminator under its own DDP, both optimizers stepping; the global batch of 4
    splits into 2 x 2."""
    import os
    import subprocess
    import sys

    run = tmp_path / "ddp"
    args = [
        "train",
        "tokenizer",
        "-p",
        "tiny",
        "--data",
        str(kit["images"]),
        "-o",
        str(run),
        "--device",
        "cpu",
        "--workers",
        "0",
        *SMALL,
        "recipe.disc_start=2",
        "recipe.aux_loss_end=3",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--log-every",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **_env(kit)}
    cmd = [sys.executable, "-m", "gigatok_cli.main", *args, "--nproc-per-node", "2"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    recs = _records(run)
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert all("d_loss" in r for r in recs[1:])
    meta = json.loads((run / "checkpoints" / "step-00000003" / "meta.json").read_text())
    assert meta["world_size"] == 2


def test_resume_continues_exactly(kit: dict[str, Path], tmp_path: Path) -> None:
    """Stopping after step 2 and resuming logs the losses of the uninterrupted run: the data
    order, the augmentation and LPIPS-dropout streams, both optimizers and the discriminator's
    BatchNorm continue (warmup spans the run, so the LR does not depend on --max-steps)."""
    common = [*SMALL, "recipe.disc_start=2", "recipe.aux_loss_end=4", "recipe.warmup=10", "--batch-size", "2"]
    common += ["--log-every", "1", "--save-every", "2"]
    assert _train(kit, tmp_path / "a", *common, "--max-steps", "4").exit_code == 0
    assert _train(kit, tmp_path / "b", *common, "--max-steps", "2").exit_code == 0
    res = _train(kit, tmp_path / "b", *common, "--max-steps", "4")
    assert res.exit_code == 0, res.output
    full, resumed = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(full[2:], resumed[2:], strict=True):
        for key in ("loss", "rec", "perceptual", "d_loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-6), (a["step"], key)


def test_init_from_run_dir(trained: Path, kit: dict[str, Path], tmp_path: Path) -> None:
    """--init RUN_DIR starts from a run's weights (EMA preferred); a wrong --init is a clear error."""
    from gigatok_core.checkpoints.training import load_checkpoint
    from gigatok_core.train.tokenizer.task import read_init_weights

    sd, source = read_init_weights(trained)
    assert source.endswith("ema.safetensors")  # the resolver: the newest checkpoint, EMA preferred
    ema = load_checkpoint(trained).weights["ema"]
    assert all(torch.equal(sd[k], ema[k]) for k in ema)
    res = _train(
        kit, tmp_path / "ft", *SMALL, "--init", str(trained), "--max-steps", "1", "--batch-size", "2"
    )
    assert res.exit_code == 0, res.output
    res = _train(kit, tmp_path / "bad", *SMALL, "--init", str(tmp_path / "missing.pt"), "--max-steps", "1")
    assert res.exit_code != 0 and "missing.pt" in res.output and "Traceback" not in res.output
