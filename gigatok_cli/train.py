"""`gigatok train`: the training commands (`gpt`, `export` here; `extract-codes`, `tokenizer` in their
own modules, registered at the bottom)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from gigatok_cli._common import console, handle_errors, out
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options, maybe_launch
from gigatok_cli.train_common import run_overrides, training_progress
from gigatok_core import registry  # presets as data: no torch import

app = typer.Typer(
    name="train",
    help="Train a tokenizer or a GPT, prepare their data, export trained weights.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _complete_gpt(incomplete: str) -> list[str]:
    return [n for n in registry.gpt_names() if n.startswith(incomplete)]


@app.command("gpt")
@handle_errors
@launch_options
def gpt(
    *,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            "-p",
            help=f"GPT preset: {', '.join(registry.gpt_names())}.",
            autocompletion=_complete_gpt,
        ),
    ],
    codes: Annotated[
        Path, typer.Option("--codes", help="CODES_DIR written by `gigatok train extract-codes`.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder (checkpoints, logs, samples).")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value settings, e.g. recipe.warmup=0 run.ema=true.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file applied over the preset.", show_default=False)
    ] = None,
    val_codes: Annotated[
        Path | None, typer.Option("--val-codes", help="Held-out CODES_DIR for the validation loss.")
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option("--val-fraction", help="Hold out this fraction of --codes for the validation loss."),
    ] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Global batch (all processes and accumulation).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Base learning rate.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="Steps between checkpoints.")] = None,
    keep: Annotated[int | None, typer.Option("--keep", help="Checkpoints kept (newest).")] = None,
    log_every: Annotated[int | None, typer.Option("--log-every", help="Steps between log records.")] = None,
    val_every: Annotated[
        int | None, typer.Option("--val-every", help="Steps between validation passes.")
    ] = None,
    sample_every: Annotated[
        int | None, typer.Option("--sample-every", help="Steps between sample grids (RUN_DIR/samples).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="fp32, bf16 or fp16.")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Micro-batches per step.")] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="ddp or fsdp.")] = None,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the model [default: on CUDA as the official recipe; off on CPU and under FSDP].",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[str, typer.Option("--resume", help="auto (continue RUN_DIR) or never.")] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="With --resume never: replace a previous run.")
    ] = False,
    on_nan: Annotated[str | None, typer.Option("--on-nan", help="stop or skip a non-finite step.")] = None,
    launch: LaunchOptions = SINGLE,
) -> None:
    """Train a class-conditional GPT on pre-extracted codes (the official recipe, spec ar §6)."""
    from gigatok_core.config import GPTTrainConfig
    from gigatok_core.dist import dist_info
    from gigatok_core.train.gpt import prefetch_gpt_training, train_gpt
    from gigatok_core.train.run_dir import config_yaml

    given = {k: v for k, v in locals().items() if k != "launch"}
    dotlist = [*(overrides or []), *run_overrides(given)]
    if compile is not None:
        dotlist.append(f"run.compile={str(compile).lower()}")
    cfg = GPTTrainConfig.from_name(preset, config_file=config, overrides=dotlist)
    if maybe_launch(launch, prefetch=lambda: prefetch_gpt_training(cfg, codes, val_codes=val_codes)):
        return  # the workers trained; this (parent) process is done
    is_main = dist_info().is_main

    def on_start(resolved: Mapping[str, Any], resumed: bool) -> None:
        console.print(f"[bold]{'resuming' if resumed else 'training'}[/] {preset} in {output}")
        console.print(config_yaml(resolved), highlight=False, markup=False)

    with training_progress("gpt", enabled=is_main) as on_step:
        result = train_gpt(
            cfg,
            codes=codes,
            output=output,
            val_codes=val_codes,
            val_fraction=val_fraction,
            resume=resume,
            overwrite=overwrite,
            on_step=on_step,
            on_start=on_start if is_main else None,
        )
    if not is_main:
        return
    if result.stopped:
        console.print(
            f"[yellow]stopped by {result.stopped}[/] at step {result.step}; checkpoint {result.checkpoint}. "
            "Run the same command again to resume."
        )
    else:
        out.print(f"trained {result.step} steps; checkpoint: {result.checkpoint}", highlight=False)


@app.command("export")
@handle_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (or one of its checkpoint folders).")],
    dest: Annotated[Path, typer.Argument(help="The .safetensors file to write.")],
    *,
    weights: Annotated[
        str | None, typer.Option("--weights", help="Weights group (default: ema when kept, else model).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
) -> None:
    """Write a run's inference weights alone, self-describing (config and pairing in the header)."""
    from gigatok_core.train.export import export_weights

    res = export_weights(run_dir, dest, group=weights, overwrite=overwrite)
    out.print(
        f"wrote {res.path} ({res.group} weights of step {res.step}, {res.num_tensors} tensors)",
        highlight=False,
    )


# Subcommands live in their own modules and are registered here (they never import this module).
from gigatok_cli.train_codes import extract_codes  # noqa: E402

app.command("extract-codes")(extract_codes)

from gigatok_cli.train_tokenizer import tokenizer  # noqa: E402

app.command("tokenizer")(tokenizer)
