"""Shared CLI plumbing: error rendering and the console."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from gigatok_core.errors import GigatokError, NotImplementedYet

console = Console(stderr=True)
out = Console()

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn a :class:`GigatokError` into a short message: exit 1 (2 for 'not implemented yet')."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
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

    return wrapper  # type: ignore[return-value]


def not_implemented(what: str, issue: str) -> None:
    raise NotImplementedYet(f"`gigatok {what}` is registered but not implemented yet: {issue}")
