"""Fetch, before a run starts, every file its request reads (the launcher's parent step).

A request (:mod:`gigatok_core.config.requests`) lists what its run reads in ``required_files()``;
:func:`fetch_required` checks and fetches all of it: the device and precision work here, presets
resolve, each released checkpoint or auxiliary file is downloaded into the cache once (with progress
bars), and a local file or folder given instead is checked to exist and never fetched. The
launcher's workers then start with the cache filled and ``GIGATOK_OFFLINE=1``, so they only read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from gigatok_core.config.requests import (
    AuxFile,
    Device,
    Folder,
    GPTWeights,
    LocalFile,
    Need,
    Request,
    TokenizerWeights,
)
from gigatok_core.errors import SettingError, literal


def fetch_required(request: Request) -> list[Path]:
    """Check and fetch everything ``request`` reads; returns the cached files (local ones left out).

    A missing local file raises a :class:`~gigatok_core.errors.SettingError` naming its setting.
    """
    return fetch_needs(request.required_files(), request.flags())


def fetch_needs(needs: Iterable[Need], flags: dict[str, str] | None = None) -> list[Path]:
    """:func:`fetch_required` for a list of needs; ``flags``: how errors name the settings."""
    needs = list(needs)
    names = flags or {n.setting: n.setting for n in needs if hasattr(n, "setting")}
    files: list[Path] = []
    for need in needs:
        if isinstance(need, Device):
            _check_device(need.device, need.precision)
        elif isinstance(need, TokenizerWeights):
            files += tokenizer_files(need.name, need.checkpoint, option=names.get(need.setting, need.setting))
        elif isinstance(need, GPTWeights):
            files += gpt_files(
                need.gpt,
                need.tokenizer,
                gpt_checkpoint=need.gpt_checkpoint,
                tokenizer_checkpoint=need.tokenizer_checkpoint,
                classes=need.classes,
            )
        elif isinstance(need, AuxFile):
            files += _aux_file(need, names)
        elif isinstance(need, LocalFile):
            _local(need.path, need.setting, names)
        elif isinstance(need, Folder):
            if not Path(need.path).is_dir():
                raise SettingError(
                    f"{{{need.setting}}} {literal(need.path)} is not a folder", flags=names, hint=need.hint
                )
    return files


def tokenizer_files(
    name: str, checkpoint: str | Path | None = None, *, option: str = "--checkpoint"
) -> list[Path]:
    """The tokenizer preset's weights (none for a local ``checkpoint`` or a random-weights preset)."""
    from gigatok_core.registry import tokenizer_names, tokenizer_preset
    from gigatok_core.weights import fetch_weights, resolve_weights  # with the structural check

    if checkpoint is not None:  # a file, a run or export folder: what the resolver cannot find is refused
        resolve_weights(checkpoint, option, kind="tokenizer")
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
    classes: str | Sequence[int | str] | None = None,
) -> list[Path]:
    """A GPT's released weights and its tokenizer's (resolved as :func:`~gigatok_core.ar.load.load_gpt`
    does); ``classes`` are checked against the GPT's (a run's own class names, else ImageNet's)."""
    from gigatok_core.ar.classes import parse_classes
    from gigatok_core.ar.trained import resolve_pairing
    from gigatok_core.weights import fetch_weights  # with the structural check, as the loaders fetch

    pairing = resolve_pairing(gpt, tokenizer, gpt_checkpoint, tokenizer_checkpoint)
    if classes is not None:
        parse_classes(classes, pairing.class_names)
    files = []
    if pairing.gpt_checkpoint is None and pairing.release is not None:
        files.append(fetch_weights(pairing.release.weights))
    return files + tokenizer_files(pairing.tokenizer, pairing.tokenizer_checkpoint)


def _local(path: str | Path | None, setting: str, flags: dict[str, str]) -> bool:
    """True when a local file is given; a missing one is refused here, in the parent."""
    if path is None:
        return False
    if not Path(path).is_file():
        raise SettingError(
            f"{literal(path)} does not exist", flags=flags, hint=f"check the {{{setting}}} path"
        )
    return True


def _aux_file(need: AuxFile, flags: dict[str, str]) -> list[Path]:
    from gigatok_core.hub import fetch_weights

    if _local(need.local, need.setting, flags):
        return []
    return [fetch_weights(need.name, or_option=f"{flags.get(need.setting, need.setting)} FILE")]


def _check_device(device: str | None, precision: str | None) -> None:
    from gigatok_core import dist

    dev = dist.resolve_device(device)
    if precision is not None:
        dist.resolve_precision(precision, dev)
