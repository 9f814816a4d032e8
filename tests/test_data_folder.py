"""Image folders: ImageFolder labels and order, flat folders, unreadable images skipped and named."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gigatok_core.data.folder import ImageFolderDataset, Unreadable, image_folder, make_loader
from gigatok_core.data.transforms import CenterCrop
from gigatok_core.errors import GigatokError


def _png(path: Path, value: int, size: tuple[int, int] = (20, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


def test_tree_labels_follow_sorted_folders_and_torchvision_walk_order(tmp_path: Path) -> None:
    _png(tmp_path / "b" / "z.png", 10)
    _png(tmp_path / "b" / "a.png", 20)
    _png(tmp_path / "a" / "c.png", 30)
    _png(tmp_path / "a" / "sub" / "b.png", 40)  # os.walk: a/c.png (root) before a/sub/b.png
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(tmp_path, transform=CenterCrop(8))
    assert ds.classes == ("a", "b") and ds.has_labels
    assert [p.relative_to(tmp_path).as_posix() for p in ds.files] == [
        "a/c.png",
        "a/sub/b.png",
        "b/a.png",
        "b/z.png",
    ]
    assert ds.labels == [0, 0, 1, 1]
    x, y, _key = ds[2]
    assert x.shape == (3, 8, 8) and y == 1
    assert torch.allclose(x, torch.full_like(x, 20 / 127.5 - 1))


def test_flat_folder_has_no_labels_and_extract_needs_them(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / f"{i}.png", i)
    ds = ImageFolderDataset(tmp_path, transform=CenterCrop(8))
    assert len(ds) == 3 and ds.classes == () and not ds.has_labels and ds[0][1] == -1
    with pytest.raises(GigatokError, match="no class sub-folders") as err:
        ImageFolderDataset(tmp_path, transform=CenterCrop(8), require_labels=True, purpose="extract-codes")
    assert "extract-codes needs labels" in err.value.hint


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(GigatokError, match="holds no image"):
        ImageFolderDataset(tmp_path, transform=CenterCrop(8))
    (tmp_path / "cls").mkdir()
    with pytest.raises(GigatokError, match="hold no image"):
        ImageFolderDataset(tmp_path, transform=CenterCrop(8))
    with pytest.raises(GigatokError, match="not a folder"):
        ImageFolderDataset(tmp_path / "nope", transform=CenterCrop(8))


def test_image_folder_gpt_class_checks_still_apply(tmp_path: Path) -> None:
    for name in ("x", "y"):
        _png(tmp_path / name / "0.png", 1)
    with pytest.raises(GigatokError, match="2 class folders, the GPT 3 classes"):
        image_folder(tmp_path, 3)
    _files, labels, classes = image_folder(tmp_path, 3, class_subset=True)
    assert classes == ["x", "y"] and labels == [0, 1]
    from gigatok_core.evaluation import val_loss

    assert val_loss.image_folder is image_folder  # one implementation, imported by val-loss


def test_unreadable_images_are_skipped_and_named_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(5):
        _png(tmp_path / "c0" / f"{i}.png", 50 + i)
    (tmp_path / "c0" / "2.png").write_bytes(b"not a png")
    _png(tmp_path / "c1" / "thin.png", 9, size=(200, 2))  # too elongated to crop
    _png(tmp_path / "c1" / "ok.png", 99)
    ds = ImageFolderDataset(tmp_path, transform=CenterCrop(8))
    assert isinstance(ds[2], Unreadable) and "2.png" in ds[2].path
    loader = make_loader(ds, batch_size=3, workers=1, seed=0)
    with caplog.at_level(logging.WARNING, logger="gigatok"):
        for _ in range(2):  # two epochs: still named once
            batches = list(loader)
            labels = torch.cat([y for _, y in batches]).tolist()
            assert labels == [0, 0, 0, 0, 1]
            pixels = sorted(
                round(float(x[0, 0, 0, 0] * 127.5 + 127.5)) for x, _ in batches for x in x[:, None]
            )
            assert pixels == [50, 51, 53, 54, 99]
    warned = [r.getMessage() for r in caplog.records if "skipped an image" in r.getMessage()]
    assert len(warned) == 2 and any("2.png" in m for m in warned) and any("thin.png" in m for m in warned)
    thin = next(m for m in warned if "thin.png" in m)
    assert "too elongated" in thin and "unreadable" not in thin.split("thin.png")[1]  # named for what it is
    assert set(map(Path, loader.skipped)) == {tmp_path / "c0" / "2.png", tmp_path / "c1" / "thin.png"}


def test_make_loader_validates(tmp_path: Path) -> None:
    _png(tmp_path / "0.png", 1)
    ds = ImageFolderDataset(tmp_path, transform=CenterCrop(8))
    with pytest.raises(GigatokError):
        make_loader(ds, 0)
    loader = make_loader(ds, 2, workers=0, pin_memory=False)
    assert len(loader) == 1 and loader.dataset is ds


def test_augmentation_is_drawn_per_sample_whatever_the_workers(tmp_path: Path) -> None:
    """With a seed, sample i's crop and flip depend on (seed, epoch, i) only: 0 or 2 DataLoader
    workers, any order, give the same tensors and keys; another epoch or seed draws others (issue 17)."""
    from gigatok_core.data.draws import sample_key
    from gigatok_core.data.transforms import TrainAugment

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    ds = ImageFolderDataset(tmp_path, transform=TrainAugment(16), seed=3)
    ds.set_epoch(1)

    def batches(workers: int) -> tuple[torch.Tensor, list[int]]:
        loader = make_loader(ds, 2, workers=workers, sampler=[5, 0, 3, 1, 4, 2])
        raw = list(loader.loader)  # the collated ImageBatch objects
        return torch.cat([b.images for b in raw]), [k for b in raw for k in b.keys]

    (zero, keys0), (two, keys2) = batches(0), batches(2)
    assert torch.equal(zero, two)
    # each sample's key travels with it to the training step (the discriminator's draws)
    assert keys0 == keys2 == [sample_key(3, 1, i) for i in (5, 0, 3, 1, 4, 2)]
    assert torch.equal(zero[0], ds[5][0]) and torch.equal(zero[1], ds[0][0])  # not the position in the order
    ds.set_epoch(2)
    assert not torch.equal(torch.stack([ds[i][0] for i in (5, 0, 3, 1, 4, 2)]), zero)
