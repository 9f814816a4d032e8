"""Entry points: probe a GPT or a tokenizer given preset names, weights and the two split folders.

``probe_gpt("gpt-b", "train/", "val/", "runs/probe", tokenizer="xl-xxl")`` checks the inputs
(split folders, class folders, the GPT/tokenizer pairing) before loading anything, loads the
backbone, and runs :func:`gigatok_core.probe.run.run_probe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gigatok_core import dist
from gigatok_core.errors import GigatokError
from gigatok_core.probe.data import Split, check_same_classes, read_split
from gigatok_core.probe.features import GPTFeatures, TokenizerFeatures
from gigatok_core.probe.run import EpochCallback, ProbeConfig, ProbeResult, run_probe
from gigatok_core.utils.progress import ProgressFn


def file_identity(path: str | Path | None) -> dict[str, Any] | None:
    """Path, size and mtime of a weights file: what a feature cache is keyed on (no multi-GB hash)."""
    if path is None:
        return None
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def gpt_weights_file(path: str | Path | None) -> Path | None:
    """The GPT weights file of ``--gpt-checkpoint``: a file as is, or a training run's (or checkpoint
    folder's) newest ``ema`` (else ``model``) weights (:func:`gigatok_core.weights.resolve_weights`)."""
    from gigatok_core.weights import resolve_weights

    return None if path is None else resolve_weights(path, "--gpt-checkpoint", kind="gpt")


def gpt_to_probe(gpt: str | None, gpt_checkpoint: str | Path | None) -> str:
    """``gpt``, or when it is left out the GPT preset a gigatok checkpoint (file, run or checkpoint
    folder) records; its paired tokenizer is found by :func:`gigatok_core.ar.load.resolve_gpt`."""
    from gigatok_core.config.source import describe_checkpoint
    from gigatok_core.weights import local_weights

    if gpt is not None:
        return gpt
    meta = None
    if gpt_checkpoint is not None:
        meta = describe_checkpoint(local_weights(gpt_checkpoint, "GPT checkpoint"), kind="gpt")
    preset = (meta or {}).get("preset")
    if not isinstance(preset, str):
        raise GigatokError(
            "no GPT preset to probe: none is given"
            + (f" and {gpt_checkpoint} records none" if gpt_checkpoint is not None else ""),
            hint="name the GPT preset, e.g. --gpt gpt-b@xl-xxl",
        )
    return preset


def probe_gpt_files(
    gpt: str | None,
    train_dir: str | Path,
    val_dir: str | Path,
    *,
    subset: int | None = None,
    tokenizer: str | None = None,
    gpt_checkpoint: str | Path | None = None,
    tokenizer_checkpoint: str | Path | None = None,
) -> list[Path]:
    """Check the splits and fetch every weights file a GPT probe reads (the launcher's parent step)."""
    from gigatok_core.tasks import fetch

    read_splits(train_dir, val_dir, subset)
    return fetch.gpt_files(
        gpt_to_probe(gpt, gpt_checkpoint),
        tokenizer,
        gpt_checkpoint=gpt_weights_file(gpt_checkpoint),
        tokenizer_checkpoint=tokenizer_checkpoint,
    )


def probe_tokenizer_files(
    tokenizer: str,
    train_dir: str | Path,
    val_dir: str | Path,
    *,
    subset: int | None = None,
    checkpoint: str | Path | None = None,
) -> list[Path]:
    """Check the splits and fetch the tokenizer weights a tokenizer probe reads (none for a local one)."""
    from gigatok_core.tasks import fetch

    read_splits(train_dir, val_dir, subset)
    if checkpoint is not None and Path(checkpoint).is_dir():
        return []  # a local run folder: nothing to fetch
    return fetch.tokenizer_files(tokenizer, checkpoint)


def read_splits(train_dir: str | Path, val_dir: str | Path, subset: int | None) -> tuple[Split, Split]:
    train = read_split(train_dir, what="--train-split", subset=subset)
    val = read_split(val_dir, what="--val-split", subset=subset)
    check_same_classes(train, val)
    return train, val


