"""What the training commands share: the run-setting options, the run sequence, the progress bar.

``gigatok train gpt`` and ``gigatok train tokenizer`` both use these; they live apart from
:mod:`gigatok_cli.train` (the group, which registers the subcommand modules) so that no
subcommand module imports the group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer

from gigatok_cli._common import console
from gigatok_cli.launch import maybe_launch
from gigatok_cli.options import dataclass_options, option_group

F = TypeVar("F", bound=Callable[..., Any])

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
    from gigatok_cli._common import out, plural

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
