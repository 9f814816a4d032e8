"""The one sequence of every command that runs a request: fetch, maybe launch workers, progress, render.

A command builds its request (:mod:`gigatok_core.config.requests`: the settings are checked there,
and :func:`gigatok_cli._common.handle_errors` names a bad one by its flag), then calls::

    run_request(request, sample_images, render, launch=launch, label="sample")

With ``--nproc-per-node N`` the parent fetches every file ``request.required_files()`` lists and
starts the workers (:func:`gigatok_cli.launch.maybe_launch`); each process (or the only one) runs
``command(request, on_progress=...)`` under a progress bar that counts every local rank's items,
and the main rank renders the result (a command returns ``None`` on the other ranks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from gigatok_cli._common import progress_bar
from gigatok_cli.launch import LaunchOptions, maybe_launch
from gigatok_cli.launch_worker import global_progress
from gigatok_core.config.requests import Request

R = TypeVar("R")
Q = TypeVar("Q", bound=Request)


def run_request(
    request: Q,
    command: Callable[..., R | None],
    render: Callable[[R], None],
    *,
    launch: LaunchOptions | None = None,
    label: str = "",
    rate: str | None = None,
    **hooks: Any,
) -> None:
    """Run ``command(request, on_progress=..., **hooks)`` (on every rank when ``launch`` asks for
    several processes) and ``render`` its result on the main rank.

    ``label``/``rate``: the progress bar's stage name and unit (e.g. "img/s"); ``hooks``: the
    command's other callbacks (``on_skip``, ``on_result``).
    """
    from gigatok_core.dist import dist_info
    from gigatok_core.tasks.fetch import fetch_required

    if launch is not None and maybe_launch(launch, prefetch=lambda: fetch_required(request)):
        return  # the workers ran; this (parent) process is done
    main = dist_info().is_main
    with progress_bar(label, enabled=main, rate=rate) as on_progress:
        result = command(request, on_progress=global_progress(on_progress), **hooks)
    if main and result is not None:
        render(result)


__all__ = ["run_request"]
