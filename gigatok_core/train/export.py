"""`gigatok train export`: a run's inference weights alone, as one self-describing safetensors file,
or as a Hugging Face model repository folder, uploaded or not (``--format hub`` / ``--to-hub``).

:func:`export_run` is the command's one entry: it checks the combination asked for and picks the
writer, so Python code exports as the command does::

    export_run("runs/tok", "tok.safetensors")                    # one file
    export_run("runs/tok", "hub-folder", format="hub")           # a repository folder
    export_run("runs/tok", to_hub="alice/my-tokenizer", private=True)   # uploaded

The folder holds what a Hub model repository needs to be loaded back by gigatok with no other flag
(``hf://OWNER/REPO``, :func:`gigatok_core.hub.resolve_hub_ref`):

- ``model.safetensors``: the inference weights (EMA preferred), self-describing like every file
  ``gigatok train export`` writes (kind, preset, architecture, tokenizer pairing in the header);
- ``config.json``: the same facts for people and the Hub's page (architecture, preset, pairing,
  codebook size and token count, step, the gigatok version);
- ``README.md``: a model card with the numbers found in the run folder (last logged losses, rFID or
  val loss when logged, steps, data) and how to load it.

The upload goes through ``huggingface_hub`` (``create_repo`` + ``upload_folder``): ``HF_TOKEN`` or
``hf auth login`` for the token, ``HF_ENDPOINT`` for another Hub, private repos and branches.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigatok_core.checkpoints.files import save_weights
from gigatok_core.checkpoints.training import load_checkpoint
from gigatok_core.config.requests import ExportRequest
from gigatok_core.errors import GigatokError
from gigatok_core.utils.fileio import write_text_atomic

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
    ``private`` and ``revision`` go with it). Every combination is checked before any work
    (:class:`~gigatok_core.config.requests.ExportRequest`)."""
    settings = {"format": format, "to_hub": to_hub, "private": private, "revision": revision}
    return export(ExportRequest(run_dir, dest, weights=group, overwrite=overwrite, **settings))


