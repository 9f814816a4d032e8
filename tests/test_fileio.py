"""Atomic writers and self-describing weight files: nothing half-written, usual permissions."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest
import torch

from gigatok_core.checkpoints.files import read_weights_meta, save_weights
from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.reference import ImageNpz
from gigatok_core.utils.fileio import (
    atomic_path,
    atomic_write,
    sha256_file,
    write_bytes_atomic,
    write_json,
    write_npz,
)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_an_exception_leaves_the_old_file_and_no_temp(tmp_path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_path_on_exception_leaves_nothing(tmp_path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "w.safetensors") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_0644_under_umask_022(tmp_path, umask_022) -> None:
    write_bytes_atomic(tmp_path / "a.bin", b"x")
    write_npz(tmp_path / "a.npz", {"x": np.zeros(2)})
    save_weights(tmp_path / "w.safetensors", {"w": torch.zeros(2)}, {"kind": "gpt"})
    with ImageNpz(tmp_path / "images.npz", 1, 4) as npz:
        npz.add_image(np.zeros((4, 4, 3), np.uint8))
    for name in ("a.bin", "a.npz", "w.safetensors", "images.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_write_json_refuses_nan_and_keeps_the_old_file(tmp_path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"fid": 1.5})
    with pytest.raises(ValueError):
        write_json(target, {"fid": math.nan})
    assert json.loads(target.read_text()) == {"fid": 1.5}
    assert target.read_text().endswith("\n") and _leftovers(tmp_path) == []


def test_write_npz_takes_any_key(tmp_path) -> None:
    # np.savez(file, **arrays) breaks on these names; the member-by-member writer does not.
    arrays = {"file": np.arange(3), "allow_pickle": np.ones(2, np.float32), "arr_0": np.zeros((1, 2))}
    write_npz(tmp_path / "x.npz", arrays)
    with np.load(tmp_path / "x.npz") as z:
        assert sorted(z.files) == sorted(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(z[key], value)


def test_image_npz_with_too_few_images_leaves_nothing(tmp_path) -> None:
    with pytest.raises(GigatokError, match="wrote 1 of 2"), ImageNpz(tmp_path / "s.npz", 2, 4) as npz:
        npz.add_image(np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_sha256_file(tmp_path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_save_weights_round_trip(tmp_path) -> None:
    base = torch.arange(6.0).reshape(2, 3)
    tensors = {"a": base, "b": base.t(), "c": base[0]}  # shared storage and a non-contiguous view
    meta = {"kind": "tokenizer", "preset": "tiny", "config": {"codebook_size": 1024}}
    path = tmp_path / "w.safetensors"
    save_weights(path, tensors, meta)
    got = read_weights_meta(path)
    assert got is not None and got["format"] == 1 and "gigatok_version" in got
    assert {k: got[k] for k in meta} == meta
    from safetensors.torch import load_file

    loaded = load_file(str(path))
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value)


def test_read_weights_meta_of_foreign_and_broken_files(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    assert read_weights_meta(tmp_path / "foreign.safetensors") is None
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(GigatokError, match="not a readable safetensors file"):
        read_weights_meta(tmp_path / "broken.safetensors")
