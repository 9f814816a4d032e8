"""`gigatok eval` fails fast and clearly, caches reference features, and says why a metric is n/a."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import bump_mtime
from evalkit import tiny_evaluator, write_images
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.errors import GigatokError
from gigatok_core.evaluation import EvalStats, Features, save_statistics
from gigatok_core.evaluation.evaluate import Evaluator, compute_metrics
from gigatok_core.evaluation.metrics import GaussianStats, frechet_distance
from gigatok_core.evaluation.reference import (
    check_protocol,
    default_reference_path,
    detect_protocol,
    weights_id,
)

runner = CliRunner()


def _invoke(*args: object):
    return runner.invoke(app, ["eval", *map(str, args)])


def _stats(path: Path, n: int = 8, dim: int = 6, seed: int = 0) -> EvalStats:
    rng = np.random.default_rng(seed)
    feats = Features(
        pool=rng.normal(size=(n, dim)).astype(np.float32),
        spatial=rng.normal(size=(n, 4)).astype(np.float32),
        logits=rng.normal(size=(n, 5)).astype(np.float32),
    )
    st = EvalStats.from_features(feats)
    save_statistics(path, st)
    return st


def _boom(*args: object, **kwargs: object) -> None:
    raise AssertionError("expensive work must not start")


# ---------------------------------------------------------------------------------------------
# Fail before the expensive part
# ---------------------------------------------------------------------------------------------
def test_gfid_missing_reference_fails_before_sampling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gigatok_core.tasks.sample as sample_mod

    monkeypatch.setattr(sample_mod, "sample_images", _boom)
    res = _invoke("gfid", "--gpt", "gpt-b", "--output", tmp_path / "o", "--reference", tmp_path / "no.npz")
    assert res.exit_code == 1 and "does not exist" in res.output and "Traceback" not in res.output


def test_rfid_bad_reference_fails_before_reconstructing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gigatok_core.tokenizer as tok_mod

    monkeypatch.setattr(tok_mod, "load_tokenizer", _boom)
    write_images(tmp_path / "val", 2, seed=0)
    (tmp_path / "ref.txt").write_text("not a reference")
    for ref, message in [(tmp_path / "no.npz", "does not exist"), (tmp_path / "ref.txt", "neither a folder")]:
        res = _invoke("rfid", "--tokenizer", "tiny", "--data", tmp_path / "val", "--reference", ref)
        assert res.exit_code == 1 and message in res.output, res.output


def test_build_ref_checks_the_output_name_before_extracting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Evaluator, "folder_features", _boom)
    write_images(tmp_path / "imgs", 2, seed=0)
    res = _invoke("build-ref", "--data", tmp_path / "imgs", "--output", tmp_path / "ref.txt")
    assert res.exit_code == 1 and "end in .npz" in res.output
    (tmp_path / "dir.npz").mkdir()
    res = _invoke("build-ref", "--data", tmp_path / "imgs", "--output", tmp_path / "dir.npz", "--overwrite")
    assert res.exit_code == 1 and "is a folder" in res.output


def test_json_target_that_is_a_folder_is_refused_up_front(tmp_path: Path) -> None:
    _stats(tmp_path / "a.npz")
    (tmp_path / "out.json").mkdir()
    res = _invoke(
        "fid", tmp_path / "a.npz", tmp_path / "a.npz", "--json", tmp_path / "out.json", "--overwrite"
    )
    assert res.exit_code == 1 and "is a folder" in res.output and "Traceback" not in res.output


def test_statistics_of_different_dimensions_are_a_user_error(tmp_path: Path) -> None:
    _stats(tmp_path / "a.npz", dim=6)
    _stats(tmp_path / "b.npz", dim=7)
    res = _invoke("fid", tmp_path / "a.npz", tmp_path / "b.npz")
    assert res.exit_code == 1 and "different dimensions" in res.output and "Traceback" not in res.output


# ---------------------------------------------------------------------------------------------
# gfid sample count
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "per_class", "message"),
    [
        (["--num-samples", "30", "--num-classes", "10"], 3, None),
        (["--num-per-class", "4", "--num-classes", "10"], 4, None),
        (["--num-classes", "10"], 50, None),
        (["--num-samples", "25", "--num-classes", "10"], None, "does not split evenly"),
        (["--num-samples", "30", "--num-per-class", "2", "--num-classes", "10"], None, "disagree"),
    ],
)
def test_gfid_num_samples(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    per_class: int | None,
    message: str | None,
) -> None:
    import gigatok_core.evaluation.generation as gen_mod

    seen: dict[str, int] = {}

    def fake_evaluate_generation(gpt: str, **kwargs: object) -> dict:
        seen["num_per_class"] = kwargs["num_per_class"]  # type: ignore[assignment]
        return {"fid": 1.0}

    monkeypatch.setattr(gen_mod, "evaluate_generation", fake_evaluate_generation)
    res = _invoke("gfid", "--gpt", "gpt-b", "--output", tmp_path / "o", *args)
    if message is None:
        assert res.exit_code == 0, res.output
        assert seen["num_per_class"] == per_class
    else:
        assert res.exit_code == 1 and message in res.output and not seen


# ---------------------------------------------------------------------------------------------
# References: protocol by layout, features cached, cache keys know the Inception weights
# ---------------------------------------------------------------------------------------------
def test_adm_layout_is_recognised_whatever_the_file_name(tmp_path: Path) -> None:
    renamed = tmp_path / "my_batch.npz"
    np.savez(renamed, arr_0=np.zeros((2, 8, 8, 3), np.uint8), mu=np.zeros(3), sigma=np.eye(3))
    assert detect_protocol(renamed) == "gfid-adm"
    with pytest.raises(GigatokError, match="gfid-adm"):
        check_protocol(renamed, "rfid-imagenet-val")
    images_only = tmp_path / "val_imagenet.npz"  # the official rFID reference: images, no statistics
    np.savez(images_only, arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    assert detect_protocol(images_only) is None


def test_reference_batch_features_are_computed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    images = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    np.savez(ref, arr_0=images, mu=np.zeros(3), sigma=np.eye(3), mu_s=np.zeros(2), sigma_s=np.eye(2))
    ev = tiny_evaluator()
    calls = []
    real = Evaluator.npz_features

    def counting(self: Evaluator, path: Path, label: str = "npz") -> Features:
        calls.append(path)
        return real(self, path, label)

    monkeypatch.setattr(Evaluator, "npz_features", counting)
    first = ev.load(ref, need_features=True)
    second = tiny_evaluator().load(ref, need_features=True)
    assert len(calls) == 1 and len(first.pool) == 5 and first.logits is not None
    np.testing.assert_array_equal(first.pool, second.pool)
    np.testing.assert_array_equal(first.logits, second.logits)
    bump_mtime(ref)  # the file changed (mtime): computed again
    tiny_evaluator().load(ref, need_features=True)
    assert len(calls) == 2


def test_rfid_reference_cache_key_depends_on_the_inception_weights(tmp_path: Path) -> None:
    files = write_images(tmp_path / "val", 2, seed=0)
    w1, w2 = tmp_path / "w1.pth", tmp_path / "w2.pth"
    w1.write_bytes(b"one")
    w2.write_bytes(b"two")
    paths = {default_reference_path(files, 256, weights=weights_id(w)) for w in (None, w1, w2)}
    assert len(paths) == 3
    assert default_reference_path(files, 256, weights=weights_id(w1)) in paths


# ---------------------------------------------------------------------------------------------
# Metrics: ADM's argument order, reasons for n/a
# ---------------------------------------------------------------------------------------------
def test_fid_takes_the_samples_first_as_adm() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 4)), rng.normal(1, 2, size=(50, 4))
    samples = EvalStats(pool_stats=GaussianStats.from_features(a), count=50)
    ref = EvalStats(pool_stats=GaussianStats.from_features(b), count=50)
    got = compute_metrics(samples, ref)
    assert got["fid"] == frechet_distance(samples.pool_stats, ref.pool_stats)  # bit for bit


def test_metrics_that_cannot_be_computed_say_why(tmp_path: Path) -> None:
    _stats(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", mu=np.zeros(6), sigma=np.eye(6))  # statistics only, no features
    res = _invoke("fid", tmp_path / "b.npz", tmp_path / "a.npz", "--json", tmp_path / "m.json")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "IS is n/a: it needs the samples' images" in text and "sFID is n/a: it needs spatial" in text
    assert (
        "precision/recall are n/a: they need per-image features of both sides (the samples has none)" in text
    )
    notes = json.loads((tmp_path / "m.json").read_text())["notes"]
    assert len(notes) == 3


# ---------------------------------------------------------------------------------------------
# build-ref --with-images: a reference ADM's evaluator can read (it needs arr_0)
# ---------------------------------------------------------------------------------------------
def test_reference_with_images_holds_the_crops_and_the_statistics(tmp_path: Path) -> None:
    from gigatok_core.data.images import load_image

    files = write_images(tmp_path / "val", 3, seed=1, size=48)
    ev = tiny_evaluator(batch_size=2)
    out = tmp_path / "ref.npz"
    stats = ev.build_reference(tmp_path / "val", out, image_size=32, with_images=True)
    with np.load(out, allow_pickle=False) as z:
        assert {"arr_0", "mu", "sigma", "mu_s", "sigma_s", "pool", "gigatok_protocol"} <= set(z.files)
        assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (3, 32, 32, 3)
        for i, f in enumerate(files):
            np.testing.assert_array_equal(z["arr_0"][i], load_image(f, 32))
        np.testing.assert_array_equal(z["mu"], stats.pool_stats.mu)
    plain = ev.build_reference(tmp_path / "val", tmp_path / "plain.npz", image_size=32)
    np.testing.assert_allclose(plain.pool_stats.sigma, stats.pool_stats.sigma)  # same numbers either way
    assert detect_protocol(out) == "rfid-imagenet-val"  # its own tag wins over the ADM-like layout


def test_reference_with_images_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    write_images(tmp_path / "val", 2, seed=1, size=48)
    (tmp_path / "val" / "zz_broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(GigatokError):
        tiny_evaluator().build_reference(
            tmp_path / "val", tmp_path / "ref.npz", image_size=32, with_images=True
        )
    assert list(tmp_path.glob("*.npz")) == [] and list(tmp_path.glob(".ref.npz.*")) == []


@pytest.mark.parametrize(("flag", "resample"), [("--overwrite", False), ("--regenerate", True)])
def test_gfid_overwrite_replaces_outputs_regenerate_resamples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, resample: bool
) -> None:
    import gigatok_core.tasks.sample as sample_mod
    from gigatok_core.evaluation.generation import sample_paths

    seen: dict[str, object] = {}

    def fake_sample(classes: list[int], **kwargs: object) -> None:
        seen["overwrite"] = kwargs["overwrite"]
        for p in sample_paths(kwargs["output"], classes, kwargs["num_per_class"]):  # type: ignore[arg-type]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"png")

    ref_stats = _stats(tmp_path / "VIRTUAL_imagenet256_labeled.npz")
    monkeypatch.setattr(sample_mod, "sample_images", fake_sample)
    monkeypatch.setattr(Evaluator, "load", lambda self, source, **kw: ref_stats)
    monkeypatch.setattr(
        Evaluator,
        "folder_features",
        lambda self, paths, **kw: Features(
            pool=np.random.default_rng(0).normal(size=(len(paths), 6)).astype(np.float32),
            spatial=np.zeros((len(paths), 4), np.float32),
            logits=np.zeros((len(paths), 5), np.float32),
        ),
    )
    if flag == "--overwrite":
        (tmp_path / "g.json").write_text("{}")  # replaced, while the samples are reused
    res = _invoke(
        "gfid", "--gpt", "gpt-b", "--output", tmp_path / "o", "--num-classes", "4", "--num-per-class", "2",
        "--reference", tmp_path / "VIRTUAL_imagenet256_labeled.npz", "--json", tmp_path / "g.json", flag,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert seen["overwrite"] is resample and json.loads((tmp_path / "g.json").read_text())["fid"] is not None


def test_short_inception_score_splits_are_noted() -> None:
    rng = np.random.default_rng(0)
    for n, words in [(5001, "the last holds only 1 samples"), (200, "IS from 200 samples"), (10000, None)]:
        samples = EvalStats(logits=rng.normal(size=(n, 5)).astype(np.float32), count=n)
        notes = compute_metrics(samples, EvalStats()).get("notes", [])
        assert any(words in note for note in notes) if words else not any("IS" in note for note in notes)
