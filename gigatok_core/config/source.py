"""``from_checkpoint``: the architecture a checkpoint was trained with, read from what it says.

Sources, most explicit first:
- a gigatok ``.safetensors``: the ``config`` (or ``preset``) in its metadata (:func:`save_weights`);
- a training checkpoint folder (``RUN_DIR/checkpoints/step-NNNNNNNN/meta.json``) or a run folder
  (its latest checkpoint): ``meta["config"]`` is the nested train config, ``["model"]`` its part;
- an official GPT ``.pt``: the size whose (dim, n_layer) match its key shapes (docs/ar.md#checkpoints).
An official tokenizer ``.pt`` carries no architecture, and telling its preset from its shapes
needs the model code (above this package): :func:`gigatok_core.tokenizer.load.tokenizer_config_of`
does that, and reads the sources above first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from gigatok_core.config.build import build_config
from gigatok_core.config.sizes import GPT_SIZES
from gigatok_core.errors import GigatokError

C = TypeVar("C")
META_JSON = "meta.json"


def _read_meta_json(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GigatokError(f"{path} is not a readable checkpoint description ({err})") from None
    if not isinstance(meta, dict):
        raise GigatokError(f"{path} is not a checkpoint description (expected a JSON object)")
    return meta


def newest_checkpoint(path: str | Path, what: str | None = None) -> Path:
    """The checkpoint folder to read for ``path``: a step folder itself, else the latest checkpoint
    of a run folder or of its ``checkpoints/`` (:func:`gigatok_core.checkpoints.training.latest_checkpoint`)."""
    from gigatok_core.checkpoints.training import latest_checkpoint

    path = Path(path)
    if (path / META_JSON).is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise GigatokError(
            f"{what + ' ' if what else ''}{path} is a folder, and holds no checkpoints",
            hint="pass the checkpoint file itself; a training run folder must contain checkpoints/ "
            "(as `gigatok train` writes it), a checkpoint folder its meta.json, an export folder "
            "a `gigatok train export` .safetensors",
        )
    return found


def _model_part(config: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise GigatokError(f"{source} has no architecture config in its description")
    model = config.get("model", config)
    if not isinstance(model, Mapping):
        raise GigatokError(f"{source} has no architecture config in its description")
    return model


def _check_kind(meta: Mapping[str, Any], kind: str, source: str) -> None:
    found = meta.get("kind")
    if found is not None and found != kind:
        raise GigatokError(
            f"{source} holds a {found} checkpoint, not a {kind}", hint=f"pass a {kind} checkpoint"
        )


def _from_meta(cls: type[C], meta: Mapping[str, Any], kind: str, source: str) -> C:
    if meta.get("config") is not None:
        return build_config(cls, _model_part(meta["config"], source))
    if meta.get("preset"):
        return cls.from_name(str(meta["preset"]))  # type: ignore[attr-defined]
    raise GigatokError(
        f"{source} names neither a config nor a preset", hint="re-export the file with gigatok"
    )


def _gpt_from_state_dict(cls: type[C], sd: Mapping[str, Any], source: str) -> C:
    """GPTConfig from official key shapes (docs/ar.md#checkpoints); heads come from the size table."""
    emb, pos = sd.get("tok_embeddings.weight"), sd.get("positional_embedding")
    cls_emb = sd.get("cls_embedding.embedding_table.weight")
    if emb is None or pos is None or cls_emb is None:
        raise GigatokError(f"{source} is not a GPT checkpoint (no tok_embeddings/positional_embedding)")
    vocab, dim = emb.shape  # (vocab, D)
    n_layer = sum(1 for k in sd if k.startswith("layers.") and k.endswith(".attention.wqkv.weight"))
    sizes = [name for name, (d, n, _) in GPT_SIZES.items() if (d, n) == (dim, n_layer)]
    if not sizes:
        raise GigatokError(
            f"{source} is a GPT with dim {dim} and {n_layer} layers, which is no known size",
            hint=f"known sizes: {', '.join(GPT_SIZES)}; a gigatok-written file names its config",
        )
    classes = cls_emb.shape[0]  # num_classes + 1 with class dropout (the null class)
    return build_config(
        cls,
        {
            "size": sizes[0],
            "vocab_size": int(vocab),
            "block_size": int(pos.shape[0]) - 1,
            "num_classes": int(classes) - 1,
        },
    )


RUN_WEIGHTS = ("ema", "model")  # weights groups of a training checkpoint, in the order used


class OfficialCheckpoint(GigatokError):
    """A weights file without gigatok metadata: its config must be recognised from its shapes."""


def is_hub_ref(ref: object) -> bool:
    """True for a Hugging Face Hub id (``hf://OWNER/REPO[@REV]``), also after a Path folded it
    to ``hf:/OWNER/REPO``: the one test of a Hub id, here below the hub so loaders can refuse one."""
    return isinstance(ref, (str, os.PathLike)) and str(ref).startswith("hf:/")


def _no_hub(ref: str | Path, what: str) -> None:
    """Hub ids are made local above this package (:func:`gigatok_core.weights.local_weights`)."""
    if is_hub_ref(ref):
        raise GigatokError(
            f"{what} {ref} is a Hugging Face Hub id that was not downloaded first",
            hint="pass it through gigatok_core.weights.resolve_weights (the CLI does)",
        )


def _exported(folder: Path, kind: str | None) -> Path | None:
    """The newest gigatok-exported ``*.safetensors`` of ``kind`` directly in ``folder`` (None: none)."""
    from gigatok_core.checkpoints.files import read_weights_meta

    if kind is None:
        return None
    found = [p for p in folder.glob("*.safetensors") if (read_weights_meta(p) or {}).get("kind") == kind]
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name)) if found else None


