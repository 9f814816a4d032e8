"""One domain error type: what went wrong and what to do about it.

The CLI turns a :class:`GigatokError` into a short rich message and exit code 1; library users
catch it like any exception. Never raise it for programming errors (use assert / ValueError).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping


class GigatokError(Exception):
    """A user-facing error: ``message`` says what was wrong, ``hint`` what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SettingError(GigatokError):
    """A bad setting of a request (:mod:`gigatok_core.config.requests`), named as Python writes it.

    ``template`` names settings in braces (``"{num_per_class} must be at least 1, got 0"``), and
    writes a user's value (a path) through :func:`literal`, which doubles its braces;
    ``message`` fills in the setting names (``num_per_class must be ...``) and :meth:`phrased` the
    names a caller uses for them, e.g. the CLI's flags from ``flags`` (``--num-per-class must be ...``).
    """

    def __init__(self, template: str, *, flags: dict[str, str], hint: str | None = None) -> None:
        self.template, self.hint_template, self.flags = template, hint, flags
        super().__init__(self.phrased(), hint=self._fill(hint, None) if hint else None)

    def __reduce__(self) -> tuple:  # picklable (ranks exchange errors): rebuilt from its parts
        return (_setting_error, (self.template, self.flags, self.hint_template))

    def _fill(self, text: str, names: dict[str, str] | None) -> str:
        return fill_settings(text, self.flags, names)

    def phrased(self, names: dict[str, str] | None = None) -> str:
        """The message with each setting called by ``names`` (default: its Python name)."""
        return self._fill(self.template, names)

    def for_cli(self) -> GigatokError:
        """The same error naming the command line's flags (``--num-per-class``)."""
        hint = self._fill(self.hint_template, self.flags) if self.hint_template else None
        return GigatokError(self.phrased(self.flags), hint=hint)


def _setting_error(template: str, flags: dict[str, str], hint: str | None) -> SettingError:
    return SettingError(template, flags=flags, hint=hint)


def fill_settings(text: str, known: Iterable[str], names: Mapping[str, str] | None = None) -> str:
    """``text`` with each ``{setting}`` of ``known`` called by ``names`` (default: its Python name);
    ``{{`` and ``}}`` become single braces, and other braces stay as written."""

    def sub(m: re.Match[str]) -> str:
        if m[1] is None:  # "{{" or "}}": a literal brace (see :func:`literal`)
            return m[0][0]
        return (names or {}).get(m[1], m[1]) if m[1] in known else m[0]

    return re.sub(r"\{\{|\}\}|\{([a-z_]+)\}", sub, text)


def literal(value: object) -> str:
    """``value`` as text inside a :class:`SettingError` template (its braces kept as written)."""
    return str(value).replace("{", "{{").replace("}", "}}")
