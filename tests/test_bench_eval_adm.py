"""bench/eval_adm.py runs end to end (on a few synthetic images with a random-weights Inception).

The real check, against ADM's published numbers, needs ADM's two npz files and a GPU.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from evalkit import random_inception

from gigatok_core.evaluation import EvalStats, Evaluator

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _bench():
    spec = importlib.util.spec_from_file_location("eval_adm", ROOT / "bench" / "eval_adm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a bench script's run (~25 s): the evaluator's maths is tested in test_eval_*
def test_eval_adm_bench_prints_and_writes_differences(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = random_inception(tmp_path / "inception.pth")
    rng = np.random.default_rng(0)
    ref_images = rng.integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
    samples = rng.integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
    # an ADM-style reference batch: images plus statistics stored beside them
    ev = Evaluator(inception_weights=weights, device="cpu", batch_size=4)
    stats = EvalStats.from_features(ev.features([ref_images]))
    ref = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    np.savez(
        ref,
        arr_0=ref_images,
        mu=stats.pool_stats.mu,
        sigma=stats.pool_stats.sigma,
        mu_s=stats.spatial_stats.mu,
        sigma_s=stats.spatial_stats.sigma,
    )
    np.savez(tmp_path / "samples.npz", arr_0=samples)
    paths = ["--samples", tmp_path / "samples.npz", "--reference", ref, "--inception-weights", weights]
    report = _bench().main(
        [str(a) for a in paths] + ["--device", "cpu", "--batch-size", "4", "--json", str(tmp_path / "r.json")]
    )
    out = capsys.readouterr().out
    assert "fid" in out and "published" in out and "inception images/s" in out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(report["metrics"]))
    for key in ("fid", "sfid", "is", "precision", "recall"):
        row = saved["metrics"][key]
        assert row["published"] > 0 and row["diff"] == pytest.approx(row["ours"] - row["published"])
    assert saved["metrics"]["fid"]["ours"] > 0
