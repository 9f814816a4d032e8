"""``gigatok``: the command table. Each subcommand lives in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from gigatok_cli import download, probe, reconstruct, sample, train
from gigatok_cli import eval as eval_cmd
from gigatok_core import __version__

app = typer.Typer(
    name="gigatok",
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
    """GigaTok tokenizers and AR generation: download, reconstruct, sample, train, eval, probe."""


app.command("download")(download.download)
app.command("reconstruct")(reconstruct.reconstruct)
app.command("sample")(sample.sample)
app.add_typer(train.app, name="train")
app.add_typer(eval_cmd.app, name="eval")
app.command("probe")(probe.probe)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
