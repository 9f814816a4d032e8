"""`gigatok sample`."""

from __future__ import annotations

from gigatok_cli._common import handle_errors, not_implemented


@handle_errors
def sample() -> None:
    """Not implemented yet."""
    not_implemented("sample", "pending")
