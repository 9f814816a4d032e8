"""`gigatok probe gpt|tokenizer`: linear probing of frozen features (docs/recipes.md#linear-probing)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gigatok_cli._common import console, handle_errors, out
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import dataclass_options, option_group, shared_option
from gigatok_cli.run import run_request
from gigatok_core.config.probe import PROBE_HELP, ProbeConfig
from gigatok_core.errors import GigatokError

PAIRED = "Tokenizer preset; default: the one the GPT was trained with."

app = typer.Typer(
    help="Linear probing (the official protocol, docs/recipes.md#linear-probing): a BatchNorm + linear head trained with LARS on "
    "frozen features, 90 epochs with 10 of warm-up then cosine, top-1/top-5 on the val split every epoch. "
    "Outputs RUN_DIR/metrics.jsonl, RUN_DIR/results.json; a killed run resumes from its last epoch.",
    no_args_is_help=True,
)


# ---------------------------------------------------------------------------------------------
# The options of both commands
# ---------------------------------------------------------------------------------------------
def _opt(flag: str, kind: Any, text: str) -> Any:
    return Annotated[kind, typer.Option(flag, help=text)]


# ProbeRequest.build's arguments, as both commands take them
_COMMON: dict[str, tuple[Any, Any]] = {
    "train_split": (
        _opt("--train-split", Path, "ImageFolder tree to train the head on."),
        inspect.Parameter.empty,
    ),
    "val_split": (
        _opt("--val-split", Path, "ImageFolder tree with the same class folders."),
        inspect.Parameter.empty,
    ),
    "output": (
        _opt("--output", Path, "RUN_DIR: metrics, results, checkpoint, features."),
        inspect.Parameter.empty,
    ),
    "overrides": (
        Annotated[
            list[str] | None,
            typer.Argument(help="Probe settings as key=value (e.g. momentum=0.95 lr=0.2), applied last."),
        ],
        None,
    ),
    "device": (shared_option("device", str), None),
    "config_file": (_opt("--config", Path | None, "YAML file of probe settings."), None),
    "overwrite": (_opt("--overwrite", bool, "Restart a run folder holding another probe."), False),
}


# The recipe options of both commands: ProbeConfig's fields with its defaults, except precision,
# whose default (None) is the official one for the backbone and device (ProbeRequest.build)
_RECIPE_NAMES = ("epochs", "warmup_epochs", "subset", "batch_size", "blr", "precision", "cache_features")
_RECIPE_NAMES += ("cache_draws", "cache_dir", "augment", "workers", "seed")
_RECIPE: dict[str, tuple[Any, Any]] = dataclass_options(
    ProbeConfig, PROBE_HELP, names=_RECIPE_NAMES, flags={"epochs": "--max-epochs"}, panel="Recipe"
)
_RECIPE["precision"] = dataclass_options(
    ProbeConfig, PROBE_HELP, names=["precision"], panel="Recipe", unset=True
)["precision"]


def _show_epoch(row: dict[str, Any]) -> None:
    """One line per epoch (rank 0 only)."""
    from gigatok_core.dist import dist_info

    if dist_info().is_main:
        console.print(
            f"epoch {row['epoch']}: top-1 {row['top1']:.2f}%  top-5 {row['top5']:.2f}%  "
            f"train loss {row['loss']:.4f}  val loss {row['val_loss']:.4f}  lr {row['lr']:.3g}",
            highlight=False,
            soft_wrap=True,
        )


def _render(title: str, result: Any, output: Path) -> None:
    table = Table(title=title)
    for col in ("epoch", "top-1 %", "top-5 %", "train loss", "val loss"):
        table.add_column(col, justify="right")
    for r in result.history:
        table.add_row(
            str(r["epoch"]),
            f"{r['top1']:.2f}",
            f"{r['top5']:.2f}",
            f"{r['loss']:.4f}",
            f"{r['val_loss']:.4f}",
        )
    out.print(table)
    out.print(
        f"final top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}% -> {output / 'results.json'}",
        highlight=False,
    )


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
def _probe(request: Any, launch: LaunchOptions) -> None:
    """Fetch the weights and launch the workers if asked, then probe with a progress bar and render."""
    run_request(
        request,
        type(request).run,
        lambda result: _render(request.title, result, request.output),
        launch=launch,
        label="probe",
        rate="batch/s",
        prefetch=request.required_files,
        on_epoch=_show_epoch,
    )


@app.command(
    "gpt",
    help="Probe a GPT: null-class input, block n_layer//2 mean-pooled (docs/recipes.md#linear-probing).",
)
@handle_errors
@launch_options
@option_group("recipe", _RECIPE)
@option_group("common", _COMMON)
def gpt(
    *,
    common: dict[str, Any],
    gpt: shared_option(
        "gpt",
        str,
        env=False,
        help="GPT preset or released pair (GPT@tokenizer); may be "
        "left out with a gigatok run's --gpt-checkpoint.",
    ) = None,
    gpt_checkpoint: shared_option("gpt_checkpoint", Path) = None,
    tokenizer: shared_option("tokenizer", str, env=False, help=PAIRED) = None,
    tokenizer_checkpoint: shared_option("tokenizer_checkpoint", Path) = None,
    layer: _opt("--layer", int | None, "Feature block, 1-based (default n_layer // 2).") = None,
    recipe: dict[str, Any],
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core.probe import ProbeRequest

    weights = {"gpt_checkpoint": gpt_checkpoint, "tokenizer_checkpoint": tokenizer_checkpoint}
    settings = {**recipe, "layer": layer}
    _probe(
        ProbeRequest.build("gpt", settings=settings, gpt=gpt, tokenizer=tokenizer, **weights, **common),
        launch,
    )


@app.command(
    "tokenizer",
    help="Probe a tokenizer's encoder (or --fix-dim, --from-decoder) features (docs/recipes.md#linear-probing).",
)
@handle_errors
@launch_options
@option_group("recipe", _RECIPE)
@option_group("common", _COMMON)
def tokenizer(
    *,
    common: dict[str, Any],
    tokenizer: shared_option("tokenizer", str, inspect.Parameter.empty),
    checkpoint: shared_option("checkpoint", Path) = None,
    fix_dim: _opt(
        "--fix-dim", bool, "Features after the encoder's conv_out (z channels), before quant_conv."
    ) = False,
    from_decoder: _opt("--from-decoder", bool, "Features of the ViT decoder (after its ln_post).") = False,
    recipe: dict[str, Any],
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core.probe import ProbeRequest

    if fix_dim and from_decoder:
        raise GigatokError(
            "--fix-dim and --from-decoder exclude each other", hint="pick one feature location"
        )
    mode = "fix_dim" if fix_dim else "decoder" if from_decoder else "encoder"
    request = ProbeRequest.build(
        "tokenizer",
        settings=recipe,
        tokenizer=tokenizer,
        tokenizer_checkpoint=checkpoint,
        mode=mode,
        **common,
    )
    _probe(request, launch)
