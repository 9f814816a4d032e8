"""`gigatok train export`: a run's inference weights alone, as one self-describing safetensors file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigatok_core.checkpoints.files import save_weights
from gigatok_core.checkpoints.training import load_checkpoint
from gigatok_core.errors import GigatokError

PREFERRED = ("ema", "model")  # EMA weights when the run kept them (docs/recipes.md#gpt: EMA is optional)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    group: str
    step: int
    num_tensors: int


def run_weights(path: str | Path, group: str | None = None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(state dict, checkpoint meta, group used) of a run folder or checkpoint folder; EMA preferred."""
    wanted = (group,) if group else PREFERRED
    ckpt = load_checkpoint(path, groups=wanted, with_state=False)
    for name in wanted:
        if name in ckpt.weights:
            return ckpt.weights[name], ckpt.meta, name
    raise GigatokError(
        f"{ckpt.path} has no {' or '.join(repr(w) for w in wanted)} weights (it has {', '.join(ckpt.meta['groups'])})",
        hint="pick one of those with --weights",
    )


def export_meta(meta: dict[str, Any], group: str, source: Path) -> dict[str, Any]:
    """The header of an exported file: kind, preset, architecture dict, pairing, step, group."""
    config = meta.get("config") or {}
    return {
        "kind": meta.get("kind"),
        "preset": meta.get("preset"),
        "config": config.get("model", config),
        "tokenizer": meta.get("tokenizer"),
        "classes": meta.get("classes"),  # a GPT's own class names travel with its weights
        "step": meta.get("step"),
        "weights": group,
        "exported_from": source.name,
    }


def export_weights(
    run_dir: str | Path, dest: str | Path, *, group: str | None = None, overwrite: bool = False
) -> ExportResult:
    """Write the inference weights of ``run_dir``'s latest checkpoint to ``dest`` (.safetensors)."""
    dest = Path(dest)
    if dest.suffix != ".safetensors":
        raise GigatokError(f"{dest} must end in .safetensors", hint="e.g. gpt-b-mine.safetensors")
    if dest.exists() and not overwrite:
        raise GigatokError(f"{dest} already exists", hint="pass --overwrite to replace it")
    sd, meta, used = run_weights(run_dir, group)
    save_weights(dest, sd, export_meta(meta, used, Path(run_dir)))
    return ExportResult(dest, used, int(meta.get("step", 0)), len(sd))
