"""`gigatok download`: fetch, list, import, verify and clear official weights in the cache.

Heavy modules (the hub, requests, torch through the structural check) are imported inside the
command, so ``gigatok download --help`` and completion answer at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gigatok_cli._common import console, handle_errors, out
from gigatok_cli.options import ARGUMENT_CHOICES
from gigatok_core import registry
from gigatok_core.errors import GigatokError


def complete_names(incomplete: str) -> list[str]:
    """Completion of NAMES / --preset: the registry's downloadable names (no torch, no network;
    the static scripts list the same, :data:`gigatok_cli.options.ARGUMENT_CHOICES`)."""
    return [n for n in ARGUMENT_CHOICES["download"]() if n.startswith(incomplete)]


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _params(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


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
    list_: Annotated[
        bool, typer.Option("--list", help="List the downloadable weights and what is cached.")
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="With --list: print JSON instead of a table.")
    ] = False,
    all_: Annotated[bool, typer.Option("--all", help="Download every registered file (tens of GB).")] = False,
    where: Annotated[
        bool, typer.Option("--where", help="Print the cache folder (GIGATOK_CACHE overrides it).")
    ] = False,
    import_file: Annotated[
        Path | None,
        typer.Option(
            "--import",
            help="A file you downloaded by hand (Drive quota): verify it and "
            "copy it into the cache. Needs --preset.",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="With --import: whose weights the file is.",
            autocompletion=complete_names,
            show_default=False,
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Re-hash cached files (all, or the NAMES given); corrupted ones are deleted."
        ),
    ] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Delete the NAMES' files from the cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download official GigaTok weights into the cache (verified, resumable, shared by parallel runs).

    Examples: gigatok download s-s gpt-b@s-s | gigatok download --list |
    gigatok download --import ~/Downloads/VQ_BL256_e200.pt --preset b-l
    """
    from gigatok_core import hub, weights

    names = list(names or [])
    if where:
        out.print(str(hub.cache_dir()), highlight=False, soft_wrap=True)
        return
    if list_ or json_:
        _list(json_)
        return
    if import_file is not None or preset is not None:
        if import_file is None or preset is None:
            raise GigatokError(
                "--import and --preset go together",
                hint="gigatok download --import FILE --preset NAME (see `gigatok download --list`)",
            )
        path = weights.import_weights(import_file, preset)
        out.print(f"imported {import_file} as {preset}: {path}", highlight=False, soft_wrap=True)
        return
    if verify:
        _verify(registry.resolve_targets(names) if names else None)
        return
    if clear:
        if not names:
            raise GigatokError(
                "--clear needs the names to delete", hint="for example: gigatok download --clear s-s"
            )
        removed = hub.clear_weights(registry.resolve_targets(names, with_tokenizer=False))
        out.print(f"removed {len(removed)} files" + "".join(f"\n  {p}" for p in removed), highlight=False)
        return
    keys = registry.weights_names() if all_ else registry.resolve_targets(names)
    if not keys:
        raise GigatokError(
            "nothing to download", hint="name presets (gigatok download s-s), or see --list / --all"
        )
    failed: list[str] = []
    for key in keys:
        try:
            path = weights.fetch_weights(key, progress=not quiet)
        except GigatokError as err:
            if len(keys) == 1:
                raise
            failed.append(key)  # go on with the others, report at the end
            console.print(f"[bold red]error:[/] {err.message}", highlight=False)
            if err.hint:
                console.print(f"[dim]hint:[/] {err.hint}", highlight=False)
            continue
        out.print(f"{registry.display_name(key):<16} {path}", highlight=False, soft_wrap=True)
    if failed:
        raise GigatokError(
            f"{len(failed)} of {len(keys)} files could not be fetched: {', '.join(failed)}",
            hint="see the messages above",
        )


def _list(as_json: bool) -> None:
    from rich.table import Table

    from gigatok_core import hub

    rows = hub.catalog_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    unknown = sorted({r["size_note"] for r in rows if r["size"] is None})
    notes = [
        "hash: published = checked against the sha256 the Hub publishes; first use = trusted on "
        "first download, then re-checked on every use; pinned / name prefix = from the registry"
    ]
    notes += [f"blank size: {note}" for note in unknown[:1]]
    unsure = [r["preset"] for r in rows if not r["known_source"]]
    if unsure:
        notes.append(
            f"no known source yet: {', '.join(unsure)} (tried on the Hub; "
            "if it is not there, download it by hand and use --import)"
        )
    # a terminal too narrow for every column drops the free-text ones first (rich would squeeze
    # them to nothing): paper numbers and file names below 150 columns, the hash basis below 110
    shown = ["preset", "kind", "params", "size", "cached", "source", "hash", "paper", "file"]
    if out.width < 150:
        shown = shown[:-2]
        notes.append("paper numbers and file names: a terminal of 150+ columns, or --json")
    if out.width < 110:
        shown = shown[:-1]
        notes[0] = "the hash each file is checked against: a terminal of 110+ columns, or --json"
    table = Table(title=f"GigaTok weights (cache: {hub.cache_dir()})", caption="\n".join(notes))
    right = ("params", "size")
    for col in shown:
        # names and numbers never wrap; the free text and file names fold
        table.add_column(
            col,
            justify="right" if col in right else "center" if col == "cached" else "left",
            no_wrap=col not in ("paper", "file", "hash"),
            overflow="fold",
        )
    for r in rows:
        paper = ", ".join(f"{k} {v}" for k, v in r["paper"].items()) or r["description"]
        cells = {
            "preset": r["preset"],
            "kind": r["kind"],
            "params": _params(r["params"]),
            "size": _size(r["size"]),
            "cached": _state(r["state"], r["size"]),
            "source": r["source"] + ("" if r["known_source"] else " [yellow](no known source)[/]"),
            "hash": r["hash"],
            "paper": paper,
            "file": r["file"],
        }
        table.add_row(*(cells[c] for c in shown))
    out.print(table)


def _state(state: str, size: int | None) -> str:
    """The 'cached' cell: yes / unverified / partial (with progress) / no."""
    if state == "yes":
        return "[green]yes[/]"
    if state == "unverified":
        return "[yellow]unverified[/]"
    if state.startswith("partial"):
        done = int(state.split()[1])
        return f"[yellow]partial {done / size:.0%}[/]" if size else f"[yellow]partial {_size(done)}[/]"
    return "no"


def _verify(keys: list[str] | None) -> None:
    from rich.table import Table

    from gigatok_core import hub

    results = hub.verify_cache(keys)
    if not results:
        out.print("the cache is empty")
        return
    table = Table(title="cache verification")
    for col in ("file", "status", "detail"):
        table.add_column(col)
    colour = {"ok": "green", "not cached": "dim"}
    for r in results:
        table.add_row(r.key, f"[{colour.get(r.status, 'red')}]{r.status}[/]", r.detail)
    out.print(table)
    bad = [r.key for r in results if r.status in ("corrupt", "missing")]
    if bad:
        console.print(
            f"[bold red]error:[/] {len(bad)} cached files were damaged and removed: {', '.join(bad)}",
            highlight=False,
        )
        console.print(
            "[dim]hint:[/] run `gigatok download` with their names to fetch them again", highlight=False
        )
        raise typer.Exit(1)
