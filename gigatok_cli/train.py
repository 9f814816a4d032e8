"""`gigatok train`: the training commands (`gpt`, `export` here; `extract-codes`, `tokenizer` in their
own modules, registered at the bottom)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gigatok_cli._common import handle_errors, out
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import completer
from gigatok_cli.train_common import (
    ConfigFileOpt,
    ResumeOpt,
    RunDirOpt,
    StartOverOpt,
    run_options,
    run_training,
)
from gigatok_core import registry  # presets as data: no torch import

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
def gpt(
    *,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            "-p",
            help=f"GPT preset: {', '.join(registry.gpt_names())}.",
            autocompletion=completer(registry.gpt_names),
        ),
    ],
    codes: Annotated[
        Path, typer.Option("--codes", help="CODES_DIR written by `gigatok train extract-codes`.")
    ],
    output: RunDirOpt,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value settings, e.g. recipe.warmup=0 run.ema=true.")
    ] = None,
    config: ConfigFileOpt = None,
    val_codes: Annotated[
        Path | None, typer.Option("--val-codes", help="Held-out CODES_DIR for the validation loss.")
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option("--val-fraction", help="Hold out this fraction of --codes for the validation loss."),
    ] = None,
    resume: ResumeOpt = "auto",
    overwrite: StartOverOpt = False,
    run: dict[str, Any],
    launch: LaunchOptions = SINGLE,
) -> None:
    """Train a class-conditional GPT on pre-extracted codes (the official recipe, docs/recipes.md#gpt)."""
    from gigatok_core.config import GPTTrainConfig
    from gigatok_core.train.gpt import prefetch_gpt_training, train_gpt

    cfg = GPTTrainConfig.from_options(preset, config_file=config, overrides=overrides or [], **run)
    run_training(
        cfg,
        launch,
        label="gpt",
        what=preset,
        output=output,
        prefetch=lambda: prefetch_gpt_training(cfg, codes, val_codes=val_codes),
        train=lambda **show: train_gpt(
            cfg,
            codes=codes,
            output=output,
            val_codes=val_codes,
            val_fraction=val_fraction,
            resume=resume,
            overwrite=overwrite,
            **show,
        ),
    )


@app.command("export")
@handle_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (or one of its checkpoint folders).")],
    dest: Annotated[
        Path | None,
        typer.Argument(
            help="The .safetensors file to write; with --format hub a folder (optional with --to-hub).",
            show_default=False,
        ),
    ] = None,
    *,
    weights: Annotated[
        str | None, typer.Option("--weights", help="Weights group (default: ema when kept, else model).")
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="safetensors: one self-describing file. hub: a Hugging Face model repository folder "
            "(model.safetensors, config.json, README.md model card).",
            autocompletion=completer("--format"),
        ),
    ] = "safetensors",
    to_hub: Annotated[
        str | None,
        typer.Option(
            "--to-hub",
            help="Upload the hub folder to this Hugging Face repo (OWNER/REPO; created if missing). "
            "Needs HF_TOKEN or `hf auth login`.",
            show_default=False,
        ),
    ] = None,
    private: Annotated[
        bool, typer.Option("--private", help="With --to-hub: create the repo private.")
    ] = False,
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision",
            help="With --to-hub: the branch to commit to (created from main).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
) -> None:
    """Write a run's inference weights alone, self-describing (config and pairing in the header);
    or as a Hugging Face model repository (--format hub), uploaded with --to-hub.

    Examples: gigatok train export runs/gpt mine.safetensors | gigatok train export runs/tok hub-folder --format hub |
    gigatok train export runs/tok --to-hub alice/my-tokenizer --private
    """
    from gigatok_core.train.export import ExportResult, export_run

    res = export_run(
        run_dir,
        dest,
        format=format_,
        to_hub=to_hub,
        group=weights,
        private=private,
        revision=revision,
        overwrite=overwrite,
    )
    if isinstance(res, ExportResult):
        text = f"wrote {res.path} ({res.group} weights of step {res.step}, {res.num_tensors} tensors)"
    elif to_hub is not None:
        text = (
            f"uploaded {res.kind} weights ({res.group}, step {res.step}) to {to_hub}: {res.url}\n"
            f"load them with hf://{to_hub}" + (f"@{revision}" if revision else "")
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
