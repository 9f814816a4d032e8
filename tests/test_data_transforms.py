"""Official augmentation arithmetic: ADM random crop, centre crop, ten-crop (docs/recipes.md#loop-and-data, #gpt)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from gigatok_core.data.images import to_tensor
from gigatok_core.data.transforms import (
    CenterCrop,
    CenterFlip,
    TenCrop,
    TrainAugment,
    center_crop_arr,
    random_crop_arr,
    ten_crop_arr,
)


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


class Scripted(random.Random):
    """Returns the scripted values from randrange and records the ranges asked for."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values, self.asked = list(values), []

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        self.asked.append((start, stop))
        return self.values.pop(0)


def test_random_crop_arr_steps_match_direct_pil_calls() -> None:
    img = _image(1100, 800)
    rng = Scripted([300, 5, 100])
    got = random_crop_arr(img, 256, rng=rng)
    # short side drawn from [ceil(256/1.0), ceil(256/0.8)] = [256, 320]; then crop rows/cols
    assert rng.asked == [(256, 321), (300 - 256 + 1, None), (412 - 256 + 1, None)]
    # 800 >= 2*300: one BOX halving to 550x400; 400 < 600 stops; BICUBIC to round(550*0.75)=412 x 300
    direct = img.resize((550, 400), Image.Resampling.BOX).resize((412, 300), Image.Resampling.BICUBIC)
    expect = np.asarray(direct)[5 : 5 + 256, 100 : 100 + 256]
    assert got.shape == (256, 256, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expect)


def test_random_crop_arr_without_halving_and_draw_bounds() -> None:
    img = _image(400, 500, seed=1)
    got = random_crop_arr(img, 256, rng=Scripted([256, 0, 144]))
    direct = img.resize((256, 320), Image.Resampling.BICUBIC)  # 400 < 512: no BOX step
    np.testing.assert_array_equal(got, np.asarray(direct)[0:256, 144:400])
    rng = Scripted([20, 0, 0])
    random_crop_arr(_image(64, 64), 16, 0.5, 0.8, rng=rng)
    assert rng.asked[0] == (20, 33)  # [ceil(16/0.8), ceil(16/0.5)] inclusive


def test_center_crop_is_the_images_module_one() -> None:
    from gigatok_core.data import images

    assert center_crop_arr is images.center_crop_arr
    out = CenterCrop(32)(_image(80, 50))
    np.testing.assert_array_equal(
        out.numpy(), to_tensor(images.center_crop_arr(_image(80, 50), 32)[None])[0].numpy()
    )


def test_ten_crop_positions_and_order() -> None:
    arr = np.random.default_rng(2).integers(0, 256, (281, 281, 3), dtype=np.uint8)
    crops = ten_crop_arr(arr, 256)
    assert crops.shape == (10, 256, 256, 3)
    np.testing.assert_array_equal(crops[0], arr[:256, :256])  # top-left
    np.testing.assert_array_equal(crops[1], arr[:256, 25:])  # top-right
    np.testing.assert_array_equal(crops[2], arr[25:, :256])  # bottom-left
    np.testing.assert_array_equal(crops[3], arr[25:, 25:])  # bottom-right
    np.testing.assert_array_equal(crops[4], arr[12:268, 12:268])  # centre: round(12.5) = 12
    mirror = arr[:, ::-1]
    np.testing.assert_array_equal(crops[5], mirror[:256, :256])
    np.testing.assert_array_equal(crops[5], crops[1][:, ::-1])  # mirror's top-left = flipped top-right
    np.testing.assert_array_equal(crops[9], mirror[12:268, 12:268])


def test_ten_crop_transform_uses_the_1_1x_centre_crop() -> None:
    img = _image(300, 400, seed=3)
    out = TenCrop(32, 1.1)(img)
    assert out.shape == (10, 3, 32, 32) and out.dtype == torch.float32
    big = center_crop_arr(img, 35)  # int(32 * 1.1)
    expect = to_tensor(ten_crop_arr(big, 32))
    torch.testing.assert_close(out, expect)
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    with pytest.raises(ValueError):
        TenCrop(32, 0.9)


def test_center_flip_is_the_crop_and_its_mirror() -> None:
    out = CenterFlip(16)(_image(50, 30, seed=4))
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out[1], out[0].flip(-1))


def test_train_augment_is_seeded_and_flips_about_half() -> None:
    img = _image(40, 30, seed=5)
    aug = TrainAugment(16)
    random.seed(7)
    a = [aug(img) for _ in range(4)]
    random.seed(7)
    b = [aug(img) for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape == (3, 16, 16)
    # the flip decision is the draw after the crop's three: replay it with the same stream
    random.seed(11)
    flips = 0
    for _ in range(200):
        state = random.getstate()
        out = aug(img)
        replay = random.Random()
        replay.setstate(state)
        crop = random_crop_arr(img, 16, rng=replay)
        flipped = replay.random() < 0.5
        flips += flipped
        expect = to_tensor((crop[:, ::-1] if flipped else crop)[None])[0]
        torch.testing.assert_close(out, expect)
    assert 60 < flips < 140
