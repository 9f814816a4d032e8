"""How options read in ``--help``: flags show no value type.

Typer 0.29's rich help prints a type for every option, flags included (``--grid <bool>``, ``--help
<bool>``), which reads as if the flag took a value (``--grid true``); click's plain help shows none.
Typer supports no switch for this, but it supports the two pieces used here: an option's
``metavar`` (printed in the type column in place of the type, so ``""`` prints nothing) and the
``cls=`` of a command or group. :class:`Command` and :class:`Group` give every flag they render,
``--help`` included (which Typer builds itself, so no declaration can set its metavar), an empty
metavar just before rendering their help; :func:`plain_flags` sets them as the ``cls`` of a
``typer.Typer`` app's group and commands, where none is set. No Typer class is patched: other
Typer apps in the same process keep their display.

Kept free of heavy imports (the root ``--help`` and ``--version`` answer without torch).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["Command", "Group", "plain_flags"]


class _FlagsShowNoType:
    """The help of a command whose flags (not counters) show no value type."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            if getattr(param, "is_flag", False) and not getattr(param, "count", False):
                if param.metavar is None:
                    param.metavar = ""  # what typer.Option(metavar="") declares
        super().format_help(ctx, formatter)  # type: ignore[misc]


class Command(_FlagsShowNoType, TyperCommand):
    """A Typer command whose flags show no value type in ``--help``."""


class Group(_FlagsShowNoType, TyperGroup):
    """A Typer group whose flags show no value type in ``--help``."""


def plain_flags(app: typer.Typer) -> typer.Typer:
    """Give ``app``'s group, its commands and its sub-apps :class:`Group` / :class:`Command` as their
    ``cls=`` (where the module chose no class of its own), before Typer builds them; returns ``app``."""
    if not isinstance(app.info.cls, type):  # unset: None or Typer's placeholder for its default
        app.info.cls = Group
    for info in app.registered_commands:
        if not isinstance(info.cls, type) or info.cls is TyperCommand:  # Typer's default
            info.cls = Command
    for group in app.registered_groups:
        if isinstance(group.typer_instance, typer.Typer):
            plain_flags(group.typer_instance)
    return app
