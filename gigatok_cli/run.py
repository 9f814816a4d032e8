"""The one sequence of every command that runs a request: fetch, maybe launch workers, progress, render.

A request command is made from its request (:mod:`gigatok_core.config.requests`) by
:func:`request_command`: each setting becomes an option (:func:`gigatok_cli.options.dataclass_options`:
its type, default and meaning are the library's), and running the command builds the request
(the settings are checked there, and :func:`gigatok_cli._common.handle_errors` names a bad one by
its flag) and runs it::

    @handle_errors
    @request_command("SampleRequest", "gigatok_core.tasks.sample:sample_images", render, label="sample")
    def sample(**settings: Any) -> None:
        # the docstring is the --help text; the body holds only checks of the command line itself

A command that builds its request itself calls :func:`run_request` with its core function and renderer.

With ``--nproc-per-node N`` the parent fetches every file ``request.required_files()`` lists and
starts the workers (:func:`gigatok_cli.launch.maybe_launch`); each process (or the only one) runs
``command(request, on_progress=...)`` under a progress bar that counts every local rank's items,
and the main rank renders the result (a command returns ``None`` on the other ranks).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gigatok_cli._common import progress_bar
from gigatok_cli.launch import SINGLE, LaunchOptions, launch_options, maybe_launch
from gigatok_cli.launch_worker import global_progress
from gigatok_cli.options import dataclass_options, option_group
from gigatok_core.config.requests import Request

if TYPE_CHECKING:
    from gigatok_core.probe import ProbeRequest

R = TypeVar("R")
Q = TypeVar("Q", bound="Request | ProbeRequest")


def run_request(
    request: Q,
    command: Callable[..., R | None],
    render: Callable[[R], None],
    *,
    launch: LaunchOptions | None = None,
    label: str = "",
    rate: str | None = None,
    prefetch: Callable[[], object] | None = None,
    **hooks: Any,
) -> None:
    """Run ``command(request, on_progress=..., **hooks)`` (on every rank when ``launch`` asks for
    several processes) and ``render`` its result on the main rank.

    ``label``/``rate``: the progress bar's stage name and unit (e.g. "img/s"); ``prefetch``: what the
    launcher's parent runs first (default: fetch every file ``request.required_files()`` lists);
    ``hooks``: the command's other callbacks (``on_skip``, ``on_result``, ``on_epoch``).
    """
    from gigatok_core.dist import dist_info
    from gigatok_core.tasks.fetch import fetch_required

    if launch is not None and maybe_launch(launch, prefetch=prefetch or (lambda: fetch_required(request))):
        return  # the workers ran; this (parent) process is done
    main = dist_info().is_main
    with progress_bar(label, enabled=main, rate=rate) as on_progress:
        result = command(request, on_progress=global_progress(on_progress), **hooks)
    if main and result is not None:
        render(result)


F = TypeVar("F", bound=Callable[..., Any])


def request_options(
    request: str, *, no_env: tuple[str, ...] = (), check: Callable[..., None] | None = None
) -> Callable[[F], F]:
    """Put the settings of the request class named ``request`` (:mod:`gigatok_core.config.requests`)
    as options in place of the command's parameter ``request``, which receives the request built
    from them (and checked there). ``check(**settings)`` runs first: checks of the command line
    itself. ``no_env``: settings that read no environment variable here (a GPT command's
    ``tokenizer`` defaults to the GPT's, not to ``GIGATOK_TOKENIZER``)."""
    from gigatok_core.config import requests

    cls = getattr(requests, request)
    flags = cls.flags()
    options = dataclass_options(cls, cls.help(flags), flags=flags, no_env=no_env, at_least=cls.AT_LEAST)

    def build(settings: dict[str, Any]) -> Any:
        if check is not None:
            check(**settings)
        return cls(**settings)

    def decorate(fn: F) -> F:
        command = option_group("request", options, build)(fn)
        command.request_name = request  # type: ignore[attr-defined]  (a test checks the names match)
        return command

    return decorate


def request_command(
    request: str,
    command: str,
    render: Callable[[Any], None],
    *,
    label: str = "",
    rate: str | None = None,
    hooks: dict[str, Callable[..., Any]] | None = None,
    launch: bool = True,
    no_env: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Make the command function ``fn`` (its docstring the ``--help``, its body checks of the command
    line itself, called with every setting) take the settings of the request class named ``request``
    as options (:func:`request_options`), and run ``command`` (``"module:function"``, imported when
    the command runs, so that ``--help`` stays light) on the request through :func:`run_request`.
    ``launch``: add the launcher options (``--nproc-per-node`` ...)."""

    def decorate(fn: F) -> F:
        def run(request: Any, launch: LaunchOptions | None = None) -> None:
            module, name = command.split(":")
            core = getattr(importlib.import_module(module), name)
            run_request(request, core, render, launch=launch, label=label, rate=rate, **(hooks or {}))

        params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        if launch:
            params.append(inspect.Parameter("launch", inspect.Parameter.KEYWORD_ONLY, default=SINGLE))
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__name__, run.__qualname__, run.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        run.__module__ = fn.__module__
        made = request_options(request, no_env=no_env, check=fn)(run)  # type: ignore[arg-type]
        return launch_options(made) if launch else made  # type: ignore[return-value]

    return decorate


__all__ = ["request_command", "request_options", "run_request"]
