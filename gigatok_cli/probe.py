"""`gigatok probe gpt|tokenizer`: linear probing of frozen features (docs/recipes.md#linear-probing)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gigatok_cli._common import console, handle_errors, out
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options
from gigatok_cli.options import (
    HUB_HELP,
    completer,
    dataclass_options,
    hub_weights,
    option_group,
    shared_option,
)
from gigatok_cli.run import run_request
from gigatok_core import registry
from gigatok_core.config.probe import PROBE_HELP, ProbeConfig
from gigatok_core.errors import GigatokError

app = typer.Typer(
    help="Linear probing (the official protocol, docs/recipes.md#linear-probing): a BatchNorm + linear head trained with LARS on "
    "frozen features, 90 epochs with 10 of warm-up then cosine, top-1/top-5 on the val split every epoch. "
    "Outputs RUN_DIR/metrics.jsonl, RUN_DIR/results.json; a killed run resumes from its last epoch.",
    no_args_is_help=True,
)

# ---------------------------------------------------------------------------------------------
# Shared options
# ---------------------------------------------------------------------------------------------
TrainOpt = Annotated[Path, typer.Option("--train-split", help="ImageFolder tree to train the head on.")]
ValOpt = Annotated[Path, typer.Option("--val-split", help="ImageFolder tree with the same class folders.")]
OutputOpt = Annotated[Path, typer.Option("--output", help="RUN_DIR: metrics, results, checkpoint, features.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML file of probe settings.")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Restart a run folder holding another probe.")
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Probe settings as key=value (e.g. momentum=0.95 lr=0.2), applied last.", show_default=False
    ),
]


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
def gpt(
    train_split: TrainOpt,
    val_split: ValOpt,
    output: OutputOpt,
    overrides: OverridesArg = None,
    *,
    gpt: Annotated[
        str | None,
        typer.Option(
            "--gpt",
            "-g",
            help=f"GPT preset ({', '.join(registry.gpt_names())}) or released pair "
            f"({', '.join(registry.release_names())}); may be left out with a gigatok run's --gpt-checkpoint.",
            autocompletion=completer("--gpt"),
        ),
    ] = None,
    gpt_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--gpt-checkpoint",
            help="GPT weights file, or a `gigatok train gpt` RUN_DIR (latest checkpoint, EMA preferred)."
            + HUB_HELP,
            callback=hub_weights,
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            "-t",
            help="Tokenizer preset; default: the one the GPT was trained with.",
            autocompletion=completer("--tokenizer"),
        ),
    ] = None,
    tokenizer_checkpoint: shared_option("tokenizer_checkpoint", Path) = None,
    layer: Annotated[
        int | None, typer.Option("--layer", help="Feature block, 1-based (default n_layer // 2).")
    ] = None,
    recipe: dict[str, Any],
    device: shared_option("device", str) = None,
    config_file: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core.probe import ProbeRequest

    request = ProbeRequest.build(
        "gpt",
        train_split,
        val_split,
        output,
        settings={**recipe, "layer": layer},
        config_file=config_file,
        overrides=overrides,
        device=device,
        gpt=gpt,
        gpt_checkpoint=gpt_checkpoint,
        tokenizer=tokenizer,
        tokenizer_checkpoint=tokenizer_checkpoint,
        overwrite=overwrite,
    )
    _probe(request, launch)


@app.command(
    "tokenizer",
    help="Probe a tokenizer's encoder (or --fix-dim, --from-decoder) features (docs/recipes.md#linear-probing).",
)
@handle_errors
@launch_options
@option_group("recipe", _RECIPE)
def tokenizer(
    train_split: TrainOpt,
    val_split: ValOpt,
    output: OutputOpt,
    overrides: OverridesArg = None,
    *,
    tokenizer: shared_option("tokenizer", str, inspect.Parameter.empty),
    checkpoint: shared_option("checkpoint", Path) = None,
    fix_dim: Annotated[
        bool,
        typer.Option(
            "--fix-dim", help="Features after the encoder's conv_out (z channels), before quant_conv."
        ),
    ] = False,
    from_decoder: Annotated[
        bool, typer.Option("--from-decoder", help="Features of the ViT decoder (after its ln_post).")
    ] = False,
    recipe: dict[str, Any],
    device: shared_option("device", str) = None,
    config_file: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    launch: LaunchOptions = SINGLE,
) -> None:
    from gigatok_core.probe import ProbeRequest

    if fix_dim and from_decoder:
        raise GigatokError(
            "--fix-dim and --from-decoder exclude each other", hint="pick one feature location"
        )
    request = ProbeRequest.build(
        "tokenizer",
        train_split,
        val_split,
        output,
        settings=recipe,
        config_file=config_file,
        overrides=overrides,
        device=device,
        tokenizer=tokenizer,
        tokenizer_checkpoint=checkpoint,
        mode="fix_dim" if fix_dim else "decoder" if from_decoder else "encoder",
        overwrite=overwrite,
    )
    _probe(request, launch)
