"""`gigatok train`: the training commands (`gpt`, `export` here; `extract-codes`, `tokenizer` in their
own modules, registered at the bottom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gigatok_cli._common import handle_errors, out
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.run import request_options
from gigatok_cli.train_common import run_options, run_training
from gigatok_core.config.requests import ExportRequest, GPTTrainRequest

app = typer.Typer(
    name="train",
    help="Train a tokenizer or a GPT, prepare their data, export trained weights.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# the run settings `train gpt` takes as options (the others: run.KEY=VALUE)
GPT_RUN_OPTIONS = (
    "max_steps", "batch_size", "grad_accum", "lr", "seed", "save_every", "keep", "log_every", "val_every",
    "sample_every", "device", "precision", "strategy", "compile", "on_nan",
)  # fmt: skip


@app.command("gpt")
@handle_errors
@launch_options
@run_options(
    *GPT_RUN_OPTIONS,
    help={
        "compile": "torch.compile the model (default: on CUDA as the official recipe; off on CPU and "
        "under FSDP)."
    },
)
@request_options("GPTTrainRequest")
def gpt(request: GPTTrainRequest, run: dict[str, Any], launch: LaunchOptions = SINGLE) -> None:
    """Train a class-conditional GPT on pre-extracted codes (the official recipe, docs/recipes.md#gpt)."""
    from gigatok_core.config import GPTTrainConfig
    from gigatok_core.train.gpt import prefetch_gpt_training, train_gpt

    cfg = GPTTrainConfig.from_options(
        request.preset, config_file=request.config, overrides=request.overrides or [], **run
    )
    run_training(
        cfg,
        launch,
        label="gpt",
        what=request.preset,
        output=Path(request.output),
        prefetch=lambda: prefetch_gpt_training(cfg, request.codes, val_codes=request.val_codes),
        train=lambda **show: train_gpt(
            cfg,
            codes=request.codes,
            output=request.output,
            val_codes=request.val_codes,
            val_fraction=request.val_fraction,
            resume=request.resume,
            overwrite=request.overwrite,
            **show,
        ),
    )


@app.command("export")
@handle_errors
@request_options("ExportRequest")
def export(request: ExportRequest) -> None:
    """Write a run's inference weights alone, self-describing (config and pairing in the header);
    or as a Hugging Face model repository (--format hub), uploaded with --to-hub.

    Examples: gigatok train export runs/gpt mine.safetensors | gigatok train export runs/tok hub-folder --format hub |
    gigatok train export runs/tok --to-hub alice/my-tokenizer --private
    """
    from gigatok_core.train.export import ExportResult, export

    res = export(request)
    if isinstance(res, ExportResult):
        text = f"wrote {res.path} ({res.group} weights of step {res.step}, {res.num_tensors} tensors)"
    elif request.to_hub is not None:
        text = (
            f"uploaded {res.kind} weights ({res.group}, step {res.step}) to {request.to_hub}: {res.url}\n"
            f"load them with hf://{request.to_hub}" + (f"@{request.revision}" if request.revision else "")
        )
    else:
        text = (
            f"wrote {res.folder} ({res.group} weights of step {res.step}: model.safetensors, config.json, "
            f"README.md); upload it with `hf upload OWNER/REPO {res.folder}`"
        )
    out.print(text, highlight=False, soft_wrap=True)


# Subcommands live in their own modules and are registered here (they never import this module).
from gigatok_cli.train_codes import extract_codes  # noqa: E402

app.command("extract-codes")(extract_codes)

from gigatok_cli.train_tokenizer import tokenizer  # noqa: E402

app.command("tokenizer")(tokenizer)
