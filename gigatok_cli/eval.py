"""`gigatok eval`: FID-family metrics in one process."""

from __future__ import annotations

import typer

from gigatok_cli._common import handle_errors, not_implemented

app = typer.Typer(help="Evaluate tokenizers and generators: fid, rfid, gfid, build-ref, val-loss.",
                  no_args_is_help=True)


@app.command("fid")
@handle_errors
def fid() -> None:
    """Not implemented yet."""
    not_implemented("eval fid", "issue 5")
