"""The workers' side of ``--nproc-per-node``: failures handed to the parent, progress shared with rank 0.

A worker started by :func:`gigatok_cli.launch.maybe_launch` finds the parent's shared temporary folder
in ``GIGATOK_LAUNCH_DIR``. A failure goes to ``error.RANK.json`` there (the parent prints the first
one, :func:`first_worker_error`); each rank's progress counts go to ``progress.STAGE.LOCAL_RANK`` and
rank 0's bars show their sums (:func:`global_progress`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from gigatok_core.errors import GigatokError, SettingError
from gigatok_core.utils.fileio import write_text_atomic
from gigatok_core.utils.progress import ProgressFn

LAUNCH_DIR_ENV = "GIGATOK_LAUNCH_DIR"  # set by the parent for its workers: errors and progress go there


# ---------------------------------------------------------------------------------------------
# The workers
# ---------------------------------------------------------------------------------------------
def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def launch_dir() -> Path | None:
    """The parent's shared folder when this process is one of its workers."""
    value = os.environ.get(LAUNCH_DIR_ENV)
    return Path(value) if value and os.environ.get("RANK") is not None else None


@contextlib.contextmanager
def worker_errors_reported() -> Iterator[None]:
    """In a launched worker: write a failure to ``error.RANK.json`` for the parent and exit quietly
    (the parent prints it once); on ranks > 0 the library's notes are not repeated either."""
    workdir = launch_dir()
    if workdir is None:
        yield
        return
    logger = logging.getLogger("gigatok")
    level = logger.level
    if env_rank() != 0:
        logger.setLevel(logging.WARNING)
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as err:
        report: dict[str, Any] = {"rank": env_rank(), "time": time.time()}
        if isinstance(err, SettingError):  # named by its flags, as the parent prints it
            err = err.for_cli()
        if isinstance(err, GigatokError):
            report |= {"message": err.message, "hint": err.hint}
        elif isinstance(err, OSError) and err.strerror:
            from gigatok_cli._common import os_error_text

            report |= dict(zip(("message", "hint"), os_error_text(err), strict=True))
        else:  # a bug or a device error (CUDA out of memory): keep the traceback for the user
            tb = workdir / f"traceback.{env_rank()}.txt"
            tb.write_text("".join(traceback.format_exception(err)))
            first_line = (str(err).splitlines() or [""])[0][:300]
            report |= {
                "message": f"{type(err).__name__}: {first_line}",
                "hint": f"the full traceback is in {tb}",
                "traceback_file": str(tb),
            }
        write_text_atomic(workdir / f"error.{env_rank()}.json", json.dumps(report))
        raise typer.Exit(1) from None
    finally:
        logger.setLevel(level)


def global_progress(on_progress: ProgressFn) -> ProgressFn:
    """Wrap a rank-local ``on_progress(done, total, *, stage)`` (:mod:`gigatok_core.utils.progress`) so that
    rank 0's bars count every local rank's items.

    In a launched worker each rank records its counts per stage in the shared folder and rank 0
    reports their sums (bars that lag by at most one batch per rank; on several machines, node 0's
    ranks; a stage only rank 0 runs shows its own count); elsewhere ``on_progress`` is returned as is.
    """
    workdir = launch_dir()
    if workdir is None:
        return on_progress
    local, world = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))

    def wrapped(done: int, total: int | None, *, stage: str = "") -> None:
        key = "".join(c if c.isalnum() else "_" for c in stage)
        part = workdir / f"progress.{key}.{local}.part"
        part.write_text(f"{done} {-1 if total is None else total}")
        part.replace(workdir / f"progress.{key}.{local}")
        if env_rank() != 0:
            return
        done_sum, totals = 0, []
        for r in range(world):  # this machine's ranks (the folder is local to it)
            with contextlib.suppress(OSError, ValueError):
                d, t = (int(x) for x in (workdir / f"progress.{key}.{r}").read_text().split())
                done_sum, totals = done_sum + d, [*totals, t]
        on_progress(done_sum, None if -1 in totals else sum(totals), stage=stage)

    return wrapped


def first_worker_error(workdir: Path) -> dict[str, Any] | None:
    """The earliest error a worker reported (later ones are usually its peers losing the connection)."""
    reports = []
    for path in workdir.glob("error.*.json"):
        with contextlib.suppress(OSError, ValueError):
            reports.append(json.loads(path.read_text()))
    return min(reports, key=lambda r: (r.get("time", 0.0), r.get("rank", 0))) if reports else None


__all__ = [
    "LAUNCH_DIR_ENV",
    "env_rank",
    "first_worker_error",
    "global_progress",
    "launch_dir",
    "worker_errors_reported",
]
