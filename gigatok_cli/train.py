"""`gigatok train`: train a tokenizer or a GPT, prepare their data, export trained weights.

Each command takes the settings of its request (:mod:`gigatok_core.config.requests`) as options;
``gpt`` and ``tokenizer`` also take the run settings given one by one (:func:`run_options`,
:class:`gigatok_core.config.RunConfig`) and share one run sequence (:func:`run_training`: check the
batch split, launch the workers, show the config and a progress bar, report).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from gigatok_cli._common import console, handle_errors, out, plural
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options, maybe_launch
from gigatok_cli.options import dataclass_options, option_group
from gigatok_cli.run import request_command, request_options
from gigatok_core.config.requests import ExportRequest, GPTTrainRequest, TokenizerTrainRequest

if TYPE_CHECKING:
    from gigatok_core.data.extract import ExtractReport

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="train",
    help="Train a tokenizer or a GPT, prepare their data, export trained weights.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ---------------------------------------------------------------------------------------------
# What the two training commands share
# ---------------------------------------------------------------------------------------------
PANEL = "Run settings (run.KEY=VALUE overrides, applied last)"


def run_options(*names: str, help: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Add the run-setting options ``names`` (:class:`gigatok_core.config.RunConfig` fields, in this
    order in ``--help``) to a command that takes them as ``run: dict[str, Any]`` (None: not given),
    the mapping :meth:`gigatok_core.config.GPTTrainConfig.from_options` takes. ``help`` replaces an
    option's help (:data:`gigatok_core.config.train.RUN_HELP`) for this command. Put it below
    ``@launch_options``."""
    from gigatok_core.config.train import RUN_HELP, RunConfig

    texts = {**RUN_HELP, **(help or {})}
    return option_group("run", dataclass_options(RunConfig, texts, names=names, panel=PANEL, unset=True))


def run_training(
    cfg: Any,
    launch: Any,
    *,
    label: str,
    what: str,
    output: Path,
    prefetch: Callable[[], object],
    train: Callable[..., Any],
) -> None:
    """The sequence of a training command: check the batch split over the processes asked for,
    launch the workers (the parent fetches what they read first), show the resolved config and a
    progress bar (``label``) on the main process, train (``train(on_step=..., on_start=...)``), report.
    ``what`` names the model in "training WHAT in OUTPUT"."""
    from gigatok_core.dist import dist_info
    from gigatok_core.train.run_dir import config_yaml

    check_batch_split(cfg, launch)  # options are checked before any worker starts
    if maybe_launch(launch, prefetch=prefetch):
        return  # the workers trained; this (parent) process is done
    is_main = dist_info().is_main

    def on_start(resolved: Mapping[str, Any], resumed: bool) -> None:
        console.print(f"[bold]{'resuming' if resumed else 'training'}[/] {what} in {output}")
        console.print(config_yaml(resolved), highlight=False, markup=False)

    with training_progress(label, enabled=is_main) as on_step:
        result = train(on_step=on_step, on_start=on_start if is_main else None)
    if is_main:
        report_fit(result)


def report_fit(result: Any) -> None:
    """The last lines of a training command (a :class:`~gigatok_core.train.engine.FitResult`); a run
    stopped by a signal exits with 128 + its number once the checkpoint is safe (SIGTERM: 143)."""
    if result.stopped:
        console.print(
            f"[yellow]stopped by {result.stopped}[/] at step {result.step}; checkpoint {result.checkpoint}. "
            f"Run the same command again to resume (exit code {result.exit_code}).",
            highlight=False,
        )
        raise typer.Exit(result.exit_code)
    if result.trained == 0:
        out.print(
            f"nothing to train: {result.run_dir} already reached step {result.step} (--max-steps); "
            f"checkpoint: {result.checkpoint}",
            highlight=False,
        )
        return
    out.print(f"trained {plural(result.step, 'step')}; checkpoint: {result.checkpoint}", highlight=False)


