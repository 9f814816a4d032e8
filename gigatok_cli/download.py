"""`gigatok download NAME...`: fetch official weights into the cache (the cache itself:
:mod:`gigatok_cli.cache`).

The mode flags of earlier releases (``--list``, ``--json``, ``--where``, ``--import``/``--preset``,
``--verify``, ``--clear``) still work for one release, hidden from ``--help``: each prints a one-line
note naming its ``gigatok cache`` command, then does what that command does.

Heavy modules (the hub, requests, torch through the structural check) are imported inside the
command, so ``gigatok download --help`` and completion answer at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gigatok_cli import cache
from gigatok_cli._common import console, handle_errors, out, print_error
from gigatok_cli.cache import complete_names
from gigatok_core import registry
from gigatok_core.errors import GigatokError

__all__ = ["complete_names", "download"]


def _old(flag: str, new: str) -> None:
    """The one-line note of an old mode flag (stderr, so stdout stays what the new command prints)."""
    console.print(
        f"[dim]note:[/] `download {flag}` is now `{new}` (the old flag goes in the next release)",
        highlight=False,
        soft_wrap=True,
    )


def _old_modes(
    names: list[str],
    *,
    list_: bool,
    json_: bool,
    where: bool,
    import_file: Path | None,
    preset: str | None,
    verify: bool,
    clear: bool,
) -> bool:
    """Run the old mode flag given, if any (True when one ran)."""
    if where:
        _old("--where", "gigatok cache where")
        cache.render_where()
    elif list_ or json_:
        _old("--list", "gigatok cache list" + (" --json" if json_ else ""))
        cache.render_list(json_)
    elif import_file is not None or preset is not None:
        _old("--import FILE --preset NAME", "gigatok cache import FILE --preset NAME")
        if import_file is None or preset is None:
            raise GigatokError(
                "--import and --preset go together",
                hint="gigatok cache import FILE --preset NAME (see `gigatok cache list`)",
            )
        cache.render_import(import_file, preset)
    elif verify:
        _old("--verify", "gigatok cache verify")
        cache.render_verify(registry.resolve_targets(names) if names else None)
    elif clear:
        _old("--clear NAMES", "gigatok cache clear NAMES --yes")
        if not names:
            raise GigatokError(
                "--clear needs the names to delete", hint="for example: gigatok cache clear s-s"
            )
        cache.render_clear(names, yes=True)  # the old flag never asked
    else:
        return False
    return True


def _hidden(*decls: str, help: str) -> typer.models.OptionInfo:
    return typer.Option(*decls, help=help, hidden=True, show_default=False)


@handle_errors
def download(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Tokenizer presets (s-s), GPT releases (gpt-b@xl-xxl), GPT presets (gpt-xxl: its "
            "paper pairing, tokenizer included), weights file names or aliases (inception, vgg16, "
            "dinov2-vitb14, dino-vits16, adm-ref).",
            autocompletion=complete_names,
            show_default=False,
        ),
    ] = None,
    *,
    all_: Annotated[bool, typer.Option("--all", help="Download every registered file (tens of GB).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    list_: Annotated[bool, _hidden("--list", help="Old: gigatok cache list.")] = False,
    json_: Annotated[bool, _hidden("--json", help="Old: gigatok cache list --json.")] = False,
    where: Annotated[bool, _hidden("--where", help="Old: gigatok cache where.")] = False,
    import_file: Annotated[Path | None, _hidden("--import", help="Old: gigatok cache import FILE.")] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="Old: with --import.",
            autocompletion=complete_names,
            hidden=True,
            show_default=False,
        ),
    ] = None,
    verify: Annotated[bool, _hidden("--verify", help="Old: gigatok cache verify.")] = False,
    clear: Annotated[bool, _hidden("--clear", help="Old: gigatok cache clear.")] = False,
) -> None:
    """Download official GigaTok weights into the cache (verified, resumable, shared by parallel runs).

    Examples: gigatok download s-s gpt-b@s-s | gigatok download gpt-xxl inception.
    The cache itself (list, where, verify, import, clear): gigatok cache --help
    """
    from gigatok_core import weights

    names = list(names or [])
    old = {"list_": list_, "json_": json_, "where": where, "verify": verify, "clear": clear}
    if _old_modes(names, import_file=import_file, preset=preset, **old):
        return
    keys = registry.weights_names() if all_ else registry.resolve_targets(names)
    if not keys:
        raise GigatokError(
            "nothing to download",
            hint="name presets (gigatok download s-s), see `gigatok cache list`, or --all",
        )
    failed: list[str] = []
    for key in keys:
        try:
            path = weights.fetch_weights(key, progress=not quiet)
        except GigatokError as err:
            if len(keys) == 1:
                raise
            failed.append(key)  # go on with the others, report at the end
            print_error(err.message, err.hint)
            continue
        out.print(f"{registry.display_name(key):<16} {path}", highlight=False, soft_wrap=True)
    if failed:
        raise GigatokError(
            f"{len(failed)} of {len(keys)} files could not be fetched: {', '.join(failed)}",
            hint="see the messages above",
        )
