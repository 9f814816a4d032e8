"""gFID of a GPT: sample class-balanced images with the sampler, then score them against ADM's batch.

Protocol differences from the official ``sample_c2i_cfg_search.py`` (docs/evaluation.md#generation), stated so
numbers are read correctly: labels are class-balanced (``num_per_class`` per class, 50 -> 50k)
instead of uniform-random ``torch.randint`` labels, and each image is seeded from
(seed, class, index) by :func:`gigatok_core.tasks.sample.sample_images` (resumable, world-size
independent). The evaluator is ours (same Inception weights and metric definitions as ADM's).

Under torchrun the sampling is sharded by ``sample_images``; after it (a collective, so every
rank has finished) only rank 0 reads the PNGs, scores them and writes the optional npz.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gigatok_core import dist
from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.evaluate import Evaluator, compute_metrics
from gigatok_core.evaluation.reference import EvalStats, ImageNpz, check_protocol

PROTOCOL = "gfid-adm"
NUM_CLASSES = 1000
IMAGE_SIZE = 256  # ADM's batch and the npz are 256 x 256


def default_reference() -> Path:
    """ADM's ImageNet-256 batch from the cache (``gigatok download VIRTUAL_imagenet256_labeled.npz``)."""
    from gigatok_core.hub import fetch_weights

    return fetch_weights("VIRTUAL_imagenet256_labeled.npz")


def sample_paths(
    output: str | Path, classes: Sequence[int], num_per_class: int, names: Sequence[str] | None = None
) -> list[Path]:
    """The PNGs of a run in scoring order: sample index first, then class (k=0 of every class, k=1 ...).

    The order matters for the Inception Score, which ADM computes over consecutive splits of 5000:
    in class order each split would see only 100 classes and the IS would come out far too low
    (the official script's labels are uniform-random, so its splits mix all classes). The npz of
    ``--save-npz`` uses the same order. ``names``: the GPT's own class names (see
    :func:`gigatok_core.tasks.sample_output.plan`).
    """
    from gigatok_core.tasks.sample import SampleItem

    return [
        Path(output) / f"{SampleItem(c, k, names[c] if names is not None else None).stem}.png"
        for k in range(num_per_class)
        for c in dict.fromkeys(classes)
    ]


def evaluate_generation(
    gpt: str,
    *,
    output: str | Path,
    evaluator: Evaluator,
    reference: str | Path | None = None,
    tokenizer: str | None = None,
    num_per_class: int = 50,
    num_classes: int = NUM_CLASSES,
    save_npz: str | Path | None = None,
    force: bool = False,
    overwrite: bool = False,
    regenerate: bool = False,
    with_precision_recall: bool = True,
    ctx: dist.DistContext | None = None,
    **sample_kwargs: Any,
) -> dict[str, Any] | None:
    """Sample ``num_per_class`` x ``num_classes`` images into ``output`` (existing ones are kept), score them.

    Returns the metrics on the main rank, ``None`` on the others. ``num_classes`` < 1000 keeps
    the first classes only (smoke runs). ``save_npz`` also writes the ADM-style sample batch
    (``arr_0`` uint8 (N, 256, 256, 3), in :func:`sample_paths` order). ``sample_kwargs`` go to
    :func:`gigatok_core.tasks.sample.sample_images` (cfg, sampling, seed, precision, batch_size,
    device, checkpoints, on_progress); ``overwrite`` replaces an existing npz, ``regenerate`` samples
    again instead of reusing the PNGs already in ``output``. ``ctx``: the ranks (default: this
    process's :func:`gigatok_core.dist.get_context`, created by the sampler).
    """
    if not 1 <= num_classes <= NUM_CLASSES:
        raise GigatokError(f"--num-classes must lie in 1..{NUM_CLASSES}, got {num_classes}")
    npz_path = Path(save_npz) if save_npz is not None else None
    if npz_path is not None and npz_path.exists() and not overwrite:
        raise GigatokError(
            f"{npz_path} already exists", hint="pass --overwrite to replace it, or choose another --save-npz"
        )
    reference = Path(reference) if reference is not None else default_reference()
    check_protocol(reference, PROTOCOL, force=force)  # before hours of sampling
    from gigatok_core.tasks.sample import sample_images

    classes = list(range(num_classes))
    sample_images(
        classes,
        output=output,
        gpt=gpt,
        tokenizer=tokenizer,
        num_per_class=num_per_class,
        overwrite=regenerate,
        ctx=ctx,
        **sample_kwargs,
    )
    if not (ctx or dist.get_context(init=False)).is_main:
        return None  # sample_images ends with a collective: every PNG exists once rank 0 gets here
    from gigatok_core.tasks.sample_output import read_previous

    names = read_previous(Path(output)).get("run_class_names")  # the file names the sampler used
    paths = sample_paths(output, classes, num_per_class, names)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise GigatokError(
            f"{len(missing)} samples are missing (first: {missing[0]})",
            hint="a rank may have failed; run the same command again to resume",
        )
    if npz_path is not None:
        write_sample_npz(paths, npz_path)
    samples = EvalStats.from_features(
        evaluator.folder_features(paths, label="samples"), meta={"source": str(output)}
    )
    ref = evaluator.load(reference, need_features=with_precision_recall, label="reference")
    metrics = compute_metrics(
        samples, ref, with_precision_recall=with_precision_recall, device=evaluator.device
    )
    metrics |= {
        "protocol": PROTOCOL,
        "reference": str(reference),
        "num_per_class": num_per_class,
        "num_classes": num_classes,
        "samples_dir": str(output),
        "npz": str(npz_path) if npz_path is not None else None,
    }
    return metrics


# ---------------------------------------------------------------------------------------------
# ADM sample batch
# ---------------------------------------------------------------------------------------------
def write_sample_npz(
    paths: Sequence[Path],
    path: str | Path,
    *,
    image_size: int = IMAGE_SIZE,
    on_image: Callable[[int], None] | None = None,
) -> Path:
    """Pack PNGs into ``path`` as ADM's evaluator reads them: ``arr_0`` uint8 (N, S, S, 3), in order.

    Streamed image by image (:class:`~gigatok_core.evaluation.reference.ImageNpz`: atomic, 50k
    images never sit in memory at once). Every image must already be S x S RGB.
    """
    from gigatok_core.data.images import read_image

    with ImageNpz(path, len(paths), image_size) as npz:
        for i, p in enumerate(paths):
            img = np.asarray(read_image(p), dtype=np.uint8)  # (S, S, 3)
            if img.shape != (image_size, image_size, 3):
                raise GigatokError(
                    f"{p} is {img.shape[1]}x{img.shape[0]}, expected {image_size}x{image_size}",
                    hint="ADM's evaluator batch holds 256x256 RGB images",
                )
            npz.add_image(img)
            if on_image:
                on_image(i + 1)
    return Path(path)
