"""The one sequence of every command that runs a request: fetch, maybe launch workers, progress, render.

A command declares its options under the names of its request's settings
(:mod:`gigatok_core.config.requests`) and lets :func:`runs_request` build the request from them
(the settings are checked there, and :func:`gigatok_cli._common.handle_errors` names a bad one by
its flag) and run it::

    @handle_errors
    @launch_options
    @runs_request("SampleRequest", "gigatok_core.tasks.sample:sample_images", render, label="sample")
    def sample(*, classes: ..., output: ..., launch: LaunchOptions = SINGLE) -> None:
        # the docstring is the --help text; the body holds only checks of the command line itself

or builds the request itself and calls :func:`run_request` with its core function and renderer.

With ``--nproc-per-node N`` the parent fetches every file ``request.required_files()`` lists and
starts the workers (:func:`gigatok_cli.launch.maybe_launch`); each process (or the only one) runs
``command(request, on_progress=...)`` under a progress bar that counts every local rank's items,
and the main rank renders the result (a command returns ``None`` on the other ranks).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gigatok_cli._common import progress_bar
from gigatok_cli.launch import LaunchOptions, maybe_launch
from gigatok_cli.launch_worker import global_progress
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


def runs_request(
    request: str,
    command: str,
    render: Callable[[Any], None],
    *,
    label: str = "",
    rate: str | None = None,
    hooks: dict[str, Callable[..., Any]] | None = None,
) -> Callable[[F], F]:
    """Make a command function that declares the options of the request class named ``request``
    (in :mod:`gigatok_core.config.requests`) run ``command`` (``"module:function"``, imported when
    the command runs, so that ``--help`` stays light) through :func:`run_request`.

    Each parameter of the command is the request's setting of the same name; a ``launch`` parameter
    (:func:`gigatok_cli.launch.launch_options`) goes to the launcher. The command's own body runs
    first: it holds checks of the command line itself (a flag given a value), nothing else.
    """

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            settings = dict(bound.arguments)
            launch = settings.pop("launch", None)
            from gigatok_core.config import requests

            module, name = command.split(":")
            core = getattr(importlib.import_module(module), name)
            built = getattr(requests, request)(**settings)
            run_request(built, core, render, launch=launch, label=label, rate=rate, **(hooks or {}))

        wrapper.request_name = request  # type: ignore[attr-defined]  (a test checks the names match)
        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = ["run_request", "runs_request"]
