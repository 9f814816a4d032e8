"""Image folders as datasets: an ImageFolder tree (labels) or a flat folder (no labels).

Labels follow torchvision's ``ImageFolder`` as the official code uses it (docs/recipes.md#gpt): class =
index of the sub-folder in sorted name order; files are walked per class in ``sorted(os.walk)``
order with sorted file names, so image ``i`` is ImageFolder's image ``i``. Decoding and augmentation
run in DataLoader workers; an unreadable image is skipped (never ending a run) and named once, in
the main process, by the loader :func:`make_loader` returns.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from gigatok_core.data.draws import sample_key
from gigatok_core.data.images import IMAGE_EXTENSIONS, MAX_ASPECT, ImageReadError, read_image
from gigatok_core.errors import GigatokError

log = logging.getLogger("gigatok")

Transform = Callable[[Image.Image], torch.Tensor]


# ---------------------------------------------------------------------------- listing
def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` in torchvision's order: sorted(os.walk), then sorted names."""
    found = []
    for root, _dirs, names in sorted(os.walk(folder, followlinks=True)):
        found += [Path(root) / n for n in sorted(names) if _is_image(n)]
    return found


def find_classes(root: Path, *, purpose: str) -> list[str]:
    """The class folder names of an ImageFolder tree, sorted (label = position); hidden ones skipped."""
    if not root.is_dir():
        raise GigatokError(
            f"--data {root} is not a folder",
            hint="pass an ImageFolder tree: one sub-folder per class (e.g. ImageNet in n0xxxxxxx/)",
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise GigatokError(
            f"{root} has no class sub-folders",
            hint=f"{purpose} needs labels: put each class's images in its own sub-folder "
            "(sorted folder names -> labels 0, 1, ...)",
        )
    return classes


def image_folder(
    root: str | Path,
    max_classes: int | None = None,
    *,
    class_subset: bool = False,
    purpose: str = "val-loss",
) -> tuple[list[Path], list[int], list[str]]:
    """(files, labels, class folder names) of an ImageFolder tree: sorted folder names -> labels.

    With ``max_classes`` (a GPT's classes), every class needs its folder or labels would silently
    shift; ``class_subset`` accepts fewer, taken as the first classes in order. An empty class
    folder keeps its label (noted, not an error). ``purpose`` names the command in messages.
    """
    root = Path(root)
    classes = find_classes(root, purpose=purpose)
    if max_classes is not None and len(classes) > max_classes:
        raise GigatokError(
            f"{root} has {len(classes)} class folders but the GPT knows {max_classes} classes",
            hint="point --data at the class folders of the GPT's dataset (ImageNet: 1000)",
        )
    if max_classes is not None and len(classes) < max_classes and not class_subset:
        raise GigatokError(
            f"{root} has {len(classes)} class folders, the GPT {max_classes} classes: labels come from the "
            f"sorted folder names, so they would not be the GPT's classes",
            hint=f"point --data at all {max_classes} class folders (ImageNet val: 1000 n0xxxxxxx/ folders), "
            "or pass --class-subset if these folders are the first classes, in order",
        )
    files: list[Path] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(classes):
        found = _walk_images(root / name)
        if not found:
            empty.append(name)
        files += found
        labels += [label] * len(found)
    if not files:
        raise GigatokError(
            f"the class folders of {root} hold no image", hint=f"extensions: {' '.join(IMAGE_EXTENSIONS)}"
        )
    if empty:
        log.info(
            "%d class folder(s) hold no image (first: %s); they keep their labels",
            len(empty),
            root / empty[0],
        )
    return files, labels, classes


def flat_folder(root: str | Path) -> list[Path]:
    """The images of a folder without class sub-folders (recursively, sorted as torchvision walks)."""
    root = Path(root)
    files = _walk_images(root) if root.is_dir() else []
    if not files:
        raise GigatokError(
            f"{root} holds no image" if root.is_dir() else f"--data {root} is not a folder",
            hint=f"pass a folder of images (extensions: {' '.join(IMAGE_EXTENSIONS)}) or class sub-folders",
        )
    return files


# ---------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class Unreadable:
    """What a dataset item is when its image cannot be decoded (dropped by :func:`collate_skip`)."""

    path: str
    reason: str


class ImageFolderDataset(Dataset):
    """Images of an ImageFolder tree (label = sorted class index) or a flat folder (label -1).

    Items are ``(transform(image), label, key)``, or :class:`Unreadable` for a file that does not decode
    (or is over :data:`~gigatok_core.data.images.MAX_ASPECT` times longer than wide). ``require_labels``
    refuses a folder without class sub-folders, naming ``purpose`` (the command that needs labels).

    With a ``seed``, sample ``i``'s key is :func:`~gigatok_core.data.draws.sample_key` (seed, epoch,
    i) (else None), and a random transform (one with ``takes_rng``) draws from the generator seeded
    with it: the same augmentation whatever the worker, the number of workers or processes, or the
    step a run resumed at. The key travels in the batch (:attr:`ImageBatch.keys`) for the training
    step's own draws. Call :meth:`set_epoch` before each epoch (workers copy the dataset when a
    DataLoader iterator starts: no ``persistent_workers``).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        transform: Transform,
        require_labels: bool = False,
        purpose: str = "training",
        seed: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise GigatokError(f"--data {self.root} is not a folder", hint="pass a folder of images")
        has_classes = any(p.is_dir() and not p.name.startswith(".") for p in self.root.iterdir())
        if has_classes or require_labels:
            self.files, self.labels, classes = image_folder(self.root, purpose=purpose)
            self.classes: tuple[str, ...] = tuple(classes)
        else:
            self.files = flat_folder(self.root)
            self.labels = [-1] * len(self.files)
            self.classes = ()
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def has_labels(self) -> bool:
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int | None] | Unreadable:
        path = self.files[i]
        key = sample_key(self.seed, self.epoch, i) if self.seed is not None else None
        try:
            img = read_image(path)
            if max(img.size) > MAX_ASPECT * min(img.size):
                raise ImageReadError(f"{path} is {img.size[0]}x{img.size[1]}: too elongated to crop")
            if key is not None and getattr(self.transform, "takes_rng", False):
                return self.transform(img, rng=random.Random(key)), self.labels[i], key
            return self.transform(img), self.labels[i], key
        except ImageReadError as err:
            return Unreadable(str(path), err.message)


def _check_item(path: Path) -> None:
    """Raise :class:`ImageReadError` when ``path`` is not an image the datasets can use."""
    img = read_image(path)
    if max(img.size) > MAX_ASPECT * min(img.size):
        raise ImageReadError(f"{path} is {img.size[0]}x{img.size[1]}: too elongated to crop")


def _kind_of_failure(message: str) -> str:
    if "too elongated" in message:
        return f"too elongated (over {MAX_ASPECT}:1)"
    if "decompression bomb" in message.lower() or "exceeds limit" in message:
        return "too large to decode"
    return "not an image or corrupt"


def require_readable(dataset: ImageFolderDataset, *, command: str) -> None:
    """Refuse a data folder none of whose image files decodes (before any work is done).

    Reads files in order and stops at the first good one (normally the first file), so a usable
    folder costs one decode; a folder of only unreadable files is refused naming the folder, how
    many files failed, why (grouped) and the first failure.
    """
    kinds: dict[str, int] = {}
    first = ""
    for path in dataset.files:
        try:
            _check_item(path)
            return
        except ImageReadError as err:
            kinds[_kind_of_failure(err.message)] = kinds.get(_kind_of_failure(err.message), 0) + 1
            first = first or err.message
    why = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    raise GigatokError(
        f"--data {dataset.root}: none of its {len(dataset.files)} image files can be read ({why}); "
        f"first: {first}",
        hint=f"{command} needs readable images (JPEG, PNG, ...): check the folder, or convert the files",
    )


@dataclass
class ImageBatch:
    """A collated batch: images (B, ...), labels (B,); ``skipped``: this batch's unreadable files;
    ``keys``: the images' sample keys (64-bit ints, in row order), None for a dataset without seed."""

    images: torch.Tensor
    labels: torch.Tensor
    skipped: list[Unreadable]
    keys: tuple[int, ...] | None = None

    def pin_memory(self) -> ImageBatch:  # called by DataLoader(pin_memory=True)
        return ImageBatch(self.images.pin_memory(), self.labels.pin_memory(), self.skipped, self.keys)


def collate_skip(items: Sequence[tuple[torch.Tensor, int, int | None] | Unreadable]) -> ImageBatch:
    """Stack the readable items; keep the unreadable ones aside (runs in the worker)."""
    good = [it for it in items if not isinstance(it, Unreadable)]
    bad = [it for it in items if isinstance(it, Unreadable)]
    if not good:
        return ImageBatch(torch.empty(0), torch.empty(0, dtype=torch.long), bad, ())
    images = torch.stack([it[0] for it in good])  # (B, ...)
    labels = torch.tensor([it[1] for it in good], dtype=torch.long)  # (B,)
    keys = tuple(it[2] for it in good)
    return ImageBatch(images, labels, bad, None if None in keys else keys)


class ImageLoader:
    """Iterates ``(images, labels)`` from a DataLoader over an :class:`ImageFolderDataset`.

    Unreadable images are dropped from their batch and named once (a warning on the ``gigatok``
    logger, in the main process); a batch with no readable image is skipped. Under DDP a shorter
    batch is fine, but a skipped whole batch would leave ranks one step apart: keep batches > 1.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.skipped: dict[str, str] = {}  # path -> reason, every unreadable file seen so far

    @property
    def dataset(self) -> Dataset:
        return self.loader.dataset

    @property
    def sampler(self) -> Sampler | None:
        return self.loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            for bad in batch.skipped:
                if bad.path not in self.skipped:
                    self.skipped[bad.path] = bad.reason
                    log.warning("skipped an image: %s", bad.reason)  # unreadable, or too elongated to crop
            if batch.labels.numel():
                yield batch.images, batch.labels


MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """DataLoader workers that fit this machine: one core per process is left for the main loop,
    at most 4 (2 cores: 1 worker, not 4, which PyTorch warns about), shared by the local processes
    of a torchrun launch (``LOCAL_WORLD_SIZE``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(0, min(MAX_DEFAULT_WORKERS, cpus // local - 1))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    sampler: Sampler | None = None,
    workers: int | None = None,
    pin_memory: bool = False,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int | None = None,
) -> ImageLoader:
    """A DataLoader decoding in ``workers`` processes (default: :func:`default_workers`), dropping
    and naming unreadable images.

    ``sampler`` (e.g. the distributed epoch sampler) wins over ``shuffle``; ``seed`` seeds the
    loader's generator (worker seeds, and with it the augmentation).
    """
    if batch_size < 1:
        raise GigatokError(f"batch size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise GigatokError(f"workers must be >= 0, got {workers}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=shuffle if sampler is None else False,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        collate_fn=collate_skip,
        generator=generator,
        persistent_workers=False,
    )
    return ImageLoader(loader)
