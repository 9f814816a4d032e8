"""Shared CLI plumbing: error rendering and the console."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gigatok_core.errors import GigatokError, NotImplementedYet

console = Console(stderr=True)
out = Console()

PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="fp32, bf16 or fp16 (fp16 needs a GPU; bf16 a GPU or a CPU with AVX512-BF16/AMX).",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[dim]note:[/] {record.getMessage()}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _notes_shown() -> Iterator[None]:
    """Show the library's INFO messages (``gigatok`` logger, e.g. checkpoint keys left out) as notes."""
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
    exit 1 (2 for 'not implemented yet', 130 when interrupted)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _notes_shown():
                return fn(*args, **kwargs)
        except NotImplementedYet as err:
            console.print(f"[yellow]not implemented yet:[/] {err.message}")
            raise typer.Exit(2) from None
        except GigatokError as err:
            console.print(f"[bold red]error:[/] {err.message}", highlight=False, soft_wrap=True)
            if err.hint:
                console.print(f"[dim]hint:[/] {err.hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except OSError as err:  # disk full, read-only folder, a file where a folder should be, network
            where = f" ({err.filename})" if err.filename else ""
            console.print(
                f"[bold red]error:[/] {err.strerror or err}{where}", highlight=False, soft_wrap=True
            )
            console.print(f"[dim]hint:[/] {_os_error_hint(err)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _os_error_hint(err: OSError) -> str:
    import requests

    if isinstance(err, requests.RequestException):  # requests' errors are OSErrors too
        return "check the network connection and run the command again (downloads resume)"
    return (
        "check free space and permissions of that path (the cache is $GIGATOK_CACHE, see "
        "`gigatok download --where`); completed outputs are kept"
    )


def not_implemented(what: str, issue: str) -> None:
    raise NotImplementedYet(f"`gigatok {what}` is registered but not implemented yet: {issue}")


@contextlib.contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A transient rich bar on stderr; yields the ``on_progress(done, total)`` callback the library takes."""
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not enabled, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield on_progress
