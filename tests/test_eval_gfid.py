"""`gigatok eval gfid` on gpt-tiny + tiny: resume keeps earlier samples, --save-npz, rank-0-only scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from evalkit import tiny_evaluator
from PIL import Image
from typer.testing import CliRunner

import gigatok_core.evaluation.commands as eval_commands
from gigatok_cli.main import app
from gigatok_core.ar.guidance import CFGSchedule
from gigatok_core.dist import HandSplit
from gigatok_core.evaluation import EvalStats, Features, frechet_distance, load_statistics, save_statistics
from gigatok_core.evaluation.generation import evaluate_generation, sample_paths, write_sample_npz
from gigatok_core.tasks.sample import sample_images


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    feats = Features(
        pool=rng.normal(size=(6, 12)).astype(np.float32),
        spatial=rng.normal(size=(6, 6)).astype(np.float32),
        logits=rng.normal(size=(6, 7)).astype(np.float32),
    )
    path = tmp_path / "ref.npz"
    save_statistics(path, EvalStats.from_features(feats, protocol="gfid-adm"))
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


def _count_generate(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import gigatok_core.tasks.sample as sample_mod

    labels: list[int] = []
    real = sample_mod.generate

    def counting(model, y, *args, **kwargs):
        labels.extend(y.tolist())
        return real(model, y, *args, **kwargs)

    monkeypatch.setattr(sample_mod, "generate", counting)
    return labels


def test_gfid_resumes_packs_npz_and_scores(
    tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "samples"
    cfg = CFGSchedule(1.75, "step", window_start=0.18)  # the CLI's defaults
    sample_images(
        [0], output=out, gpt="gpt-tiny", num_per_class=1, cfg=cfg, batch_size=32
    )  # "interrupted" run
    first = sample_paths(out, [0], 1)[0]
    before = (first.stat().st_mtime_ns, first.read_bytes())
    labels = _count_generate(monkeypatch)
    captured: list[Features] = []
    ev = tiny_evaluator()
    real_ff = type(ev).folder_features

    def spy(self, paths, **kw):
        captured.append(real_ff(self, paths, **kw))
        return captured[-1]

    monkeypatch.setattr(type(ev), "folder_features", spy)
    monkeypatch.setattr(eval_commands, "make_evaluator", lambda *a, **k: ev)
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "gfid",
            "--gpt",
            "gpt-tiny",
            "--output",
            str(out),
            "--reference",
            str(reference),
            "--num-classes",
            "2",
            "--num-per-class",
            "1",
            "--no-precision-recall",
            "--save-npz",
            str(tmp_path / "s.npz"),
            "--json",
            str(tmp_path / "g.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert labels == [1]  # only the missing sample (class 1) was generated
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before
    paths = sample_paths(out, [0, 1], 1)
    with np.load(tmp_path / "s.npz") as z:
        assert list(z.keys()) == ["arr_0"]
        arr = z["arr_0"]
    assert arr.dtype == np.uint8 and arr.shape == (2, 256, 256, 3)
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(arr[i], np.asarray(Image.open(p).convert("RGB")))
    got = json.loads((tmp_path / "g.json").read_text())
    ref = load_statistics(reference)
    assert got["num_samples"] == 2 and got["num_classes"] == 2
    assert got["fid"] == pytest.approx(
        frechet_distance(ref.pool_stats, EvalStats.from_features(captured[0]).pool_stats)
    )
    # the npz is not replaced without --overwrite (checked before sampling)
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "gfid",
            "--gpt",
            "gpt-tiny",
            "--output",
            str(out),
            "--reference",
            str(reference),
            "--num-classes",
            "2",
            "--num-per-class",
            "1",
            "--save-npz",
            str(tmp_path / "s.npz"),
        ],
    )
    assert res.exit_code == 1 and "already exists" in res.output


def test_only_rank_zero_scores(tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gigatok_core.tasks.sample as sample_mod

    calls: list[dict] = []
    monkeypatch.setattr(sample_mod, "sample_images", lambda classes, **kw: calls.append(kw))
    ev = tiny_evaluator()
    monkeypatch.setattr(
        type(ev), "folder_features", lambda *a, **k: (_ for _ in ()).throw(AssertionError("scored"))
    )
    got = evaluate_generation(
        "gpt-tiny",
        output=tmp_path / "o",
        evaluator=ev,
        reference=reference,
        num_classes=2,
        num_per_class=1,
        ctx=HandSplit(1, 2),
    )
    assert got is None and calls[0]["ctx"] == HandSplit(1, 2)


def test_write_sample_npz_refuses_wrong_sizes(tmp_path: Path) -> None:
    from gigatok_core.errors import GigatokError

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(GigatokError, match="expected 256x256"):
        write_sample_npz([tmp_path / "a.png"], tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists() and not list(tmp_path.glob(".x.npz*"))
    write_sample_npz([tmp_path / "a.png"] * 2, tmp_path / "x.npz", image_size=8)
    with np.load(tmp_path / "x.npz") as z:
        assert z["arr_0"].shape == (2, 8, 8, 3)
