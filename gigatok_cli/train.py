"""`gigatok train` (registered; training lands in a later issue)."""

from __future__ import annotations

from gigatok_cli._common import handle_errors, not_implemented


@handle_errors
def train() -> None:
    """Train a tokenizer or a GPT (not implemented yet: exits with code 2)."""
    not_implemented("train", "tokenizer and GPT training have no implementation in gigatok yet")
