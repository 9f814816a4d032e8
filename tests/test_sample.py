"""The sampling library: file layout, batch/world-size invariance, resume, refusals (gpt-tiny + tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gigatok_core.ar import CFGSchedule, SamplingParams
from gigatok_core.dist import HandSplit
from gigatok_core.errors import GigatokError
from gigatok_core.tasks.sample import plan, sample_images

CLASSES = "22,giant panda"
STEMS = ["022_bald-eagle_0000", "022_bald-eagle_0001", "388_giant-panda_0000", "388_giant-panda_0001"]


pytestmark = pytest.mark.usefixtures("one_thread")
KW = {
    "gpt": "gpt-tiny",
    "num_per_class": 2,
    "cfg": CFGSchedule(2.0, "step"),
    "device": "cpu",
    "sampling": SamplingParams(temperature=1.0, top_k=50),
    "seed": 3,
    "save_codes": True,
}


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_*_*.png"))}


def codes(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "codes.npz") as d:
        return {k: d[k] for k in d}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    sample_images(CLASSES, output=out, batch_size=4, grid=True, **KW)
    return out


def test_layout_and_codes(reference: Path) -> None:
    assert sorted(pixels(reference)) == STEMS
    assert all(a.shape == (256, 256, 3) and a.dtype == np.uint8 for a in pixels(reference).values())
    c = codes(reference)
    assert c["codes"].shape == (4, 256) and np.issubdtype(c["codes"].dtype, np.integer)
    assert c["codes"].min() >= 0 and c["codes"].max() < 1024
    assert c["labels"].tolist() == [22, 22, 388, 388] and c["names"].tolist() == STEMS
    assert len({tuple(r) for r in c["codes"]}) == 4  # every sample differs
    settings = json.loads((reference / "sample.json").read_text())
    assert settings["tokenizer"] == "tiny" and settings["classes"] == [22, 388]
    assert settings["cfg"] == {
        "scale": 2.0,
        "schedule": "step",
        "window_start": 0.18,
        "window_end": 1.0,
        "interval": -1,
    }
    grid = np.asarray(Image.open(reference / "grid.png"))
    assert grid.shape[0] > 2 * 128 and grid.shape[1] > 2 * 128  # 2 rows x 2 columns of thumbnails
    assert not (reference / ".codes-partial").exists()


def test_batch_size_does_not_change_images(reference: Path, tmp_path: Path) -> None:
    sample_images(CLASSES, output=tmp_path, batch_size=3, **KW)
    assert np.array_equal(codes(tmp_path)["codes"], codes(reference)["codes"])
    for stem, ref in pixels(reference).items():
        assert np.abs(pixels(tmp_path)[stem].astype(int) - ref).max() <= 1


def test_compiled_decode_gives_the_same_codes(reference: Path, tmp_path: Path) -> None:
    """``compile=True`` (torch.compile of the decode step; one compilation) changes nothing."""
    sample_images(CLASSES, output=tmp_path, batch_size=4, compile=True, **KW)
    assert np.array_equal(codes(tmp_path)["codes"], codes(reference)["codes"])
    assert json.loads((tmp_path / "sample.json").read_text())["compile"] is True


def test_world_size_does_not_change_images(reference: Path, tmp_path: Path) -> None:
    for rank in (1, 0):  # the main rank runs last: it writes the summaries
        res = sample_images(CLASSES, output=tmp_path, batch_size=1, ctx=HandSplit(rank, 2, rank), **KW)
        assert len(res.generated) == 2
    assert np.array_equal(codes(tmp_path)["codes"], codes(reference)["codes"])


def test_resume_skips_existing_and_refuses_other_runs(reference: Path, tmp_path: Path) -> None:
    sample_images("22", output=tmp_path, **KW)
    (tmp_path / "022_bald-eagle_0001.png").unlink()
    res = sample_images("22", output=tmp_path, **KW)
    assert res.skipped == 1 and [Path(p).name for p in res.generated] == ["022_bald-eagle_0001.png"]
    assert np.array_equal(codes(tmp_path)["codes"], codes(reference)["codes"][:2])
    # different settings in the same folder: refused, files untouched
    before = (tmp_path / "022_bald-eagle_0000.png").read_bytes()
    with pytest.raises(GigatokError, match="different settings"):
        sample_images("22", output=tmp_path, **{**KW, "seed": 4})
    assert (tmp_path / "022_bald-eagle_0000.png").read_bytes() == before
    res = sample_images("22", output=tmp_path, overwrite=True, **{**KW, "seed": 4})
    assert len(res.generated) == 2
    assert not np.array_equal(codes(tmp_path)["codes"], codes(reference)["codes"][:2])


def test_foreign_files_are_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "022_bald-eagle_0000.png").write_bytes(b"mine")
    with pytest.raises(GigatokError, match="already exist"):
        sample_images("22", output=tmp_path, **KW)
    assert (tmp_path / "022_bald-eagle_0000.png").read_bytes() == b"mine"


def test_official_rng_mode_runs_and_is_seeded(tmp_path: Path) -> None:
    kw = {**KW, "num_per_class": 1, "rng": "official"}
    sample_images("22,388", output=tmp_path / "a", **kw)
    sample_images("22,388", output=tmp_path / "b", **kw)
    assert np.array_equal(codes(tmp_path / "a")["codes"], codes(tmp_path / "b")["codes"])


def test_plan_is_class_balanced() -> None:
    items = plan([5, 7, 5], 3)
    assert [(i.class_idx, i.index) for i in items] == [(5, 0), (5, 1), (5, 2), (7, 0), (7, 1), (7, 2)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": "1000"}, "outside 0-999"),
        ({"classes": "giant pandaa"}, "unknown ImageNet class"),
        ({"gpt": "gpt-l", "tokenizer": "xl-xxl"}, "no gpt-l checkpoint was released"),
        ({"tokenizer": "s-s"}, "codebook"),
        ({"precision": "fp16"}, "needs a CUDA device"),
        ({"num_per_class": 0}, "at least 1"),
        ({"gpt_checkpoint": "missing.pt"}, "GPT checkpoint missing.pt does not exist"),
        ({"tokenizer_checkpoint": "missing.pt"}, "tokenizer checkpoint missing.pt does not exist"),
    ],
)
def test_user_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {**KW, "classes": "22", **kwargs}
    with pytest.raises(GigatokError, match=match):
        sample_images(args.pop("classes"), output=tmp_path / "out", **args)
    assert not any((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True
