"""`gigatok train`: a command group (extract-codes lands first; tokenizer and GPT training later)."""

from __future__ import annotations

import typer

from gigatok_cli._common import handle_errors, not_implemented

app = typer.Typer(
    name="train",
    help="Train a tokenizer or a GPT, and prepare their data.",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
@handle_errors
def train(ctx: typer.Context) -> None:
    """Train a tokenizer or a GPT (training itself is not implemented yet: exits with code 2)."""
    if ctx.invoked_subcommand is None:
        not_implemented("train", "tokenizer and GPT training have no implementation in gigatok yet")


# Subcommands live in their own modules and are registered here (they never import this module).
from gigatok_cli.train_codes import extract_codes  # noqa: E402

app.command("extract-codes")(extract_codes)

from gigatok_cli.train_tokenizer import tokenizer  # noqa: E402

app.command("tokenizer")(tokenizer)
