"""`extract-codes --import-official`: the official per-image layout into a codes folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.data.codes import CodesDataset
from gigatok_core.data.codes_format import MANIFEST_NAME

runner = CliRunner()


def _official(
    root: Path, n: int, *, crops: int = 2, tokens: int = 256, vocab: int = 1024, seed: int = 0
) -> np.ndarray:
    """The layout extract_codes_c2i.py writes: codes (1, crops, T) int64, labels (1,) per image."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, vocab, (n, crops, tokens))
    for sub in ("imagenet256_codes", "imagenet256_labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(root / "imagenet256_codes" / f"{i}.npy", codes[i][None])
        np.save(root / "imagenet256_labels" / f"{i}.npy", np.array([i % 3]))
    return codes


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(
        app,
        ["train", "extract-codes", "--tokenizer", "tiny", "--check-images", "0", "--device", "cpu", *args],
    )
    return res.exit_code, " ".join(res.output.split())


def test_import_official_round_trip(tmp_path: Path) -> None:
    codes = _official(tmp_path / "ten_crop", 12)  # numeric order: 10.npy and 11.npy come after 9.npy
    for i in range(3):
        (tmp_path / "imgs" / f"class{i}").mkdir(parents=True)
    code, text = _run(
        "--import-official", str(tmp_path / "ten_crop"), "--output", str(tmp_path / "codes"),
        "--shard-size", "5", "--data", str(tmp_path / "imgs"),
    )  # fmt: skip
    assert code == 0, text
    assert "wrote 12 images x 2 crops in 3 shards" in text
    raw = json.loads((tmp_path / "codes" / MANIFEST_NAME).read_text())
    assert raw["classes"] == ["class0", "class1", "class2"] and raw["imported_from"] == str(
        tmp_path / "ten_crop"
    )
    ds = CodesDataset(tmp_path / "codes", crop=1)
    for i in (0, 4, 5, 11):
        assert ds[i][0].tolist() == codes[i, 1].tolist() and ds[i][1] == i % 3
    # without --data the classes are the label numbers
    code, text = _run("--import-official", str(tmp_path / "ten_crop"), "--output", str(tmp_path / "c2"))
    assert code == 0, text
    assert json.loads((tmp_path / "c2" / MANIFEST_NAME).read_text())["classes"] == ["0", "1", "2"]


def test_import_official_bad_layouts(tmp_path: Path) -> None:
    code, text = _run("--import-official", str(tmp_path), "--output", str(tmp_path / "o"))
    assert code == 1 and "lacks imagenet256_codes/" in text
    _official(tmp_path / "short", 2, tokens=64)
    code, text = _run("--import-official", str(tmp_path / "short"), "--output", str(tmp_path / "o"))
    assert code == 1 and "expected (crops, 256)" in text
    _official(tmp_path / "big", 2, vocab=5000)
    code, text = _run("--import-official", str(tmp_path / "big"), "--output", str(tmp_path / "o"))
    assert code == 1 and "codebook of 1024" in text and "--tokenizer" in text
    _official(tmp_path / "holey", 3)
    (tmp_path / "holey" / "imagenet256_labels" / "1.npy").unlink()
    code, text = _run("--import-official", str(tmp_path / "holey"), "--output", str(tmp_path / "o"))
    assert code == 1 and "image 1 has no file" in text
    assert not (tmp_path / "o" / MANIFEST_NAME).exists()
