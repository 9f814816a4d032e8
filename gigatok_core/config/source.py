"""``from_checkpoint``: the architecture a checkpoint was trained with, read from what it says.

Sources, most explicit first:
- a gigatok ``.safetensors``: the ``config`` (or ``preset``) in its metadata (:func:`save_weights`);
- a training checkpoint folder (``RUN_DIR/checkpoints/<step>/meta.json``) or a run folder (the
  newest such checkpoint): ``meta["config"]`` is the nested train config, ``["model"]`` its part;
- an official ``.pt``: the tokenizer preset whose keys and shapes match, or for a GPT the size
  whose (dim, n_layer) match (official files carry no architecture; spec tokenizer §6, ar §3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from gigatok_core.config.build import build_config
from gigatok_core.config.model import GPT_SIZES
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


def _step_of(meta_file: Path) -> tuple[int, str]:
    step = _read_meta_json(meta_file).get("step")
    return (step if isinstance(step, int) else -1, meta_file.parent.name)


def newest_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder to read for ``path``: itself when it holds ``meta.json``, else the
    newest (highest ``step``) ``checkpoints/*/`` of a run folder."""
    path = Path(path)
    if (path / META_JSON).is_file():
        return path
    found = sorted((path / "checkpoints").glob(f"*/{META_JSON}"), key=_step_of)
    if not found:
        raise GigatokError(
            f"{path} is a folder without checkpoints",
            hint="pass a checkpoint file, a checkpoint folder holding meta.json, or a run folder "
            "holding checkpoints/",
        )
    return found[-1].parent


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
    _check_kind(meta, kind, source)
    if meta.get("config") is not None:
        return build_config(cls, _model_part(meta["config"], source))
    if meta.get("preset"):
        return cls.from_name(str(meta["preset"]))  # type: ignore[attr-defined]
    raise GigatokError(
        f"{source} names neither a config nor a preset", hint="re-export the file with gigatok"
    )


def _gpt_from_state_dict(cls: type[C], sd: Mapping[str, Any], source: str) -> C:
    """GPTConfig from official key shapes (spec ar §3); heads come from the size table."""
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


def config_from_checkpoint(cls: type[C], path: str | Path, *, kind: str) -> C:
    """``cls`` (TokenizerConfig or GPTConfig) for the checkpoint at ``path``; ``kind`` is tokenizer|gpt."""
    from gigatok_core.checkpoint import extract_state_dict, read_checkpoint, read_weights_meta

    path = Path(path)
    if path.is_dir():
        folder = newest_checkpoint(path)
        return _from_meta(cls, _read_meta_json(folder / META_JSON), kind, str(folder))
    if path.name == META_JSON and path.is_file():
        return _from_meta(cls, _read_meta_json(path), kind, str(path))
    if not path.exists():
        raise GigatokError(f"checkpoint {path} does not exist", hint="check the path")
    if path.suffix == ".safetensors":
        meta = read_weights_meta(path)
        if meta is not None:
            return _from_meta(cls, meta, kind, str(path))
    ckpt = read_checkpoint(path)
    if kind == "gpt":
        from gigatok_core.ar.load import GPT_ENTRIES

        sd, _ = extract_state_dict(ckpt, prefer=GPT_ENTRIES, source=str(path))
        return _gpt_from_state_dict(cls, sd, str(path))
    from gigatok_core.tokenizer.load import guess_preset

    sd, _ = extract_state_dict(ckpt, source=str(path))
    name = guess_preset(sd)
    if name is None:
        raise GigatokError(
            f"{path} does not match any tokenizer preset", hint="a gigatok-written file names its config"
        )
    return cls.from_name(name)  # type: ignore[attr-defined]
