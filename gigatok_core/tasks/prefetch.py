"""Fetch, before a multi-process run starts, every file the run will read.

The launcher (``gigatok ... --nproc-per-node N``) calls these in the parent process: presets are
resolved and checked, and each checkpoint or auxiliary file is downloaded into the cache once, with
progress bars. The workers then start with the cache filled and ``GIGATOK_OFFLINE=1``, so they only
read it. A local file given on the command line is checked to exist and never fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gigatok_core.errors import GigatokError

VGG_WEIGHTS = "vgg16-397923af.pth"  # LPIPS backbone (gigatok_core.tasks.image_metrics)
ADM_REFERENCE = "VIRTUAL_imagenet256_labeled.npz"  # gFID reference batch (evaluation.generation)
INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"  # FID Inception (evaluation.inception)


def _local(path: str | Path | None, option: str) -> bool:
    """True when a local file replaces the cached one; a missing file is refused here, in the parent."""
    if path is None:
        return False
    if not Path(path).is_file():
        raise GigatokError(f"{path} does not exist", hint=f"check the {option} path")
    return True


def _local_weights(path: str | Path | None, option: str, kind: str) -> bool:
    """True when local weights (a file, a run or export folder: the weights resolver's) replace the
    cached ones; what the resolver cannot find is refused here, in the parent."""
    from gigatok_core.weights import resolve_weights

    if path is None:
        return False
    resolve_weights(path, option, kind=kind)
    return True


def tokenizer_files(name: str, checkpoint: str | Path | None = None) -> list[Path]:
    """The tokenizer preset's weights (none for a local ``checkpoint`` or a random-weights preset)."""
    from gigatok_core.registry import tokenizer_names, tokenizer_preset
    from gigatok_core.weights import fetch_weights  # with the structural check, as the loaders fetch

    if _local_weights(checkpoint, "--checkpoint", "tokenizer"):
        return []
    if name not in tokenizer_names() and Path(name).is_file():  # a checkpoint file given as the preset
        return []
    preset = tokenizer_preset(name)
    return [fetch_weights(preset.weights)] if preset.weights else []


def gpt_files(
    gpt: str | None,
    tokenizer: str | None = None,
    *,
    gpt_checkpoint: str | Path | None = None,
    tokenizer_checkpoint: str | Path | None = None,
) -> list[Path]:
    """A GPT's released weights and its tokenizer's (resolved as :func:`~gigatok_core.ar.load.load_gpt` does)."""
    from gigatok_core.ar.trained import resolve_pairing
    from gigatok_core.weights import fetch_weights  # with the structural check, as the loaders fetch

    pairing = resolve_pairing(gpt, tokenizer, gpt_checkpoint, tokenizer_checkpoint)
    files = []
    if pairing.gpt_checkpoint is None and pairing.release is not None:
        files.append(fetch_weights(pairing.release.weights))
    return files + tokenizer_files(pairing.tokenizer, pairing.tokenizer_checkpoint)


def aux_files(names: Iterable[tuple[str, str | Path | None, str]]) -> list[Path]:
    """Auxiliary files: ``(registry name, local replacement or None, its option)`` each."""
    from gigatok_core.hub import fetch_weights

    return [
        fetch_weights(name, or_option=f"{opt} FILE") for name, local, opt in names if not _local(local, opt)
    ]


def _check_device(device: str | None, precision: str | None) -> None:
    from gigatok_core import dist

    dev = dist.resolve_device(device)
    if precision is not None:
        dist.resolve_precision(precision, dev)


# ---------------------------------------------------------------------------------------------
# What each command reads (checked and fetched before its workers start)
# ---------------------------------------------------------------------------------------------
def sample_files(
    classes: str,
    gpt: str | None,
    tokenizer: str | None,
    *,
    gpt_checkpoint: Path | None,
    tokenizer_checkpoint: Path | None,
    device: str | None,
    precision: str,
) -> list[Path]:
    """``gigatok sample``: the classes parse, the device and precision work, both checkpoints."""
    from gigatok_core.ar.classes import parse_classes
    from gigatok_core.ar.trained import resolve_pairing

    pairing = resolve_pairing(gpt, tokenizer, gpt_checkpoint, tokenizer_checkpoint)
    parse_classes(classes, pairing.class_names)  # a run's own class names, else ImageNet's
    _check_device(device, precision)
    return gpt_files(gpt, tokenizer, gpt_checkpoint=gpt_checkpoint, tokenizer_checkpoint=tokenizer_checkpoint)


def reconstruct_files(
    tokenizer: str,
    checkpoint: Path | None,
    *,
    metrics: bool,
    vgg_weights: Path | None,
    device: str | None,
    precision: str,
) -> list[Path]:
    """``gigatok reconstruct``: the tokenizer, and the LPIPS VGG weights with ``--metrics``."""
    _check_device(device, precision)
    files = tokenizer_files(tokenizer, checkpoint)
    return files + (aux_files([(VGG_WEIGHTS, vgg_weights, "--vgg-weights")]) if metrics else [])


def rfid_files(
    tokenizer: str,
    checkpoint: Path | None,
    *,
    reference: Path | None,
    lpips: bool,
    vgg_weights: Path | None,
    inception_weights: Path | None,
    device: str | None,
    precision: str,
) -> list[Path]:
    """``gigatok eval rfid``: the tokenizer, Inception, and VGG with LPIPS on."""
    _check_device(device, precision)
    _local(reference, "--reference")
    aux = [(INCEPTION_WEIGHTS, inception_weights, "--inception-weights")]
    aux += [(VGG_WEIGHTS, vgg_weights, "--vgg-weights")] if lpips else []
    return tokenizer_files(tokenizer, checkpoint) + aux_files(aux)


def gfid_files(
    gpt: str | None,
    tokenizer: str | None,
    *,
    gpt_checkpoint: Path | None,
    tokenizer_checkpoint: Path | None,
    reference: Path | None,
    inception_weights: Path | None,
    device: str | None,
    precision: str,
) -> list[Path]:
    """``gigatok eval gfid``: both checkpoints, Inception and ADM's reference batch."""
    _check_device(device, precision)
    files = gpt_files(
        gpt, tokenizer, gpt_checkpoint=gpt_checkpoint, tokenizer_checkpoint=tokenizer_checkpoint
    )
    aux = [
        (INCEPTION_WEIGHTS, inception_weights, "--inception-weights"),
        (ADM_REFERENCE, reference, "--reference"),
    ]
    return files + aux_files(aux)


def val_loss_files(
    gpt: str,
    tokenizer: str | None,
    *,
    gpt_checkpoint: Path | None,
    tokenizer_checkpoint: Path | None,
    device: str | None,
    data: Path,
) -> list[Path]:
    """``gigatok eval val-loss``: both checkpoints (the data folder must exist)."""
    _check_device(device, None)
    if not Path(data).is_dir():
        raise GigatokError(f"--data {data} is not a folder", hint="pass the ImageNet val ImageFolder tree")
    return gpt_files(gpt, tokenizer, gpt_checkpoint=gpt_checkpoint, tokenizer_checkpoint=tokenizer_checkpoint)


def extract_codes_files(
    tokenizer: str,
    checkpoint: Path | None,
    *,
    data: Path | None,
    import_official: Path | None,
    device: str | None,
    precision: str | None,
) -> list[Path]:
    """``gigatok train extract-codes``: the input folder exists, the tokenizer's weights (a run folder too)."""
    _check_device(device, precision)
    source, option = (import_official, "--import-official") if import_official else (data, "--data")
    if source is None:
        raise GigatokError("no input", hint="pass --data IMAGE_FOLDER (or --import-official DIR)")
    if not Path(source).is_dir():
        raise GigatokError(f"{option} {source} is not a folder", hint=f"check the {option} path")
    if _local_weights(checkpoint, "--checkpoint", "tokenizer"):
        return []  # a local file or run folder: nothing to fetch
    return tokenizer_files(tokenizer)
