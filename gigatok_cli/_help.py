"""How options read in ``--help``: imported by the root app and by every command module.

Kept free of heavy imports (the root ``--help`` and ``--version`` answer without torch).
"""

from __future__ import annotations

from typing import Any


def _flags_show_no_type() -> None:
    """Typer 0.29's rich help prints a value type for every option, flags included (``--grid <bool>``),
    which reads as if the flag took a value (``--grid true``). Flags take none: show no type, as
    click's plain help does."""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_gigatok_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich._gigatok_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()
