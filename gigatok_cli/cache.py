"""`gigatok cache`: the weights cache — list, where, verify, import, clear.

The work is the library's (:mod:`gigatok_core.hub`, :mod:`gigatok_core.weights`); this module
declares the commands and renders their results. Heavy modules are imported inside the commands,
so ``gigatok cache --help`` and completion answer at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gigatok_cli._common import handle_errors, out, print_error
from gigatok_cli.options import ARGUMENT_CHOICES, completer
from gigatok_core import registry
from gigatok_core.errors import GigatokError

app = typer.Typer(
    help="The weights cache: list what is registered and cached, print its folder, re-verify, "
    "import a file downloaded by hand, clear.",
    no_args_is_help=True,
)


# Completion of NAMES / --preset: the registry's downloadable names (no torch, no network; the
# static scripts list the same)
complete_names = completer(ARGUMENT_CHOICES["download"])


NamesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Presets, releases or weights names (as `gigatok download` takes them); none: every file.",
        autocompletion=complete_names,
        show_default=False,
    ),
]


@app.command("list")
@handle_errors
def list_(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the downloadable weights: preset, size, what is cached, source, hash basis, paper numbers."""
    render_list(json_)


@app.command("where")
@handle_errors
def where() -> None:
    """Print the cache folder (GIGATOK_CACHE overrides it)."""
    render_where()


@app.command("verify")
@handle_errors
def verify(names: NamesArg = None) -> None:
    """Re-hash cached files (all, or the NAMES given); corrupted ones are deleted."""
    render_verify(registry.resolve_targets(names) if names else None)


@app.command("import")
@handle_errors
def import_(
    file: Annotated[
        Path,
        typer.Argument(help="A file you downloaded by hand (Drive quota).", show_default=False),
    ],
    preset: Annotated[
        str,
        typer.Option(
            "--preset", help="Whose weights the file is.", autocompletion=complete_names, show_default=False
        ),
    ],
) -> None:
    """Verify a file you downloaded by hand and copy it into the cache.

    Example: gigatok cache import ~/Downloads/VQ_BL256_e200.pt --preset b-l
    """
    render_import(file, preset)


@app.command("clear")
@handle_errors
def clear(
    names: NamesArg = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
) -> None:
    """Delete cached weights (the NAMES', or every registered file); asks first unless --yes.

    Only the registry's own files in the cache folder are deleted: anything else there is kept.
    """
    render_clear(names, yes=yes)


# ---------------------------------------------------------------------------------------------
# Renderers (also behind `gigatok download`'s old flags)
# ---------------------------------------------------------------------------------------------
def render_where() -> None:
    from gigatok_core import hub

    out.print(str(hub.cache_dir()), highlight=False, soft_wrap=True)


def render_import(file: Path, preset: str) -> None:
    from gigatok_core import weights

    path = weights.import_weights(file, preset)
    out.print(f"imported {file} as {preset}: {path}", highlight=False, soft_wrap=True)


def render_clear(names: list[str] | None, *, yes: bool) -> None:
    from gigatok_core import hub

    keys = registry.resolve_targets(names, with_tokenizer=False) if names else None
    files = hub.cached_files(keys)
    if not files:
        what = (
            f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not cached"
            if names
            else "no weights cached"
        )
        out.print(f"nothing to delete: {what}", highlight=False)
        return
    if not yes:
        out.print("\n".join(str(p) for p in files), highlight=False, soft_wrap=True)
        try:
            agreed = typer.confirm(f"delete these {len(files)} files?", default=False, err=True)
        except typer.Abort:  # no answer to read (not a terminal, end of input)
            raise GigatokError(
                f"nothing deleted: `gigatok cache clear` asks before deleting {len(files)} files, "
                "and no answer came",
                hint="answer y at the prompt, or add --yes to delete without asking",
            ) from None
        if not agreed:
            out.print("nothing deleted")
            return
    removed = hub.clear_weights(keys)
    out.print(f"removed {len(removed)} files" + "".join(f"\n  {p}" for p in removed), highlight=False)


def _size(n: float | None) -> str:
    from gigatok_core.utils.fileio import human_bytes

    return "" if n is None else human_bytes(n)


def _params(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def render_list(as_json: bool) -> None:
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
            "if it is not there, download it by hand and use `gigatok cache import`)"
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


def render_verify(keys: list[str] | None) -> None:
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
        print_error(
            f"{len(bad)} cached files were damaged and removed: {', '.join(bad)}",
            "run `gigatok download` with their names to fetch them again",
        )
        raise typer.Exit(1)
