"""One domain error type: what went wrong and what to do about it.

The CLI turns a :class:`GigatokError` into a short rich message and exit code 1; library users
catch it like any exception. Never raise it for programming errors (use assert / ValueError).
"""

from __future__ import annotations


class GigatokError(Exception):
    """A user-facing error: ``message`` says what was wrong, ``hint`` what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class NotImplementedYet(GigatokError):
    """A registered command whose implementation has not landed; the CLI exits with code 2."""
