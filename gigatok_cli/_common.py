"""Shared CLI plumbing: error rendering, the console, the progress renderer."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from gigatok_core.errors import GigatokError, SettingError
from gigatok_core.utils.progress import ProgressFn

console = Console(stderr=True)
out = Console()

__all__ = ["console", "handle_errors", "os_error_text", "out", "print_error", "progress_bar"]


F = TypeVar("F", bound=Callable[..., Any])


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        label = "[bold yellow]warning:[/]" if record.levelno >= logging.WARNING else "[dim]note:[/]"
        console.print(f"{label} {escape(record.getMessage())}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _notes_shown() -> Iterator[None]:
    """Show the library's INFO messages (``gigatok`` logger, e.g. checkpoint keys left out) as notes,
    its warnings (e.g. which weights decode when they are not what a GPT learned from) as warnings."""
    logger = logging.getLogger("gigatok")
    handler, level = _NoteHandler(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def handle_errors(fn: F) -> F:
    """Turn a :class:`GigatokError` (or an OS error: disk full, permissions) into a short message:
    exit 1 (130 when interrupted)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _notes_shown():
                return fn(*args, **kwargs)
        except GigatokError as err:
            if isinstance(err, SettingError):  # the library names settings, the CLI its flags
                err = err.for_cli()
            print_error(err.message, err.hint)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except OSError as err:  # disk full, read-only folder, a file where a folder should be, network
            print_error(*os_error_text(err))
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_error(message: str, hint: str | None = None) -> None:
    """``error: MESSAGE`` and ``hint: HINT`` on stderr, printed as written ("[lists]" is no markup)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)


def os_error_text(err: OSError) -> tuple[str, str]:
    """The message (naming the file) and the hint of an OS error: network, disk or permissions."""
    import requests

    message = f"{err.strerror or err}" + (f" ({err.filename})" if err.filename else "")
    if isinstance(err, requests.RequestException):  # requests' errors are OSErrors too
        return message, "check the network connection and run the command again (downloads resume)"
    return message, disk_hint(err)


def disk_hint(err: OSError) -> str:
    """What to check after an OS error writing or reading a file, naming where (and the free space
    when the disk is full)."""
    import errno

    from gigatok_core.utils.fileio import free_bytes, human_bytes

    where = Path(os.fsdecode(err.filename)).absolute().parent if err.filename else None
    if where is None:
        return "check free space and permissions of the output folder; completed outputs are kept"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(where)
        left = f" ({human_bytes(free)} free)" if free is not None else ""
        return f"free space on the disk holding {where}{left}; completed outputs are kept"
    return f"check free space and permissions of {where}; completed outputs are kept"


class _Rate(ProgressColumn):
    """Items per second, with a unit ("img/s")."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.1f} {self.unit}" if task.speed else f"- {self.unit}")


@contextlib.contextmanager
def progress_bar(label: str = "", *, enabled: bool = True, rate: str | None = None) -> Iterator[ProgressFn]:
    """The one renderer of :mod:`gigatok_core.utils.progress`: transient rich bars on stderr, one per stage.

    Yields ``on_progress(done, total, *, stage="")``; a stage left empty is shown as ``label``.
    A smaller ``done`` than before restarts that stage's bar (a CFG search samples once per scale).
    ``rate`` (a unit such as "img/s") adds a speed column.
    """
    speed = (_Rate(rate),) if rate else ()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *speed,
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not enabled, transient=True) as progress:
        tasks: dict[str, TaskID] = {}

        def on_progress(done: int, total: int | None, *, stage: str = "") -> None:
            name = stage or label
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        yield on_progress


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 image``, ``2 images`` (``words``: an irregular plural)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"
