"""``gigatok``: the command table. Each subcommand lives in its own module, imported on use.

``gigatok --version``, ``gigatok --help`` and ``gigatok download --help`` must answer at once, so
nothing here imports torch: the root group knows its subcommands by module name
(:data:`COMMANDS`), lists them with the one-line help read from their source (no import), and
imports a subcommand's module only when that subcommand runs, shows its help or completes.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from gigatok_cli import _help
from gigatok_core import __version__

# name -> module, in help order. A module holding a ``typer.Typer`` named ``app`` is a command group
# (eval, and train / probe once they grow subcommands); otherwise its function named like the
# command (``-`` -> ``_``) is the command.
COMMANDS: dict[str, str] = {
    "download": "gigatok_cli.download",
    "cache": "gigatok_cli.cache",
    "reconstruct": "gigatok_cli.reconstruct",
    "sample": "gigatok_cli.sample",
    "train": "gigatok_cli.train",
    "probe": "gigatok_cli.probe",
    "eval": "gigatok_cli.eval",
}


# ---------------------------------------------------------------------------------------------
# Lazy subcommands
# ---------------------------------------------------------------------------------------------
def load_command(name: str) -> Any:
    """Import subcommand ``name`` and build its click command (a group for a ``typer.Typer``)."""
    module = importlib.import_module(COMMANDS[name])
    group = getattr(module, "app", None)
    if isinstance(group, typer.Typer):
        cmd = typer.main.get_group(_help.plain_flags(group))
    else:
        single = typer.Typer(add_completion=False)
        single.command(name, cls=_help.Command)(getattr(module, name.replace("-", "_")))
        cmd = typer.main.get_command(single)
    cmd.name = name
    return cmd


@functools.cache
def short_help(name: str) -> str:
    """The help of subcommand ``name`` read from its module's source without importing it (as Typer
    finds it): for a group the ``help=`` of ``app = typer.Typer(...)``, else the docstring of its
    ``@app.callback()``; for a command its function's docstring."""
    spec = importlib.util.find_spec(COMMANDS[name])
    if spec is None or spec.origin is None:
        return ""
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    funcs = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "app" for t in node.targets)
            and isinstance(node.value, ast.Call)
        ):
            for kw in node.value.keywords:
                if kw.arg == "help" and isinstance(kw.value, ast.Constant):
                    return str(kw.value.value)
            for func in funcs.values():
                if any("app.callback" in ast.unparse(d) for d in func.decorator_list):
                    return ast.get_docstring(func) or ""
            return ""
    func = funcs.get(name.replace("-", "_"))
    return (ast.get_docstring(func) or "") if func else ""


class _LazyCommands(Mapping[str, Any]):
    """``group.commands`` whose values are built on first access (the keys need no import)."""

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)

    def __getitem__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        return load_command(name)


class LazyGroup(_help.Group):
    """The root group: subcommands imported on use; ``--help`` lists them from their source."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands()  # type: ignore[assignment]
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:  # the help page needs a name and a line of help, not the command
            return TyperCommand(name=cmd_name, help=short_help(cmd_name))
        return load_command(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


# ---------------------------------------------------------------------------------------------
# The root
# ---------------------------------------------------------------------------------------------
app = typer.Typer(
    name="gigatok",
    cls=LazyGroup,
    help="GigaTok visual tokenizers and class-conditional autoregressive image generation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gigatok {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """GigaTok tokenizers and AR generation: download, cache, reconstruct, sample, train, eval, probe."""


def main() -> None:
    """Run the command line; a worker under torchrun ends through :func:`gigatok_core.dist.exit_process`."""
    try:
        app()
    except SystemExit as stop:
        code = stop.code
    else:
        code = 0
    if "torch.distributed" in sys.modules:  # never import torch for --help or --version
        from gigatok_core.dist import exit_process

        exit_process(code)  # returns only outside a process group
    raise SystemExit(code)


if __name__ == "__main__":
    main()