def weights_file(ref: str | Path, what: str = "checkpoint", *, kind: str | None = None) -> Path:
    """The weights file behind a local weights reference (the local half of the one resolver,
    :func:`gigatok_core.weights.resolve_weights`, which adds hub ids).

    - a file: itself (checked to exist and be non-empty);
    - a folder: its newest exported ``*.safetensors`` of ``kind`` (``gigatok train export`` into
      the folder; an exported file wins), else the ``ema`` (else ``model``) weights of its newest
      training checkpoint (a run folder, its ``checkpoints/``, or one step folder).
    """
    from gigatok_core.checkpoints.files import check_checkpoint_file

    _no_hub(ref, what)
    path = Path(ref)
    if not path.is_dir():
        return check_checkpoint_file(path, what)
    exported = _exported(path, kind)
    if exported is not None:
        return exported
    from gigatok_core.checkpoints.training import latest_checkpoint

    if not (path / META_JSON).is_file() and latest_checkpoint(path, quiet=True) is None:
        raise GigatokError(
            f"{what} {path} is a folder without {kind + ' ' if kind else ''}weights "
            "(no training checkpoint, no exported *.safetensors)",
            hint="pass the weights file, a training run folder (it holds checkpoints/), or export the "
            "run first (`gigatok train export`)",
        )
    folder = newest_checkpoint(path, what)
    for group in RUN_WEIGHTS:
        if (folder / f"{group}.safetensors").is_file():
            return folder / f"{group}.safetensors"
    raise GigatokError(
        f"{what} {folder} holds no {' or '.join(RUN_WEIGHTS)} weights",
        hint="the checkpoint is incomplete: pick an earlier one (its step folder)",
    )


def describe_checkpoint(path: str | Path, *, kind: str, what: str = "checkpoint") -> dict[str, Any] | None:
    """What a checkpoint says about itself (gigatok metadata or a run's ``meta.json``), checked to
    be a ``kind`` checkpoint; None for an official or foreign file. ``path`` is anything
    :func:`weights_file` takes."""
    from gigatok_core.checkpoints.files import read_weights_meta

    _no_hub(path, what)
    path = Path(path)
    if path.is_dir():
        exported = _exported(path, kind)
        if exported is not None:  # an export folder: the file's own metadata
            meta, source = read_weights_meta(exported), str(exported)
        else:
            folder = newest_checkpoint(path, what)
            meta, source = _read_meta_json(folder / META_JSON), str(folder)
    elif path.name == META_JSON and path.is_file():
        meta, source = _read_meta_json(path), str(path)
    elif weights_file(path, what).suffix == ".safetensors":
        meta, source = read_weights_meta(path), str(path)
    else:
        meta, source = None, str(path)
    if meta is not None:
        _check_kind(meta, kind, source)
    return meta


def config_from_checkpoint(cls: type[C], path: str | Path, *, kind: str) -> C:
    """``cls`` (TokenizerConfig or GPTConfig) for the checkpoint at ``path``; ``kind`` is tokenizer|gpt."""
    from gigatok_core.checkpoints.files import GPT_ENTRIES, extract_state_dict, read_checkpoint

    meta = describe_checkpoint(path, kind=kind)
    if meta is not None:
        return _from_meta(cls, meta, kind, str(path))
    if kind == "gpt":
        sd, _ = extract_state_dict(read_checkpoint(path), prefer=GPT_ENTRIES, source=str(path))
        return _gpt_from_state_dict(cls, sd, str(path))
    raise OfficialCheckpoint(
        f"{path} is an official (or foreign) checkpoint that does not describe its architecture",
        hint="name its preset (TokenizerConfig.from_name), or use "
        "gigatok_core.tokenizer.load.tokenizer_config_of, which recognises presets by their shapes",
    )
