"""`gigatok probe` (registered; linear probing lands in a later issue)."""

from __future__ import annotations

from gigatok_cli._common import handle_errors, not_implemented


@handle_errors
def probe() -> None:
    """Linear probing of tokenizer or GPT features (not implemented yet: exits with code 2)."""
    not_implemented("probe", "linear probing has no implementation in gigatok yet")