def export(request: ExportRequest) -> ExportResult | HubExport:
    """Run an export request (``gigatok train export``; :func:`export_run` in keywords)."""
    run_dir, dest, group, overwrite = request.run_dir, request.dest, request.weights, request.overwrite
    if request.to_hub is not None:
        return push_run(
            run_dir,
            request.to_hub,
            group=group,
            private=request.private,
            revision=request.revision,
            keep=dest,
            overwrite=overwrite,
        )
    assert dest is not None  # ExportRequest
    if request.format == "hub":
        return write_hub_folder(run_dir, dest, group=group, overwrite=overwrite)
    return export_weights(run_dir, dest, group=group, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# A Hugging Face model repository
# ---------------------------------------------------------------------------------------------
HUB_FILES = ("model.safetensors", "config.json", "README.md")
SCORES = ("rfid", "val_rfid", "fid", "val_loss", "loss", "rec_loss", "lpips", "psnr")  # logged keys shown


@dataclass(frozen=True)
class HubExport:
    folder: Path
    group: str
    step: int
    kind: str
    url: str | None = None  # of the commit, after an upload


# ---------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------
def write_hub_folder(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    group: str | None = None,
    overwrite: bool = False,
    repo_id: str | None = None,
    revision: str | None = None,
) -> HubExport:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` of ``run_dir`` into ``out_dir``.

    ``repo_id``/``revision`` only fill the model card's commands (``OWNER/REPO`` when unknown). An
    existing file of those three is replaced only with ``overwrite``; other files are left alone."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GigatokError(f"{out} is a file", hint="--format hub writes a folder: name a new folder")
    clash = [n for n in HUB_FILES if (out / n).exists()]
    if clash and not overwrite:
        raise GigatokError(
            f"{out} already holds {', '.join(clash)}",
            hint="pass --overwrite to replace them, or name another folder",
        )
    sd, meta, used = run_weights(run_dir, group)
    header = export_meta(meta, used, Path(run_dir))
    if header.get("kind") not in ("tokenizer", "gpt"):
        raise GigatokError(
            f"{run_dir} is a {header.get('kind')!r} run; only tokenizer and GPT runs are exported to the Hub"
        )
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out / "model.safetensors", sd, header)  # atomic
    config = hub_config(header, meta)
    write_text_atomic(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    card = model_card(config, _run_numbers(Path(run_dir)), meta, repo_id=repo_id, revision=revision)
    write_text_atomic(out / "README.md", card)
    return HubExport(out, used, int(header.get("step") or 0), str(header["kind"]))


def hub_config(header: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """config.json: what the checkpoint says about itself, plus the codebook facts and provenance."""
    from gigatok_core import __version__

    model = dict(header.get("config") or {})
    if header.get("kind") == "tokenizer":
        codebook = {"codebook_size": model.get("codebook_size"), "num_tokens": model.get("num_latent_tokens")}
    else:
        codebook = {"codebook_size": model.get("vocab_size"), "num_tokens": model.get("block_size")}
    return {
        "library_name": "gigatok",
        "gigatok_version": __version__,
        "kind": header.get("kind"),
        "preset": header.get("preset"),
        "config": model,
        "tokenizer": header.get("tokenizer"),
        **codebook,
        "step": header.get("step"),
        "weights": header.get("weights"),
        "trained_with": meta.get("gigatok_version"),
    }


def _run_numbers(run_dir: Path) -> dict[str, Any]:
    """The latest value of each score logged in ``RUN_DIR/metrics.jsonl`` (and its step)."""
    from gigatok_core.train.run_dir import read_metrics

    folder = run_dir if (run_dir / "metrics.jsonl").is_file() else run_dir.parent.parent
    try:
        records = read_metrics(folder)
    except (OSError, ValueError):
        return {}
    found: dict[str, Any] = {}
    for rec in records:
        for key in SCORES:
            value = rec.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[key] = (value, rec.get("step"))
    return found


def _data_name(meta: Mapping[str, Any]) -> str | None:
    data = (meta.get("config") or {}).get("data") if isinstance(meta.get("config"), Mapping) else None
    if not isinstance(data, Mapping):
        return None
    for key in ("data", "codes", "path", "root"):
        if isinstance(data.get(key), str):
            return Path(data[key]).name  # the folder's name only: no paths of the training machine
    return None


def model_card(
    config: Mapping[str, Any],
    numbers: Mapping[str, Any],
    meta: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    revision: str | None = None,
) -> str:
    """README.md of the repository: front matter, what it is, training, numbers, how to load it."""
    kind, preset = config["kind"], config.get("preset") or "custom"
    ref = f"hf://{repo_id or 'OWNER/REPO'}" + (f"@{revision}" if revision else "")
    what = (
        "VQ image tokenizer" if kind == "tokenizer" else "class-conditional autoregressive image model (GPT)"
    )
    tags = [
        "gigatok",
        "image-tokenizer" if kind == "tokenizer" else "image-generation",
        "vector-quantization",
    ]
    lines = [
        "---",
        "library_name: gigatok",
        "tags:",
        *(f"- {t}" for t in tags),
        "---",
        "",
        f"# {repo_id.split('/')[-1] if repo_id else preset} — a GigaTok {what}",
        "",
        f"Trained with gigatok {config.get('trained_with') or ''} (GigaTok, arXiv 2504.08736; official "
        f"code: https://github.com/SilentView/GigaTok) from the `{preset}` preset; exported with "
        f"gigatok {config['gigatok_version']}.",
        "",
        "## Training",
        "",
        f"- steps: {config.get('step')}; weights: {config.get('weights')}"
        + (" (exponential moving average)" if config.get("weights") == "ema" else ""),
        f"- codebook: {config.get('codebook_size')} codes, {config.get('num_tokens')} tokens per image",
    ]
    data = _data_name(meta)
    if data:
        lines.append(f"- data: `{data}`")
    tok = config.get("tokenizer")
    if kind == "gpt" and isinstance(tok, Mapping):
        lines.append(
            f"- tokenizer: `{tok.get('preset')}`" + (" (a local checkpoint)" if tok.get("checkpoint") else "")
        )
    lines += ["", "## Numbers from the run folder", ""]
    if numbers:
        lines += ["| metric | value | step |", "|---|---|---|"]
        lines += [f"| {k} | {v:.4g} | {s} |" for k, (v, s) in numbers.items()]
    else:
        lines.append("No scores were logged in the run folder.")
    lines += ["", "## How to load it", "", "```bash", "pip install gigatok-vision"]
    if kind == "tokenizer":
        lines += [
            f"gigatok reconstruct IMAGES_FOLDER --checkpoint {ref} --output reconstructions",
            "```",
            "",
            "```python",
            "from gigatok_core.tokenizer import load_tokenizer",
            "",
            f'tokenizer = load_tokenizer("{ref}")',
            "```",
        ]
    else:
        lines += [
            f"gigatok sample --gpt {preset} --gpt-checkpoint {ref} --classes 0 --output samples",
            "```",
            "",
            "```python",
            "from gigatok_core.ar.load import load_gpt",
            "",
            f'gpt, tokenizer_name = load_gpt("{preset}", checkpoint="{ref}")',
            "```",
        ]
        if isinstance(tok, Mapping) and tok.get("checkpoint"):
            lines += [
                "",
                "It was trained on the codes of a tokenizer checkpoint of its own: pass that tokenizer with "
                "`--tokenizer-checkpoint` (export it with `gigatok train export RUN_DIR --to-hub`).",
            ]
    lines += ["", "The weights load with no other setting: the file describes its architecture.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The upload
# ---------------------------------------------------------------------------------------------
def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    group: str | None = None,
    private: bool = False,
    revision: str | None = None,
    keep: str | Path | None = None,
    overwrite: bool = False,
) -> HubExport:
    """Write the hub folder (into ``keep`` when given, else a temporary folder) and upload it to
    ``repo_id`` (created when missing, ``private`` then; ``revision``: a branch, created from main)."""
    from gigatok_core.hub.hf import parse_hub_ref

    parse_hub_ref(f"hf://{repo_id}")  # a malformed id is refused before any work
    if repo_id.count("/") != 1:
        raise GigatokError(f"--to-hub {repo_id}: want OWNER/REPO", hint="e.g. --to-hub alice/my-tokenizer")
    api = _api()
    if keep is not None:
        res = write_hub_folder(
            run_dir, keep, group=group, overwrite=overwrite, repo_id=repo_id, revision=revision
        )
        return _upload(api, res, repo_id, private=private, revision=revision)
    with tempfile.TemporaryDirectory(prefix="gigatok-hub-") as tmp:
        res = write_hub_folder(run_dir, Path(tmp) / "repo", group=group, repo_id=repo_id, revision=revision)
        done = _upload(api, res, repo_id, private=private, revision=revision)
        shutil.rmtree(Path(tmp) / "repo", ignore_errors=True)
    return done


def _api() -> Any:
    from huggingface_hub import HfApi, get_token

    from gigatok_core.hub.hf import endpoint

    if get_token() is None:
        raise GigatokError(
            "uploading to the Hugging Face Hub needs a token with write access",
            hint="set HF_TOKEN, or run `hf auth login`; or write the folder with --format hub and upload it later",
        )
    return HfApi(endpoint=endpoint())


def _upload(api: Any, res: HubExport, repo_id: str, *, private: bool, revision: str | None) -> HubExport:
    from huggingface_hub import errors

    from gigatok_core.hub.hf import endpoint

    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(res.folder),
            revision=revision,
            allow_patterns=list(HUB_FILES),
            commit_message=f"gigatok export: {res.kind} step {res.step} ({res.group} weights)",
        )
    except errors.HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise GigatokError(
                f"{endpoint()} refused the upload to {repo_id} (HTTP {status})",
                hint="the token must have write access to that namespace (a write token, or your own user/org)",
            ) from None
        raise GigatokError(
            f"uploading to {repo_id} on {endpoint()} failed: HTTP {status}",
            hint="run the command again (an upload is one commit: nothing partial was published)",
        ) from None
    except Exception as err:  # connection errors (httpx), a disk error reading the folder
        raise GigatokError(
            f"could not upload {repo_id} to {endpoint()} ({type(err).__name__}: {str(err)[:200]})",
            hint="check the network (or HF_ENDPOINT) and run the command again",
        ) from None
    url = getattr(info, "commit_url", None) or str(info)
    return HubExport(res.folder, res.group, res.step, res.kind, url)
