"""`gigatok train export`: a run's inference weights alone, as one self-describing safetensors file,
or (:mod:`gigatok_core.train.hub_export`) a Hugging Face model repository folder, uploaded or not.

:func:`export_run` is the command's one entry: it checks the combination asked for and picks the
writer, so Python code exports as the command does::

    export_run("runs/tok", "tok.safetensors")                    # one file
    export_run("runs/tok", "hub-folder", format="hub")           # a repository folder
    export_run("runs/tok", to_hub="alice/my-tokenizer", private=True)   # uploaded
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gigatok_core.checkpoints.files import save_weights
from gigatok_core.checkpoints.training import load_checkpoint
from gigatok_core.errors import GigatokError

if TYPE_CHECKING:
    from gigatok_core.train.hub_export import HubExport

FORMATS = ("safetensors", "hub")
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


def export_run(
    run_dir: str | Path,
    dest: str | Path | None = None,
    *,
    format: str = "safetensors",
    to_hub: str | None = None,
    group: str | None = None,
    private: bool = False,
    revision: str | None = None,
    overwrite: bool = False,
) -> ExportResult | HubExport:
    """Export ``run_dir``'s inference weights (``group``; default EMA when kept): to ``dest`` as one
    .safetensors file (``format="safetensors"``) or a repository folder (``format="hub"``), or
    uploaded to the Hub repo ``to_hub`` (``dest``, optional then, keeps a copy of the folder;
    ``private`` and ``revision`` go with it). Every combination is checked before any work."""
    if format not in FORMATS:
        raise GigatokError(f"--format {format}: want safetensors or hub", hint="e.g. --format hub")
    if to_hub is None and (private or revision):
        raise GigatokError("--private and --revision go with --to-hub", hint="add --to-hub OWNER/REPO")
    if to_hub is not None:
        from gigatok_core.train.hub_export import push_run

        if dest is not None and Path(dest).suffix == ".safetensors":
            raise GigatokError(
                f"--to-hub uploads a repository folder; {dest} names a file",
                hint="drop DEST (a temporary folder is used), or name a folder to keep a copy",
            )
        return push_run(
            run_dir, to_hub, group=group, private=private, revision=revision, keep=dest, overwrite=overwrite
        )
    if dest is None:
        raise GigatokError(
            "name the file (or folder) to write", hint="gigatok train export RUN_DIR OUT.safetensors"
        )
    if format == "hub":
        from gigatok_core.train.hub_export import write_hub_folder

        return write_hub_folder(run_dir, dest, group=group, overwrite=overwrite)
    return export_weights(run_dir, dest, group=group, overwrite=overwrite)
