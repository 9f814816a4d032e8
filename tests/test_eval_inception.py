"""FID Inception: state_dict layout vs the fixture, TF1 resize vs numpy, output shapes, batch independence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.inception import FIDInception, load_fid_inception, tf1_resize_bilinear
from tests.conftest import fixture_path


def test_state_dict_layout_matches_fixture() -> None:
    spec = json.loads(fixture_path("fid_inception_keys.json").read_text())
    with torch.device("meta"):
        model = FIDInception()
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert len(got) == spec["num_entries"] == len(spec["state_dict"])
    assert got == spec["state_dict"]


def test_batchnorm_eps_and_pool_branches() -> None:
    with torch.device("meta"):
        model = FIDInception()
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.Mixed_7c.max_pool and not model.Mixed_7b.max_pool


def _numpy_tf1_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Independent reference: TF1 legacy ResizeBilinear, one output pixel at a time (float64)."""
    in_h, in_w = img.shape[:2]
    out = np.zeros((out_h, out_w, *img.shape[2:]), dtype=np.float64)
    for i in range(out_h):
        sy = i * (in_h / out_h)
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, in_h - 1)
        fy = sy - y0
        for j in range(out_w):
            sx = j * (in_w / out_w)
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, in_w - 1)
            fx = sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bot * fy
    return out


@pytest.mark.parametrize(("h", "w", "size"), [(9, 13, 17), (20, 11, 7), (6, 6, 6)])
def test_tf1_resize_matches_numpy_reference(h: int, w: int, size: int) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(h, w, 3)).astype(np.float64)
    ref = _numpy_tf1_resize(img, size, size)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    got = tf1_resize_bilinear(x, size)[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(got, ref, atol=2e-4)


def test_tf1_resize_is_not_half_pixel() -> None:
    """Guard against torch's align_corners=False (half-pixel) resize, which differs from TF1."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(1, 3, 1, 1)
    ours = tf1_resize_bilinear(x, 8)
    torchs = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
    assert not torch.allclose(ours, torchs)
    assert ours[0, 0, 0, 0] == 0 and ours[0, 0, 0, 1] == 0.5  # src = dst * 4/8, no offset


def _random_inception(seed: int = 0) -> FIDInception:
    torch.manual_seed(seed)
    model = FIDInception()
    for m in model.modules():  # non-trivial BN statistics so every layer matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def random_inception() -> FIDInception:
    return _random_inception()


def test_outputs_and_batch_size_independence(random_inception: FIDInception) -> None:
    from gigatok_core.evaluation.features import extract_features

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    one = extract_features(random_inception, [images[i : i + 1] for i in range(4)])
    four = extract_features(random_inception, [images])
    assert one.pool.shape == (4, 2048) and one.spatial.shape == (4, 2023) and one.logits.shape == (4, 1008)
    for a, b in ((one.pool, four.pool), (one.spatial, four.spatial), (one.logits, four.logits)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # logits are pool @ W^T with no bias
    w = random_inception.fc.weight.detach().numpy()
    np.testing.assert_allclose(one.logits, one.pool @ w.T, rtol=1e-4, atol=1e-4)
    assert (one.spatial >= 0).all()  # a ReLU output


def test_load_weights_file_strictly(tmp_path, random_inception: FIDInception) -> None:
    path = tmp_path / "inception.pth"
    sd = {k: v for k, v in random_inception.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, path)
    model = load_fid_inception(path)
    assert torch.equal(model.fc.weight, random_inception.fc.weight)
    torch.save({**sd, "AuxLogits.fc.weight": torch.zeros(3)}, path)
    with pytest.raises(GigatokError, match="unexpected"):
        load_fid_inception(path)


def test_missing_weights_file_is_actionable() -> None:
    with pytest.raises(GigatokError) as err:
        load_fid_inception(None)
    assert "pt_inception" in err.value.message and err.value.hint
