"""Statistics files: npz round trip, no silent overwrite, protocol guard, streaming npz reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.features import Features, iter_npz_images, npz_image_count, rebatch
from gigatok_core.evaluation.reference import (
    EvalStats,
    check_protocol,
    detect_protocol,
    load_statistics,
    save_statistics,
)


def _stats(n: int = 6, seed: int = 0, protocol: str | None = "rfid-imagenet-val") -> EvalStats:
    rng = np.random.default_rng(seed)
    feats = Features(
        pool=rng.normal(size=(n, 5)).astype(np.float32),
        spatial=rng.normal(size=(n, 3)).astype(np.float32),
        logits=rng.normal(size=(n, 4)).astype(np.float32),
    )
    return EvalStats.from_features(feats, protocol=protocol, meta={"image_size": 256})


def test_statistics_round_trip(tmp_path) -> None:
    st = _stats()
    path = save_statistics(tmp_path / "ref.npz", st)
    with np.load(path) as z:
        assert {"mu", "sigma", "mu_s", "sigma_s", "pool", "gigatok_protocol", "gigatok_meta"} <= set(z.files)
        assert z["sigma"].dtype == np.float64
        assert json.loads(str(z["gigatok_meta"]))["count"] == 6
    back = load_statistics(path)
    np.testing.assert_array_equal(back.pool_stats.mu, st.pool_stats.mu)
    np.testing.assert_array_equal(back.pool_stats.sigma, st.pool_stats.sigma)
    np.testing.assert_array_equal(back.spatial_stats.sigma, st.spatial_stats.sigma)
    np.testing.assert_array_equal(back.pool, st.pool)
    assert back.protocol == "rfid-imagenet-val" and back.count == 6 and back.meta["image_size"] == 256
    assert back.logits is None  # IS is a property of samples, not stored in references


def test_statistics_never_overwritten_silently(tmp_path) -> None:
    path = save_statistics(tmp_path / "ref.npz", _stats(seed=0))
    with pytest.raises(GigatokError, match="already exists") as err:
        save_statistics(path, _stats(seed=1))
    assert "--overwrite" in err.value.hint
    save_statistics(path, _stats(seed=1), overwrite=True)
    np.testing.assert_array_equal(load_statistics(path).pool_stats.mu, _stats(seed=1).pool_stats.mu)


def test_adm_style_file_without_metadata(tmp_path) -> None:
    path = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    np.savez(path, mu=np.zeros(3), sigma=np.eye(3), mu_s=np.zeros(2), sigma_s=np.eye(2))
    st = load_statistics(path)
    assert st.protocol == "gfid-adm" and st.pool is None
    with pytest.raises(GigatokError, match="no mu/sigma"):
        np.savez(tmp_path / "x.npz", arr_0=np.zeros((1, 2, 2, 3), np.uint8))
        load_statistics(tmp_path / "x.npz")


def test_protocol_guard(tmp_path) -> None:
    adm = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    np.savez(adm, mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(GigatokError) as err:
        check_protocol(adm, "rfid-imagenet-val")
    assert "gfid-adm" in err.value.message and "rfid-imagenet-val" in err.value.message
    assert "--force" in err.value.hint and "build-ref" in err.value.hint
    assert check_protocol(adm, "rfid-imagenet-val", force=True) == "gfid-adm"
    assert check_protocol(adm, "gfid-adm") == "gfid-adm"
    # metadata wins over the name
    val = save_statistics(tmp_path / "val.npz", _stats(protocol="rfid-imagenet-val"))
    assert detect_protocol(val) == "rfid-imagenet-val"
    with pytest.raises(GigatokError):
        check_protocol(val, "gfid-adm")
    plain = save_statistics(tmp_path / "plain.npz", _stats(protocol=None))
    assert detect_protocol(plain) is None and check_protocol(plain, "gfid-adm") is None


def test_npz_images_streamed_in_batches(tmp_path) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(7, 5, 4, 3), dtype=np.uint8)
    for compress, name in ((np.savez, "a.npz"), (np.savez_compressed, "b.npz")):
        compress(tmp_path / name, arr_0=imgs)
        parts = list(iter_npz_images(tmp_path / name, batch_size=3))
        assert [len(p) for p in parts] == [3, 3, 1]
        np.testing.assert_array_equal(np.concatenate(parts), imgs)
        assert npz_image_count(tmp_path / name) == 7
    np.savez(tmp_path / "f.npz", arr_0=imgs.astype(np.float32))
    with pytest.raises(GigatokError, match="uint8"):
        list(iter_npz_images(tmp_path / "f.npz", 2))


def test_rebatch_splits_on_size_change() -> None:
    imgs = [np.zeros((4, 4, 3), np.uint8)] * 3 + [np.zeros((6, 6, 3), np.uint8)] * 2
    assert [b.shape for b in rebatch(imgs, 2)] == [(2, 4, 4, 3), (1, 4, 4, 3), (2, 6, 6, 3)]