def _device(device: str | None, config: ProbeConfig) -> tuple[torch.device, dist.DistContext]:
    """The run's device (checked to run ``config.precision``) and its process group."""
    dev = dist.resolve_device(device)
    dist.resolve_precision(config.precision, dev)
    return dev, dist.get_context(dev)


def probe_gpt(
    gpt: str | None,
    train_dir: str | Path,
    val_dir: str | Path,
    output: str | Path,
    *,
    config: ProbeConfig,
    tokenizer: str | None = None,
    gpt_checkpoint: str | Path | None = None,
    tokenizer_checkpoint: str | Path | None = None,
    device: str | None = None,
    overwrite: bool = False,
    on_epoch: EpochCallback | None = None,
    on_progress: ProgressFn | None = None,
) -> ProbeResult | None:
    """Linear probe of a GPT's block ``config.layer`` (default n_layer // 2) on the null class
    (docs/recipes.md#linear-probing). ``gpt`` None: the preset ``gpt_checkpoint`` records."""
    from gigatok_core.ar.load import load_gpt, resolve_gpt, split_gpt_name
    from gigatok_core.ar.trained import paired_tokenizer_checkpoint
    from gigatok_core.tokenizer import load_tokenizer

    train, val = read_splits(train_dir, val_dir, config.subset)
    gpt, tokenizer = split_gpt_name(
        gpt_to_probe(gpt, gpt_checkpoint), tokenizer
    )  # "gpt-b@xl-xxl" -> ("gpt-b", "xl-xxl")
    _, tok_name, _ = resolve_gpt(gpt, tokenizer, gpt_checkpoint)  # refuses a GPT that does not fit
    if gpt_checkpoint is not None and tokenizer_checkpoint is None:  # a gigatok run's own tokenizer
        tokenizer_checkpoint = paired_tokenizer_checkpoint(gpt_checkpoint, tokenizer)
    dev, ctx = _device(device, config)
    tok = load_tokenizer(tok_name, checkpoint=tokenizer_checkpoint, device=dev)
    model, _ = load_gpt(gpt, tokenizer=tok_name, checkpoint=gpt_checkpoint, device=dev)
    extractor = GPTFeatures(model, tok, layer=config.layer)
    meta = {
        "backbone": "gpt",
        "gpt": gpt,
        "tokenizer": tok_name,
        "gpt_checkpoint": file_identity(gpt_weights_file(gpt_checkpoint)),
        "tokenizer_checkpoint": file_identity(tokenizer_checkpoint),
    }
    hooks = {"overwrite": overwrite, "on_epoch": on_epoch, "on_progress": on_progress}
    return run_probe(extractor, train, val, config, output, meta=meta, device=dev, ctx=ctx, **hooks)


def probe_tokenizer(
    tokenizer: str,
    train_dir: str | Path,
    val_dir: str | Path,
    output: str | Path,
    *,
    config: ProbeConfig,
    checkpoint: str | Path | None = None,
    mode: str = "encoder",
    device: str | None = None,
    overwrite: bool = False,
    on_epoch: EpochCallback | None = None,
    on_progress: ProgressFn | None = None,
) -> ProbeResult | None:
    """Linear probe of tokenizer features: ``mode`` encoder (default), fix_dim or decoder (docs/recipes.md#linear-probing)."""
    from gigatok_core.tokenizer import load_tokenizer

    if config.layer is not None:
        raise GigatokError("layer applies to GPT probes only", hint="use --fix-dim / --from-decoder instead")
    train, val = read_splits(train_dir, val_dir, config.subset)
    dev, ctx = _device(device, config)
    tok = load_tokenizer(tokenizer, checkpoint=checkpoint, device=dev, dtype=torch.float32)
    extractor = TokenizerFeatures(tok, mode)
    meta = {
        "backbone": "tokenizer",
        "tokenizer": tokenizer,
        "checkpoint": file_identity(checkpoint),
        "mode": mode,
    }
    hooks = {"overwrite": overwrite, "on_epoch": on_epoch, "on_progress": on_progress}
    return run_probe(extractor, train, val, config, output, meta=meta, device=dev, ctx=ctx, **hooks)
