"""`gigatok eval`: JSON contract, protocol guard, end to end on a few images with a random Inception."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from evalkit import random_inception
from PIL import Image
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.evaluation import (
    EvalStats,
    Features,
    extract_features,
    frechet_distance,
    inception_score,
    load_fid_inception,
    precision_recall,
    save_statistics,
)
from gigatok_core.evaluation.generation import sample_paths

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, ["eval", *map(str, args)])


def _stats_file(path: Path, seed: int, n: int = 8, protocol: str | None = None) -> EvalStats:
    rng = np.random.default_rng(seed)
    feats = Features(
        pool=rng.normal(seed * 0.1, 1.0, size=(n, 6)).astype(np.float32),
        spatial=rng.normal(size=(n, 4)).astype(np.float32),
        logits=rng.normal(size=(n, 5)).astype(np.float32),
    )
    st = EvalStats.from_features(feats, protocol=protocol)
    save_statistics(path, st)
    return st


# ---------------------------------------------------------------------------------------------
# No Inception needed: statistics files on both sides
# ---------------------------------------------------------------------------------------------
def test_fid_on_statistics_files_writes_json(tmp_path) -> None:
    a, b = _stats_file(tmp_path / "a.npz", 1), _stats_file(tmp_path / "b.npz", 2)
    res = _invoke(
        "fid", tmp_path / "a.npz", tmp_path / "b.npz", "--json", tmp_path / "m.json", "--device", "cpu"
    )
    assert res.exit_code == 0, res.output
    assert "FID" in res.output and "sFID" in res.output
    got = json.loads((tmp_path / "m.json").read_text())
    assert {"fid", "sfid", "is", "precision", "recall"} <= set(got)
    assert got["fid"] == pytest.approx(frechet_distance(b.pool_stats, a.pool_stats))
    assert got["sfid"] == pytest.approx(frechet_distance(b.spatial_stats, a.spatial_stats))
    p, r = precision_recall(b.pool, a.pool)
    assert (got["precision"], got["recall"]) == (pytest.approx(p), pytest.approx(r))
    assert got["is"] is None  # statistics files carry no logits
    # the JSON file is not replaced without --overwrite
    res = _invoke("fid", tmp_path / "a.npz", tmp_path / "b.npz", "--json", tmp_path / "m.json")
    assert res.exit_code == 1 and "already exists" in res.output


def test_protocol_guard_refuses_adm_batch_for_rfid(tmp_path) -> None:
    _stats_file(tmp_path / "s.npz", 1)
    adm = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    _stats_file(adm, 2)
    res = _invoke("fid", tmp_path / "s.npz", adm, "--protocol", "rfid-imagenet-val")
    assert res.exit_code == 1 and "gfid-adm" in res.output and "--force" in res.output
    assert (
        _invoke("fid", tmp_path / "s.npz", adm, "--protocol", "rfid-imagenet-val", "--force").exit_code == 0
    )
    assert _invoke("fid", tmp_path / "s.npz", adm, "--protocol", "gfid-adm").exit_code == 0
    res = _invoke("rfid", "--tokenizer", "tiny", "--data", tmp_path, "--reference", adm)
    assert res.exit_code == 1 and "gfid-adm" in res.output


def test_bad_inputs_are_user_errors(tmp_path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    res = _invoke("fid", tmp_path / "x.txt", tmp_path / "missing.npz")
    assert res.exit_code == 1 and "error" in res.output
    np.savez(tmp_path / "k.npz", foo=np.zeros(3))
    res = _invoke("fid", tmp_path / "k.npz", tmp_path / "k.npz")
    assert res.exit_code == 1 and "neither images" in res.output


def test_gfid_refuses_rfid_reference_before_sampling(tmp_path, monkeypatch) -> None:
    import gigatok_core.tasks.sample as sample_mod

    def boom(*args, **kwargs):
        raise AssertionError("sampling must not start with the wrong reference")

    monkeypatch.setattr(sample_mod, "sample_images", boom)
    _stats_file(tmp_path / "val.npz", 1, protocol="rfid-imagenet-val")
    res = _invoke("gfid", "--gpt", "gpt-b", "--output", tmp_path / "out", "--reference", tmp_path / "val.npz")
    assert res.exit_code == 1 and "rfid-imagenet-val" in res.output and "--force" in res.output


def test_gfid_calls_sampler_then_scores(tmp_path, monkeypatch) -> None:
    import gigatok_core.tasks.sample as sample_mod
    from gigatok_core.evaluation import evaluate as evaluate_mod

    calls = {}

    def fake_sample(classes, **kwargs):
        calls["classes"], calls["kwargs"] = classes, kwargs
        for p in sample_paths(kwargs["output"], classes, kwargs["num_per_class"]):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"png")
        return sample_mod.SampleResult(str(kwargs["output"]), len(classes), [], 0)

    adm = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    ref = _stats_file(adm, 2)
    smp = _stats_file(tmp_path / "s.npz", 3)
    seen: list[list[Path]] = []

    def fake_folder_features(self, paths, **kw):
        seen.append(list(paths))
        return Features(
            pool=smp.pool,
            spatial=np.zeros((len(smp.pool), 4), np.float32),
            logits=np.zeros((len(smp.pool), 5), np.float32),
        )

    monkeypatch.setattr(sample_mod, "sample_images", fake_sample)
    monkeypatch.setattr(evaluate_mod.Evaluator, "load", lambda self, source, **kw: ref)
    monkeypatch.setattr(evaluate_mod.Evaluator, "folder_features", fake_folder_features)
    res = _invoke(
        "gfid",
        "--gpt",
        "gpt-b@s-s",
        "--output",
        tmp_path / "out",
        "--reference",
        adm,
        "--num-per-class",
        "2",
        "--cfg-scale",
        "2.5",
        "--json",
        tmp_path / "g.json",
    )
    assert res.exit_code == 0, res.output
    assert calls["classes"] == list(range(1000)) and calls["kwargs"]["num_per_class"] == 2
    assert calls["kwargs"]["gpt"] == "gpt-b" and calls["kwargs"]["tokenizer"] == "s-s"  # the release, split
    assert calls["kwargs"]["cfg"].scale == 2.5
    got = json.loads((tmp_path / "g.json").read_text())
    assert got["fid"] == pytest.approx(frechet_distance(ref.pool_stats, smp.pool_stats))
    assert got["protocol"] == "gfid-adm"
    # exactly the plan's 2 x 1000 PNGs are scored, index-major (each IS split of 5000 mixes all classes)
    out = tmp_path / "out"
    assert len(seen[0]) == len(set(seen[0])) == 2000
    assert [p.name[:3] for p in seen[0][:3]] == ["000", "001", "002"]
    assert seen[0][0].name.endswith("_0000.png") and seen[0][1000].name.endswith("_0001.png")
    assert seen[0][1000] == sample_paths(out, [0], 2)[1]


# ---------------------------------------------------------------------------------------------
# End to end with a random-weights Inception (8 images in all)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    return random_inception(tmp_path_factory.mktemp("inception") / "pt_inception-random.pth")


def _images(n: int, seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return base // (1 + seed % 3)


def test_fid_end_to_end_folder_vs_image_npz(tmp_path, inception_file, monkeypatch) -> None:
    from gigatok_core.evaluation import features as features_mod

    captured: list[Features] = []

    def spy(*args, **kwargs):
        captured.append(extract_features(*args, **kwargs))
        return captured[-1]

    monkeypatch.setattr(features_mod, "extract_features", spy)
    samples, ref = _images(4, 1), _images(4, 2)
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, img in enumerate(samples):
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    np.savez(tmp_path / "ref.npz", arr_0=ref)
    res = _invoke(
        "fid",
        folder,
        tmp_path / "ref.npz",
        "--inception-weights",
        inception_file,
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--json",
        tmp_path / "m.json",
    )
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "m.json").read_text())
    # the CLI's features are those of the random network (spot check one image) ...
    fs, fr = captured
    assert fs.pool.shape == fr.pool.shape == (4, 2048)
    one = extract_features(load_fid_inception(inception_file), [samples[2:3]])
    np.testing.assert_allclose(one.pool[0], fs.pool[2], rtol=1e-4, atol=1e-5)
    # ... FID/sFID agree with a closed form for N < D: tr sqrtm(S1 S2) = nuclear norm of A1 A2^T / (N - 1)
    for key, attr in (("fid", "pool"), ("sfid", "spatial")):
        a1, a2 = getattr(fr, attr).astype(np.float64), getattr(fs, attr).astype(np.float64)
        c1, c2 = a1 - a1.mean(0), a2 - a2.mean(0)
        n = len(a1) - 1
        tr_root = np.linalg.svd(c1 @ c2.T / n, compute_uv=False).sum()
        want = np.sum((a1.mean(0) - a2.mean(0)) ** 2) + (c1**2).sum() / n + (c2**2).sum() / n - 2 * tr_root
        assert got[key] == pytest.approx(want, rel=1e-5), key
    # ... and IS / precision / recall are the library's on those features
    assert got["is"] == pytest.approx(inception_score(fs.logits), rel=1e-12)
    assert (got["precision"], got["recall"]) == pytest.approx(precision_recall(fr.pool, fs.pool))
    assert got["fid"] > 0 and got["is"] >= 1.0 and 0 <= got["precision"] <= 1
    assert got["num_samples"] == 4 and got["num_reference"] == 4


def test_build_ref_command(tmp_path, inception_file) -> None:
    data = tmp_path / "val" / "n01440764"
    data.mkdir(parents=True)
    for i, img in enumerate(_images(2, 3, size=300)):
        Image.fromarray(img).save(data / f"img{i}.png")
    ref = tmp_path / "ref.npz"
    res = _invoke(
        "build-ref",
        "--data",
        tmp_path / "val",
        "--output",
        ref,
        "--inception-weights",
        inception_file,
        "--device",
        "cpu",
        "--image-size",
        "64",
    )
    assert res.exit_code == 0, res.output
    with np.load(ref) as z:
        assert str(z["gigatok_protocol"]) == "rfid-imagenet-val" and z["pool"].shape == (2, 2048)
        assert json.loads(str(z["gigatok_meta"]))["image_size"] == 64
    assert (
        _invoke(
            "build-ref", "--data", tmp_path / "val", "--output", ref, "--inception-weights", inception_file
        ).exit_code
        == 1
    )  # exists, no --overwrite


def test_rfid_with_tiny_tokenizer_builds_and_caches_reference(tmp_path, inception_file) -> None:
    from gigatok_core.hub import cache_dir

    data = tmp_path / "val" / "n01440764"
    data.mkdir(parents=True)
    for i, img in enumerate(_images(2, 3, size=300)):
        Image.fromarray(img).save(data / f"img{i}.png")
    res = _invoke(
        "rfid",
        "--tokenizer",
        "tiny",
        "--data",
        tmp_path / "val",
        "--no-lpips",
        "--no-precision-recall",
        "--inception-weights",
        inception_file,
        "--device",
        "cpu",
        "--save-samples",
        tmp_path / "recon",
        "--json",
        tmp_path / "r.json",
    )
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["fid"] is not None and got["fid"] > 0 and got["rfid"] == got["fid"]
    assert 0 < got["codebook_usage"] <= 1 and got["num_images"] == 2 and got["lpips"] is None
    assert np.isfinite(got["psnr"]) and -1 <= got["ssim"] <= 1
    assert sorted(p.name for p in (tmp_path / "recon").iterdir()) == [
        "000000.png",
        "000001.png",
        "samples.json",
    ]
    index = json.loads((tmp_path / "recon" / "samples.json").read_text())
    assert sorted(index) == ["000000.png", "000001.png"] and all(Path(v).is_file() for v in index.values())
    cached = list((cache_dir() / "references").glob("rfid-imagenet-val-*.npz"))
    assert len(cached) == 1 and got["reference"] == str(cached[0])
    with np.load(cached[0]) as z:
        assert str(z["gigatok_protocol"]) == "rfid-imagenet-val" and z["pool"].shape == (2, 2048)
    # saved reconstructions are not overwritten without --overwrite (checked before any work)
    res = _invoke(
        "rfid",
        "--tokenizer",
        "tiny",
        "--data",
        tmp_path / "val",
        "--no-lpips",
        "--inception-weights",
        inception_file,
        "--save-samples",
        tmp_path / "recon",
    )
    assert res.exit_code == 1 and "already exist" in res.output


def test_eval_report_rows_label_and_format_the_metrics() -> None:
    from gigatok_core.evaluation.commands import EvalReport

    report = EvalReport("t", {"fid": 1.23456, "precision": None, "num_samples": 10, "notes": ["n"]})
    assert report.rows() == [("FID", "1.2346"), ("Precision", None), ("Samples", "10")]
