from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gigatok_core.data.images import (
    ImageReadError,
    center_crop_arr,
    list_images,
    load_image,
    read_image,
    save_npz,
    save_png,
    to_tensor,
    to_uint8,
    unique_stems,
)
from gigatok_core.errors import GigatokError


def _rgb(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_list_images_folders_globs_and_dedup(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    _rgb(8, 8).save(tmp_path / "a" / "x.png")
    _rgb(8, 8).save(tmp_path / "a" / "b" / "y.jpg")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    found = list_images([tmp_path / "a", str(tmp_path / "a" / "*.png")])
    assert [p.name for p in found] == ["y.jpg", "x.png"]  # recursive, sorted, txt ignored, duplicate dropped
    with pytest.raises(GigatokError, match="does not exist"):
        list_images([tmp_path / "missing.png"])
    with pytest.raises(GigatokError, match="matches no file"):
        list_images([str(tmp_path / "*.webp")])


def test_unique_stems_disambiguates() -> None:
    assert unique_stems([Path("a/x.png"), Path("b/x.jpg"), Path("c/y.png")]) == ["x", "x-1", "y"]
    # a generated name never equals a real stem, a reserved name or a case variant
    paths = [
        Path("a/same.png"),
        Path("b/same.png"),
        Path("c/same-1.png"),
        Path("d/Grid.png"),
        Path("e/SAME.png"),
    ]
    names = unique_stems(paths, reserved=["grid"])
    assert names == ["same", "same-1", "same-1-1", "Grid-1", "SAME-2"]
    assert len({n.casefold() for n in names}) == len(names)
    # bytes that are not UTF-8 in a file name become U+FFFD
    assert unique_stems([Path(os.fsdecode(b"x\xff.png"))]) == ["x\ufffd"]


def test_save_npz_takes_any_key(tmp_path: Path) -> None:
    arrays = {
        "file": np.arange(3),
        "allow_pickle": np.ones(2),
        "path": np.zeros((2, 2), np.int64),
        "a b": np.ones(1),
    }
    save_npz(tmp_path / "c.npz", arrays)
    with np.load(tmp_path / "c.npz") as z:
        assert sorted(z.files) == sorted(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(z[k], v)
            assert z[k].dtype == v.dtype


def test_glob_matching_folders_searches_them(tmp_path: Path) -> None:
    for cls in ("n01", "n02"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "val" / cls / "x.JPEG")
    found = list_images([str(tmp_path / "val" / "*")])
    assert [p.parent.name for p in found] == ["n01", "n02"]


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "1", "YCbCr"])
def test_modes_convert_to_rgb(tmp_path: Path, mode: str) -> None:
    img = _rgb(16, 12).convert(mode)
    path = tmp_path / f"img.{'tiff' if mode == 'CMYK' else 'png' if mode != 'YCbCr' else 'jpg'}"
    img.save(path)
    out = read_image(path)
    assert out.mode == "RGB" and out.size == (16, 12)


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    Image.fromarray(arr, "RGBA").save(tmp_path / "t.png")
    assert (np.asarray(read_image(tmp_path / "t.png")) == 255).all()


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path: Path) -> None:
    arr = np.full((4, 4), 32768, dtype=np.uint16)  # mid grey in 16 bits
    Image.fromarray(arr).save(tmp_path / "g16.png")
    out = np.asarray(read_image(tmp_path / "g16.png"))
    assert abs(int(out[0, 0, 0]) - 128) <= 1


def test_corrupt_and_truncated_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"definitely not a png")
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")
    _rgb(64, 64).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.jpg"):
        read_image(tmp_path / "cut.jpg")


def test_adm_center_crop_follows_the_official_rule() -> None:
    img = _rgb(1100, 600)  # short side 600 >= 512: one BOX halving to 550x300, then bicubic to 469x256
    out = center_crop_arr(img, 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    half = img.resize((550, 300), resample=Image.Resampling.BOX)
    scaled = np.asarray(half.resize((round(550 * 256 / 300), 256), resample=Image.Resampling.BICUBIC))
    left = (scaled.shape[1] - 256) // 2
    np.testing.assert_array_equal(out, scaled[:, left : left + 256])
    # an image already at the target size passes through unchanged
    same = _rgb(256, 256, seed=3)
    np.testing.assert_array_equal(center_crop_arr(same, 256), np.asarray(same))


def test_pixels_tensor_round_trip_is_exact() -> None:
    u8 = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = to_tensor(u8)
    assert x.shape == (2, 3, 8, 8) and float(x.min()) >= -1 and float(x.max()) <= 1
    np.testing.assert_array_equal(to_uint8(x), u8)


def test_save_png_is_atomic_and_loadable(tmp_path: Path) -> None:
    pix = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save_png(tmp_path / "sub" / "o.png", pix)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["o.png"]  # no temp file left
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "sub" / "o.png").stat().st_mode & 0o777 == 0o666 & ~mask
    np.testing.assert_array_equal(load_image(tmp_path / "sub" / "o.png", 8), pix)


def test_extremely_elongated_images_are_refused_not_upscaled(tmp_path: Path) -> None:
    Image.new("RGB", (20000, 2)).save(tmp_path / "strip.png")
    with pytest.raises(ImageReadError, match="too elongated"):
        load_image(tmp_path / "strip.png", 256)
    Image.new("RGB", (640, 20)).save(tmp_path / "wide.png")  # 32:1 still works
    assert load_image(tmp_path / "wide.png", 256).shape == (256, 256, 3)


@pytest.mark.parametrize(
    ("values", "mode", "want"),
    [
        ([0.0, 0.5, 1.0], "F", [0, 128, 255]),  # [0, 1] floats
        ([0.0, 128.0, 255.0], "F", [0, 128, 255]),  # [0, 255] floats
        ([0.0, 500.0, 1000.0], "F", [0, 128, 255]),  # beyond: stretched, not clipped to white
        ([-1.0, 0.0, 1.0], "F", [0, 128, 255]),  # negative: stretched, not clipped to black
        ([0, 300, 65535], "I", [0, 1, 255]),  # 16-bit range in a 32-bit image
        ([0, 1000, 70000], "I", [0, 4, 255]),  # beyond 16 bits: stretched
    ],
)
def test_float_and_32bit_images_keep_their_contrast(values: list, mode: str, want: list) -> None:
    from gigatok_core.data.images import to_rgb

    dtype = np.float32 if mode == "F" else np.int32
    img = Image.fromarray(np.array([values], dtype=dtype), mode)
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == want
