"""The codes format (CODES_DIR): shard/manifest round trip, CodesDataset, clear errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gigatok_core.data.codes import CodesDataset, holdout_split
from gigatok_core.data.codes_format import (
    MANIFEST_NAME,
    CodesTokenizer,
    codes_dtype,
    read_manifest,
    scan_shard,
    shard_files,
    write_manifest,
    write_shard,
)
from gigatok_core.errors import GigatokError

TOK = CodesTokenizer(codebook_size=4096, num_tokens=6, preset="tiny", sha256="ab" * 32)


def _make(root: Path, sizes=(5, 3), crops: int = 4, seed: int = 0, tokenizer: CodesTokenizer = TOK):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, tokenizer.codebook_size, size=(sum(sizes), crops, tokenizer.num_tokens))
    labels = rng.integers(0, 3, size=sum(sizes))
    entries, start = [], 0
    for k, n in enumerate(sizes):
        entries.append(
            write_shard(
                root,
                k,
                codes[start : start + n],
                labels[start : start + n],
                codebook_size=tokenizer.codebook_size,
            )
        )
        start += n
    manifest = write_manifest(root, tokenizer=tokenizer, crops=crops, classes=["a", "b", "c"], shards=entries)
    return codes, labels, manifest


def test_round_trip_files_and_manifest(tmp_path: Path) -> None:
    codes, labels, written = _make(tmp_path)
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert raw["format"] == 1 and raw["num_images"] == 8 and raw["crops"] == 4
    assert raw["tokenizer"] == {
        "preset": "tiny",
        "checkpoint": None,
        "sha256": "ab" * 32,
        "codebook_size": 4096,
        "num_tokens": 6,
    }
    assert raw["classes"] == ["a", "b", "c"] and raw["created_by"].startswith("gigatok ")
    assert [s["count"] for s in raw["shards"]] == [5, 3]
    assert raw["shards"][1]["codes"] == "shard-00001.codes.npy" and set(raw["shards"][1]["sha256"]) == {
        "codes",
        "labels",
    }
    c0 = np.load(tmp_path / "shard-00000.codes.npy", mmap_mode="r")
    assert c0.dtype == np.uint16 and c0.shape == (5, 4, 6)
    np.testing.assert_array_equal(c0, codes[:5])
    l1 = np.load(tmp_path / "shard-00001.labels.npy")
    assert l1.dtype == np.int32
    np.testing.assert_array_equal(l1, labels[5:])
    manifest = read_manifest(tmp_path, verify=True)
    assert manifest == written
    assert manifest.tokenizer.same_source(TOK)


def test_large_vocabulary_uses_int32(tmp_path: Path) -> None:
    assert codes_dtype(65536) == np.uint16 and codes_dtype(65537) == np.int32
    big = CodesTokenizer(codebook_size=70000, num_tokens=2)
    codes, _, _ = _make(tmp_path, sizes=(2,), crops=1, tokenizer=big)
    assert np.load(tmp_path / shard_files(0)[0]).dtype == np.int32
    ds = CodesDataset(tmp_path, crop=0)
    assert ds[1][0].tolist() == codes[1, 0].tolist()


def test_write_shard_rejects_ids_outside_vocabulary(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="code ids"):
        write_shard(tmp_path, 0, np.full((1, 1, 2), 16), np.zeros(1), codebook_size=16)


def test_dataset_items_fixed_crop_and_indices(tmp_path: Path) -> None:
    codes, labels, _ = _make(tmp_path)
    ds = CodesDataset(tmp_path, crop=2)
    assert len(ds) == 8 and ds.classes == ("a", "b", "c") and ds.num_tokens == 6
    for i in range(8):
        tokens, label = ds[i]
        assert tokens.dtype == torch.long and tokens.shape == (6,)
        assert tokens.tolist() == codes[i, 2].tolist() and label == labels[i]
    sub = CodesDataset(tmp_path, crop=0, indices=[7, 4, 5])
    assert len(sub) == 3
    assert [sub[j][1] for j in range(3)] == [labels[7], labels[4], labels[5]]
    assert sub[0][0].tolist() == codes[7, 0].tolist()
    with pytest.raises(IndexError):
        sub[3]


def test_random_crop_is_deterministic_per_epoch_and_covers_crops(tmp_path: Path) -> None:
    codes, _, _ = _make(tmp_path, sizes=(40, 24))
    ds = CodesDataset(tmp_path, seed=3)
    picks = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        chosen = [ds.crop_for(i) for i in range(len(ds))]
        for i in (0, 41, 63):
            assert ds[i][0].tolist() == codes[i, chosen[i]].tolist()
        picks.append(chosen)
    assert picks[0] != picks[1] and set(picks[0]) == {0, 1, 2, 3}
    again = CodesDataset(tmp_path, seed=3)
    again.set_epoch(1)
    assert [again.crop_for(i) for i in range(len(again))] == picks[1]
    other = CodesDataset(tmp_path, seed=4)
    assert [other.crop_for(i) for i in range(len(other))] != picks[0]


def test_dataset_pickles_without_mapped_arrays(tmp_path: Path) -> None:
    _make(tmp_path)
    ds = CodesDataset(tmp_path, crop=1)
    first = ds[6]
    clone = pickle.loads(pickle.dumps(ds))
    assert all(a is None for a in clone._arrays)
    assert clone[6][0].tolist() == first[0].tolist()
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1)
    batches = list(loader)
    assert batches[0][0].shape == (4, 6) and batches[1][1].tolist() == [ds[i][1] for i in range(4, 8)]


def test_bad_crop_and_indices(tmp_path: Path) -> None:
    _make(tmp_path)
    with pytest.raises(GigatokError, match="crop must be"):
        CodesDataset(tmp_path, crop=4)
    with pytest.raises(GigatokError, match="indices must lie"):
        CodesDataset(tmp_path, indices=[0, 8])


def test_missing_empty_and_half_written_folders_name_the_command(tmp_path: Path) -> None:
    with pytest.raises(GigatokError, match="does not exist") as err:
        read_manifest(tmp_path / "nope")
    assert "extract-codes" in err.value.hint
    with pytest.raises(GigatokError, match="holds no codes") as err:
        read_manifest(tmp_path)
    assert "extract-codes" in err.value.hint
    _make(tmp_path)
    (tmp_path / MANIFEST_NAME).unlink()
    with pytest.raises(GigatokError, match="did not finish") as err:
        read_manifest(tmp_path)
    assert "extract-codes" in err.value.hint and "resumes" in err.value.hint


def test_manifest_problems_are_reported(tmp_path: Path) -> None:
    _make(tmp_path)
    path = tmp_path / MANIFEST_NAME
    good = json.loads(path.read_text())
    (tmp_path / "shard-00001.labels.npy").rename(tmp_path / "moved.npy")
    with pytest.raises(GigatokError, match=r"shard-00001\.labels\.npy listed .* is missing"):
        read_manifest(tmp_path)
    (tmp_path / "moved.npy").rename(tmp_path / "shard-00001.labels.npy")
    path.write_text("{not json")
    with pytest.raises(GigatokError, match="not readable JSON"):
        read_manifest(tmp_path)
    path.write_text(json.dumps({**good, "format": 7}))
    with pytest.raises(GigatokError, match="format 7"):
        read_manifest(tmp_path)
    path.write_text(json.dumps({**good, "num_images": 9}))
    with pytest.raises(GigatokError, match="9 images but its shards hold 8"):
        read_manifest(tmp_path)
    bad = {**good, "tokenizer": {**good["tokenizer"], "num_tokens": 5}}
    path.write_text(json.dumps(bad))
    with pytest.raises(GigatokError, match=r"expected uint16\[5, 4, 5\]"):
        read_manifest(tmp_path)
    path.write_text(json.dumps(good))
    np.save(tmp_path / "shard-00000.labels.npy", np.arange(5, dtype=np.int32) + 1)
    read_manifest(tmp_path)  # headers fine
    with pytest.raises(GigatokError, match="does not match its sha256"):
        read_manifest(tmp_path, verify=True)


def test_scan_shard_finds_complete_shards_only(tmp_path: Path) -> None:
    _, _, manifest = _make(tmp_path)
    assert scan_shard(tmp_path, 0, crops=4, num_tokens=6) == manifest.shards[0]
    assert scan_shard(tmp_path, 0, crops=10, num_tokens=6) is None
    (tmp_path / "shard-00001.labels.npy").unlink()
    assert scan_shard(tmp_path, 1, crops=4, num_tokens=6) is None
    assert scan_shard(tmp_path, 2, crops=4, num_tokens=6) is None


def test_holdout_split() -> None:
    train, val = holdout_split(100, 0.05, seed=1)
    assert len(val) == 5 and len(train) == 95
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    assert holdout_split(100, 0.05, seed=1)[1].tolist() == val.tolist()
    assert holdout_split(100, 0.05, seed=2)[1].tolist() != val.tolist()
    with pytest.raises(GigatokError):
        holdout_split(1, 0.5)
    with pytest.raises(GigatokError):
        holdout_split(10, 0.0)
