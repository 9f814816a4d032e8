"""Options made from the library's settings: each setting is declared once, in the library.

A command's options are the fields of a dataclass of :mod:`gigatok_core` (a request of
:mod:`gigatok_core.config.requests`, :class:`~gigatok_cli.launch.LaunchOptions`, the training run
settings, the probe recipe): :func:`dataclass_options` turns each field into a Typer option or
argument with the field's type, default and meaning (:meth:`gigatok_core.config.requests.Request.help`),
and :data:`CLI` adds what only a command line has (short names, environment variables, value sets
for completion, ``hf://`` references); :func:`option_group` puts such a group into a command's
signature. Value sets come from the library (:mod:`gigatok_core.choices`, :mod:`gigatok_core.registry`),
never from lists written here; ``--help`` lists the registry names as DiT's
``choices=list(DiT_models)`` does, and :data:`CHOICES` feeds the static completion scripts
(``completions/generate.py``). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gigatok_core import registry
from gigatok_core.choices import DEVICE_CHOICES, PRECISION_NAMES, RNG_MODES, SAMPLERS, SCHEDULES
from gigatok_core.config.requests import EXPORT_FORMATS

F = TypeVar("F", bound=Callable[..., Any])


def option_group(
    param: str, options: Mapping[str, tuple[Any, Any]], build: Callable[[dict[str, Any]], Any] = dict
) -> Callable[[F], F]:
    """Declare a group of options once for several commands: the keyword-only options ``options``
    (parameter name -> (``Annotated`` type, default)) take the place of the command's parameter
    ``param``, which receives ``build(values)`` (by default the dict of their values).

    Typer has no option groups shared between commands, so this rewrites the signature Typer reads
    (``__signature__``, the documented :mod:`inspect` hook, and ``__annotations__``, which Typer
    reads with ``typing.get_type_hints``). The launcher options, the training run settings and the
    probe recipe are such groups.
    """
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for name, (ann, default) in options.items()
    ]

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        # all keyword-only (Typer passes every parameter by name), so a group may sit anywhere
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = [
            q.replace(kind=keyword)
            for p in sig.parameters.values()
            for q in (extra if p.name == param else [p])
        ]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name, default) for name, (_, default) in options.items()}
            return fn(*args, **{param: build(values)}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": sig.return_annotation}
        return wrapper  # type: ignore[return-value]

    return decorate


# ---------------------------------------------------------------------------------------------
# Value sets (the library's) and their completion
# ---------------------------------------------------------------------------------------------
def gpt_choices() -> list[str]:
    """What ``--gpt`` accepts: GPT presets and released pairs (``gpt-b@xl-xxl``)."""
    return registry.gpt_names() + registry.release_names()


def download_choices() -> list[str]:
    """What ``gigatok download`` and ``--preset`` accept: presets, releases and weight files."""
    return registry.tokenizer_names() + registry.release_names() + registry.weights_names()


# long option name -> its value set; completions/generate.py and the autocompletion functions read this
CHOICES: dict[str, Callable[[], list[str]]] = {
    "--tokenizer": registry.tokenizer_names,
    "--gpt": gpt_choices,
    "--preset": download_choices,
    "--precision": lambda: list(PRECISION_NAMES),
    "--device": lambda: list(DEVICE_CHOICES),
    "--cfg-schedule": lambda: list(SCHEDULES),
    "--rng": lambda: list(RNG_MODES),
    "--format": lambda: list(EXPORT_FORMATS),  # gigatok train export
    "--sampler": lambda: list(SAMPLERS),
}


# command path -> the value set of its positional arguments (``gigatok download NAME``)
ARGUMENT_CHOICES: dict[str, Callable[[], list[str]]] = {
    "download": registry.downloadable_names,
    "cache verify": registry.downloadable_names,
    "cache clear": registry.downloadable_names,
}


def completer(values: str | Callable[[], list[str]]) -> Callable[[str], list[str]]:
    """Shell completion (``--install-completion``) for a value set: an option's (its long name in
    :data:`CHOICES`) or a listing such as :func:`gigatok_core.registry.gpt_names`."""
    names = CHOICES[values] if isinstance(values, str) else values

    def complete(incomplete: str) -> list[str]:
        return [n for n in names() if n.startswith(incomplete)]

    return complete


def hub_weights(value: Any) -> Any:
    """Callback of every option that takes weights: a Hugging Face Hub reference
    (``hf://OWNER/REPO[@REVISION]``, ``hf://OWNER/REPO/FILE``) becomes the verified file in the shared
    Hugging Face cache (:func:`gigatok_core.hub.resolve_hub_ref`); anything else passes unchanged."""
    from gigatok_core.config.source import is_hub_ref
    from gigatok_core.errors import GigatokError
    from gigatok_core.hub.hf import resolve_hub_ref

    if value is None or not is_hub_ref(value):
        return value
    try:
        path = resolve_hub_ref(value)
    except GigatokError as err:
        raise typer.BadParameter(err.message + (f"\nhint: {err.hint}" if err.hint else "")) from None
    return path if isinstance(value, Path) else str(path)


HUB_HELP = " Also hf://OWNER/REPO, hf://OWNER/REPO@REVISION or hf://OWNER/REPO/FILE (Hugging Face Hub)."


# ---------------------------------------------------------------------------------------------
# Settings as options
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cli:
    """What a setting has on the command line beyond its flag, type, default and meaning."""

    short: tuple[str, ...] = ()
    envvar: str | None = None
    weights: bool = False  # takes weights: an hf:// reference becomes the cached file (hub_weights)
    listed: Callable[[], str] | None = None  # its value set, appended to the help


def _gpt_listing() -> str:
    return f" Presets: {', '.join(registry.gpt_names())}; releases: {', '.join(registry.release_names())}."


def _tokenizer_listing() -> str:
    return f" Presets: {', '.join(registry.tokenizer_names())}."


WEIGHTS = Cli(weights=True)

#: setting name -> its command-line extras, the same in every command that has the setting
CLI: dict[str, Cli] = {
    "gpt": Cli(("-g",), "GIGATOK_GPT", listed=_gpt_listing),
    "tokenizer": Cli(("-t",), "GIGATOK_TOKENIZER", listed=_tokenizer_listing),
    "preset": Cli(("-p",)),
    "classes": Cli(("-c",)),
    "output": Cli(("-o",)),
    "num_per_class": Cli(("-n",)),
    "batch_size": Cli(("-b",)),
    "checkpoint": WEIGHTS,
    "gpt_checkpoint": WEIGHTS,
    "tokenizer_checkpoint": WEIGHTS,
    "init": WEIGHTS,
    "inception_weights": Cli(envvar="GIGATOK_INCEPTION_WEIGHTS"),
    "vgg_weights": Cli(envvar="GIGATOK_VGG_WEIGHTS"),
    "teacher_weights": Cli(envvar="GIGATOK_TEACHER_WEIGHTS"),
    "dino_weights": Cli(envvar="GIGATOK_DINO_WEIGHTS"),
}


def cli_type(hint: Any) -> Any:
    """The type Typer parses a setting of type ``hint`` as: a path as ``Path``, a sequence as a list
    of words, a word-or-list (``classes``, "22,388") as the word the library parses; None dropped."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [k for k in typing.get_args(hint) if k is not type(None)]
        return Path if Path in kinds else str if str in kinds else cli_type(kinds[0])
    if typing.get_origin(hint) in (list, tuple, Sequence):
        return list[str]
    return hint


def setting_option(
    name: str,
    flag: str,
    hint: Any,
    default: Any,
    text: str,
    *,
    panel: str | None = None,
    env: bool = True,
    low: int | None = None,
) -> Any:
    """The ``Annotated`` type of setting ``name`` as a Typer option ``flag`` (an upper-case ``flag``
    is a positional argument); ``default`` is the setting's (``inspect.Parameter.empty``: required),
    ``low`` its smallest value (refused when the command line is parsed)."""
    extra = CLI.get(name, Cli())
    kind = cli_type(hint)
    help = text + (extra.listed() if extra.listed else "") + (HUB_HELP if extra.weights else "")
    switch = kind is bool and default is not False  # --lpips/--no-lpips; None: not given
    if default is None:
        kind = kind | None
    if flag.isupper():
        return Annotated[kind, typer.Argument(help=help, show_default=False)]
    decls = (f"{flag}/--no-{flag[2:]}" if switch else flag, *extra.short)
    return Annotated[
        kind,
        typer.Option(
            *decls,
            help=help,
            envvar=extra.envvar if env else None,
            autocompletion=completer(flag) if flag in CHOICES else None,
            callback=hub_weights if extra.weights else None,
            rich_help_panel=panel,
            min=low,
            show_default=not any(default is v for v in (None, False, inspect.Parameter.empty)),
        ),
    ]


def dataclass_options(
    cls: type,
    texts: Mapping[str, str],
    *,
    names: Iterable[str] | None = None,
    flags: Mapping[str, str] | None = None,
    panel: str | None = None,
    unset: bool = False,
    no_env: Iterable[str] = (),
    at_least: Mapping[str, int] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """The fields of dataclass ``cls`` (``names`` of them, in that order; default all) as options
    for :func:`option_group`: name -> (``Annotated`` type, default). ``texts``: each field's help;
    ``flags``: its flag, default ``--`` + the name with dashes; ``unset``: every option defaults to
    None (not given: the library's default applies); ``no_env``: fields read no environment variable;
    ``at_least``: the smallest value of count fields."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    options = {}
    for name in list(names) if names is not None else list(fields):
        field = fields[name]
        if unset:
            default = None
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = inspect.Parameter.empty
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        low = (at_least or {}).get(name)
        option = setting_option(
            name, flag, hints[name], default, texts[name], panel=panel, env=name not in no_env, low=low
        )
        options[name] = (option, default)
    return options


def shared_option(
    name: str, kind: Any, default: Any = None, *, env: bool = True, help: str | None = None
) -> Any:
    """The option of setting ``name`` of :data:`gigatok_core.config.requests.SETTING_HELP` (its meaning
    in every command; ``help`` where it means more here), of type ``kind``, for a command that
    builds its request itself."""
    from gigatok_core.config.requests import SETTING_HELP

    flag = "--" + name.replace("_", "-")
    return setting_option(name, flag, kind, default, help or SETTING_HELP[name], env=env)
