"""mkdocs hook: the CLI reference page, rendered from the Typer app at build time.

``docs/cli.md`` holds the marker ``<!-- gigatok-cli-reference -->``; this hook replaces it with one
section per command (usage, help, arguments, options with types and defaults), walking the same click
tree that ``gigatok --help`` prints. Nothing is written to disk, so the page cannot drift from the code.
A plain hook (no mkdocs-click / mkdocs-gen-files): the root group builds its subcommands lazily, and
the walk below is the dozen lines that handle that, with no further dependency.
"""

from __future__ import annotations

from typing import Any

import typer

MARKER = "<!-- gigatok-cli-reference -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _section(cmd: Any, path: list[str], ctx: Any) -> list[str]:
    name = " ".join(path)
    level = "#" * min(len(path) + 1, 4)
    out = [f"{level} `{name}`", ""]
    help_text = (cmd.help or "").strip()
    if help_text:
        out += [help_text.replace("\b\n", ""), ""]
    pieces = cmd.collect_usage_pieces(ctx)
    out += ["```text", f"{name} {' '.join(pieces)}".rstrip(), "```", ""]
    rows = []
    for param in cmd.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)  # what --help prints: names + value type, help + default
        if record is None:  # a positional argument
            record = ((param.metavar or param.name or "").upper(), getattr(param, "help", None) or "")
        rows.append((f"`{record[0]}`", _cell(record[1])))
    if rows:
        out += ["| option | help |", "|---|---|"]
        out += [f"| {a} | {b} |" for a, b in rows]
        out.append("")
    if hasattr(cmd, "list_commands"):  # a group (Typer ships its own click: no isinstance)
        for sub_name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, sub_name)
            sub_ctx = sub.context_class(sub, info_name=sub_name, parent=ctx)
            out += _section(sub, [*path, sub_name], sub_ctx)
    return out


def render_reference() -> str:
    """Markdown for every command of ``gigatok``, in ``--help`` order."""
    from gigatok_cli.main import app

    root: Any = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="gigatok")
    return "\n".join(_section(root, ["gigatok"], ctx))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, render_reference())
    return markdown