def format_rate(steps_per_s: float | None, samples_per_s: Any) -> str:
    """``"0.05 step/s 0.4 samples/s"``: significant digits for slow runs (never "0 samples/s"),
    nothing for a rate not measured yet."""

    def fmt(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    parts = [f"{fmt(steps_per_s)} step/s"] if steps_per_s else []
    if isinstance(samples_per_s, (int, float)) and samples_per_s > 0:
        parts.append(f"{fmt(samples_per_s)} samples/s")
    return " ".join(parts)


@contextlib.contextmanager
def training_progress(total_label: str, *, enabled: bool) -> Iterator[Any]:
    """A rich bar (step/s, samples/s, ETA, the main losses); yields the engine's ``on_step``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(total_label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not enabled, transient=False) as progress:
        task = progress.add_task(total_label, total=None, rate="", losses="")

        def on_step(step: int, total: int, last: Mapping[str, Any]) -> None:
            rate = format_rate(progress.tasks[0].speed, last.get("samples_per_s"))
            shown = [f"{k} {last[k]:.4f}" for k in ("loss", "val_loss") if isinstance(last.get(k), float)]
            progress.update(task, completed=step, total=total, rate=rate, losses=" ".join(shown))

        yield on_step


def check_batch_split(cfg: Any, launch: Any) -> None:
    """Refuse a global batch that does not divide over the processes ``--nproc-per-node`` (x
    ``--nnodes``) asks for, in the parent, before any worker starts."""
    import os

    from gigatok_core.train.state import LoopSettings

    if os.environ.get("RANK") is None:  # under torchrun already, each worker checks its own world
        LoopSettings.from_train_config(cfg).micro_batch(launch.local_workers() * launch.nnodes)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
# the run settings each training command takes as options (the others: run.KEY=VALUE)
GPT_RUN_OPTIONS = (
    "max_steps", "batch_size", "grad_accum", "lr", "seed", "save_every", "keep", "log_every", "val_every",
    "sample_every", "device", "precision", "strategy", "compile", "on_nan",
)  # fmt: skip
TOKENIZER_RUN_OPTIONS = (
    "max_steps", "batch_size", "grad_accum", "lr", "seed", "save_every", "keep", "log_every",
    "sample_every", "device", "precision", "strategy", "ema", "compile", "on_nan",
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


def _render_codes(report: ExtractReport) -> None:
    m = report.manifest
    if report.already_complete:
        out.print(
            f"{m.root} already holds these codes ({plural(m.num_images, 'image')}); nothing to do",
            highlight=False,
        )
        return
    if report.skipped:
        console.print(
            f"[yellow]{plural(len(report.skipped), 'image')} skipped[/] (unreadable or too elongated; listed in manifest.json)"
        )
    resumed = f", {report.reused_shards} kept from an earlier run" if report.reused_shards else ""
    out.print(
        f"wrote {plural(m.num_images, 'image')} x {m.crops} crops in {plural(len(m.shards), 'shard')} to {m.root}"
        f" ({report.encoded_shards} written{resumed}; {report.images_per_second:,.1f} images/s)",
        highlight=False,
    )
    if report.check_grid is not None:
        out.print(f"wrote {report.check_grid}", highlight=False)


@app.command("extract-codes")
@handle_errors
@request_command(
    "ExtractCodesRequest", "gigatok_core.data.extract:extract_codes", _render_codes, rate="img/s"
)
def extract_codes(**settings: Any) -> None:
    """Encode images into tokenizer codes once, for `gigatok train gpt --codes CODES_DIR`.

    A killed run resumes when started again with the same options.
    Example: gigatok train extract-codes --tokenizer xl-xxl --data imagenet/train --output codes --ten-crop
    """


@app.command("tokenizer")
@handle_errors
@launch_options
@run_options(
    *TOKENIZER_RUN_OPTIONS,
    help={
        "sample_every": "Steps between reconstruction grids (RUN_DIR/samples).",
        "compile": "torch.compile the model (default: off, as the official recipe).",
    },
)
@request_options("TokenizerTrainRequest")
def tokenizer(request: TokenizerTrainRequest, run: dict[str, Any], launch: LaunchOptions = SINGLE) -> None:
    """Train a VQ tokenizer with the official GigaTok recipe (or fine-tune one with --init)."""
    from gigatok_core.config import TokenizerTrainConfig
    from gigatok_core.train.tokenizer.task import prefetch_tokenizer_training, train_tokenizer

    r = request
    cfg = TokenizerTrainConfig.from_options(
        r.preset, config_file=r.config, overrides=r.overrides or [], **run
    )
    run_training(
        cfg,
        launch,
        label="tokenizer",
        what=f"tokenizer {r.preset}",
        output=Path(r.output),
        prefetch=lambda: prefetch_tokenizer_training(cfg, frozen=r.frozen, init=r.init, data=r.data),
        train=lambda **show: train_tokenizer(
            cfg,
            data=r.data,
            output=r.output,
            init=r.init,
            frozen=r.frozen,
            num_workers=r.workers,
            resume=r.resume,
            overwrite=r.overwrite,
            **show,
        ),
    )
