"""What the training commands share: the run-setting conveniences and the progress bar.

``gigatok train gpt`` and ``gigatok train tokenizer`` both use these; they live apart from
:mod:`gigatok_cli.train` (the group, which registers the subcommand modules) so that no
subcommand module imports the group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from gigatok_cli._common import console

# The conveniences over `key=value` overrides: option -> run.* key (spec: one grammar, preset ->
# --config FILE -> key=value; the options are applied last).
RUN_OPTIONS = (
    "max_steps",
    "batch_size",
    "lr",
    "seed",
    "save_every",
    "keep",
    "log_every",
    "val_every",
    "sample_every",
    "device",
    "precision",
    "grad_accum",
    "strategy",
    "on_nan",
)


def run_overrides(values: Mapping[str, Any]) -> list[str]:
    """``run.KEY=VALUE`` for each convenience option that was given (None = not given)."""
    return [f"run.{key}={values[key]}" for key in RUN_OPTIONS if values.get(key) is not None]


def report_fit(result: Any) -> None:
    """The last lines of a training command (a :class:`~gigatok_core.train.engine.FitResult`); a run
    stopped by a signal exits with 128 + its number once the checkpoint is safe (SIGTERM: 143)."""
    import typer

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
