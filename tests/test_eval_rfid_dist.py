"""`gigatok eval rfid` sharded over ranks: the numbers do not depend on the world size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_torchrun
from evalkit import random_inception, tiny_evaluator, write_images

from gigatok_core.dist import HandSplit
from gigatok_core.evaluation import Evaluator, load_statistics
from gigatok_core.evaluation.reconstruction import ShardResult, evaluate_reconstruction

NUMBERS = ("fid", "sfid", "is", "psnr", "ssim", "codebook_usage")


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    return random_inception(tmp_path_factory.mktemp("inception") / "pt_inception-random.pth")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    write_images(tmp_path / "val" / "n0", 3, seed=5)
    return tmp_path / "val"


def _run(data: Path, **kw):
    ev = tiny_evaluator(batch_size=4)
    return evaluate_reconstruction(
        "tiny", data, evaluator=ev, lpips=False, with_precision_recall=False, batch_size=2, **kw
    )


def test_two_simulated_ranks_equal_one_process(data: Path, tmp_path: Path) -> None:
    # rank 1 runs first and hands its shard over; rank 0 merges, builds the reference and scores
    stash: list[ShardResult] = []
    assert (
        _run(
            data,
            ctx=HandSplit(1, 2, gather=lambda p: stash.append(p) or [p]),
            save_samples=tmp_path / "multi",
        )
        is None
    )
    assert list(stash[0].indices) == [1]  # strided shard: rank 1 of 2 takes image 1 of 0..2
    multi = _run(data, ctx=HandSplit(0, 2, gather=lambda p: [p, stash[0]]), save_samples=tmp_path / "multi")
    assert multi is not None and multi.reference_built and multi.metrics["num_images"] == 3
    built = load_statistics(multi.reference)
    Path(multi.reference).unlink()
    single = _run(data, save_samples=tmp_path / "single")
    assert single is not None and single.reference_built and single.reference == multi.reference
    for key in NUMBERS:
        assert multi.metrics[key] == pytest.approx(single.metrics[key], rel=1e-4, abs=1e-6), key
    assert single.metrics["fid"] > 0
    # the reference built from the merged shards is the single-process one, rows in image order
    np.testing.assert_allclose(built.pool, load_statistics(single.reference).pool, rtol=1e-4, atol=1e-5)
    # every rank wrote its own reconstructions under the global image index
    names = sorted(p.name for p in (tmp_path / "multi").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "single").iterdir())
    assert names == [*(f"{i:06d}.png" for i in range(3)), "samples.json"]


def test_missing_shard_is_an_error(data: Path) -> None:
    from gigatok_core.errors import GigatokError

    with pytest.raises(GigatokError, match="2 of 3 images"):  # rank 1's shard never arrives
        _run(data, ctx=HandSplit(0, 2))


@pytest.mark.spawn
@pytest.mark.slow  # the real (random-weights) Inception on CPU: minutes on a shared machine
def test_torchrun_two_ranks_cli_matches_single_process(
    data: Path, inception_file: Path, tmp_path: Path
) -> None:
    ref = tmp_path / "ref.npz"
    ev = Evaluator(inception_weights=inception_file, device="cpu")
    single = evaluate_reconstruction("tiny", data, evaluator=ev, lpips=False, with_precision_recall=False)
    shutil.copy(single.reference, ref)  # the reference it built and cached: both runs use the same one
    proc = run_torchrun(
        "eval",
        "rfid",
        "--tokenizer",
        "tiny",
        "--data",
        str(data),
        "--reference",
        str(ref),
        "--no-lpips",
        "--no-precision-recall",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--json",
        str(tmp_path / "r.json"),
        env={"GIGATOK_INCEPTION_WEIGHTS": str(inception_file)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("rFID: tiny") == 1  # only rank 0 prints the table
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["world_size"] == 2 and got["num_images"] == 3
    for key in NUMBERS:
        assert got[key] == pytest.approx(single.metrics[key], rel=1e-4, abs=1e-6), key


def test_unreadable_images_are_left_out_of_both_sides(data: Path, tmp_path: Path) -> None:
    (data / "n0" / "zz_broken.png").write_bytes(b"\x89PNG not really")
    report = _run(data, save_samples=tmp_path / "out")
    assert report is not None and report.metrics["num_images"] == 3 and report.metrics["skipped"] == 1
    assert any("zz_broken.png" in n for n in report.metrics["notes"])
    ref = load_statistics(report.reference)
    assert ref.pool.shape[0] == 3 and ref.meta["skipped"] == [str(data / "n0" / "zz_broken.png")]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"{i:06d}.png" for i in range(3)]


def test_overwrite_removes_an_earlier_runs_extra_samples(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "000007.png").write_bytes(b"from an earlier, larger run")
    (out / "keep.png").write_bytes(b"not ours")
    _run(data, save_samples=out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "000000.png",
        "000001.png",
        "000002.png",
        "keep.png",
        "samples.json",
    ]


def test_inception_score_sees_the_reconstructions_shuffled(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a val folder sorted by class would otherwise give each IS split of 5000 only 100 classes
    import gigatok_core.evaluation.evaluate as evaluate_mod
    import gigatok_core.evaluation.reconstruction as rec_mod

    write_images(data / "n1", 5, seed=9)
    made, scored = [], []
    real_from = rec_mod.EvalStats.from_features
    monkeypatch.setattr(
        rec_mod.EvalStats, "from_features", staticmethod(lambda f, **kw: made.append(f) or real_from(f, **kw))
    )
    monkeypatch.setattr(evaluate_mod, "inception_score", lambda logits: scored.append(logits) or 1.0)
    _run(data)
    recon = made[-1].logits  # the samples' features, in image order
    order = np.random.default_rng(0).permutation(len(recon))
    assert not np.array_equal(order, np.arange(len(recon)))
    np.testing.assert_array_equal(scored[-1], recon[order])
