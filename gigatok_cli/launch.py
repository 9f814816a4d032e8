"""``--nproc-per-node``: a heavy command runs itself on every local GPU through PyTorch's launcher.

A command decorated with :func:`launch_options` gains the launcher options (declared here once) and
receives them as one ``launch: LaunchOptions`` argument. After validating its options it calls::

    if maybe_launch(launch, prefetch=lambda: gpt_files(gpt, tokenizer)):
        return  # the workers ran; this (parent) process is done

In the parent (``RANK`` unset, ``nproc * nnodes > 1``) ``prefetch`` fills the cache with every file
the run reads (with the usual progress bars); then ``torch.distributed.run`` (torchrun's own code,
not a shell wrapper) starts the workers, each running the same ``gigatok`` command without the
launcher options, with ``GIGATOK_OFFLINE=1`` so that none of them reaches for the network.

Workers started this way hand a failure to the parent (one JSON file per rank in a shared temporary
folder) instead of printing it; the parent prints the first failure once and exits 1. Under an
existing ``torchrun`` (``RANK`` set) the options are ignored with a note. The output is what one
process writes: rank 0 prints; :func:`gigatok_cli.launch_worker.global_progress` makes its bar count
every local rank's items. The workers' side (error files, shared progress) is :mod:`gigatok_cli.launch_worker`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import typer

from gigatok_cli._common import console
from gigatok_cli.launch_worker import LAUNCH_DIR_ENV, env_rank, first_worker_error, worker_errors_reported
from gigatok_cli.options import dataclass_options, option_group
from gigatok_core.errors import GigatokError

F = TypeVar("F", bound=Callable[..., Any])
STOP_CODES = frozenset({128 + signal.SIGINT, 128 + signal.SIGTERM})  # a trainer stopped after its checkpoint
PANEL = "Multi-GPU (torchrun)"


@dataclass(frozen=True)
class LaunchOptions:
    """What ``--nproc-per-node`` and its companions asked for (torchrun's meaning, passed through)."""

    nproc_per_node: str = "1"  # a count, or "auto": every visible CUDA GPU
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    rdzv_endpoint: str | None = None
    context: typer.Context | None = field(default=None, compare=False, repr=False)  # to rebuild argv

    def local_workers(self) -> int:
        """Processes to start on this node (``auto``: the visible CUDA GPUs, 1 without any)."""
        value = self.nproc_per_node.strip().lower()
        if value == "auto":
            import torch

            return max(torch.cuda.device_count(), 1)  # CUDA_VISIBLE_DEVICES is respected by torch
        if not value.isdigit() or int(value) < 1:
            raise GigatokError(
                f"--nproc-per-node must be a positive number or 'auto', got {self.nproc_per_node!r}",
                hint="e.g. --nproc-per-node 8, or --nproc-per-node auto for every visible GPU",
            )
        return int(value)

    def check(self) -> None:
        if self.nnodes < 1:
            raise GigatokError(f"--nnodes must be at least 1, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise GigatokError(
                f"--node-rank {self.node_rank} is outside 0..{self.nnodes - 1}",
                hint="number the nodes 0 .. --nnodes - 1; node 0 hosts --master-addr",
            )
        if self.master_port is not None and not 0 < self.master_port < 65536:
            raise GigatokError(f"--master-port must lie in 1..65535, got {self.master_port}")
        self.local_workers()


SINGLE = LaunchOptions()
_CTX = "_launch_context"  # the typer.Context parameter the decorator adds (typer fills it in)

# What each launcher option means; the options are LaunchOptions' fields (`launch_options` adds them)
LAUNCH_HELP = {
    "nproc_per_node": "Processes on this machine: a number or 'auto' (every visible CUDA GPU). The parent "
    "fetches every file first, then starts the workers with torchrun's launcher.",
    "nnodes": "Machines in the job.",
    "node_rank": "This machine's index (0 .. nnodes-1).",
    "master_addr": "Address of node 0 (multi-node).",
    "master_port": "Port on node 0 (default 29500).",
    "rdzv_endpoint": "host:port of a c10d rendezvous (instead of --master-addr/--node-rank).",
}
_OPTIONS: dict[str, tuple[Any, Any]] = {
    **dataclass_options(LaunchOptions, LAUNCH_HELP, names=LAUNCH_HELP, panel=PANEL),
    _CTX: (typer.Context, None),  # typer fills it in; maybe_launch rebuilds the command line from it
}


def launch_options(fn: F) -> F:
    """Add the launcher options to command ``fn``, which takes them as ``launch: LaunchOptions``.

    Put it below ``@handle_errors``. In a worker started by :func:`maybe_launch` it also turns a
    failure into an error file for the parent (see
    :func:`gigatok_cli.launch_worker.worker_errors_reported`).
    """

    @functools.wraps(fn)
    def reported(*args: Any, **kwargs: Any) -> Any:
        with worker_errors_reported():
            return fn(*args, **kwargs)

    return option_group("launch", _OPTIONS, lambda v: LaunchOptions(context=v.pop(_CTX), **v))(reported)


# ---------------------------------------------------------------------------------------------
# The parent
# ---------------------------------------------------------------------------------------------
def maybe_launch(launch: LaunchOptions, *, prefetch: Callable[[], object] | None = None) -> bool:
    """Run the current command on ``launch.nproc_per_node`` local processes if asked to.

    Returns False when the caller should just run (one process, or already a worker / under torchrun)
    and True when the workers have run and succeeded (the caller returns). A failed worker raises
    :class:`GigatokError` with its message; Ctrl-C stops every worker and raises KeyboardInterrupt.
    """
    if os.environ.get("RANK") is not None:
        if launch != SINGLE and os.environ.get(LAUNCH_DIR_ENV) is None and env_rank() == 0:
            console.print(
                "[dim]note:[/] already running under torchrun (RANK is set): --nproc-per-node and the "
                "other launcher options are ignored",
                highlight=False,
                soft_wrap=True,
            )
        return False
    launch.check()
    nproc = launch.local_workers()
    if launch.nproc_per_node.strip().lower() == "auto" and nproc == 1 and launch.nnodes == 1:
        console.print(
            "[dim]note:[/] --nproc-per-node auto: fewer than two CUDA GPUs visible, running in one process"
        )
    if nproc * launch.nnodes == 1:
        return False
    if prefetch is not None:
        prefetch()
    if launch.context is None:
        raise GigatokError("--nproc-per-node works only from the gigatok command line")
    argv = worker_argv(launch.context)
    _run_workers(launch, nproc, argv)
    return True


def worker_argv(ctx: typer.Context) -> list[str]:
    """The command line that reproduces ``ctx``'s command without the launcher options.

    Built from the parsed parameters (so it works however the command was invoked): each option not
    left at its default, then ``--`` and the positional arguments.
    """
    path: list[str] = []
    c: typer.Context | None = ctx
    while c is not None and c.parent is not None:
        path.insert(0, c.info_name or "")
        c = c.parent
    opts: list[str] = []
    positional: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        if name in _OPTIONS or name not in ctx.params:
            continue
        source = ctx.get_parameter_source(name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = ctx.params[name]
        if param.param_type_name == "argument":
            values = value if isinstance(value, list | tuple) else [value]
            positional += [os.fspath(v) if isinstance(v, os.PathLike) else str(v) for v in values]
            continue
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if param.is_flag:
            off = next((o for o in param.secondary_opts if o.startswith("--")), None)
            opts += [flag] if value else [off] if off else []
            continue
        if value is None:
            continue
        items = value if param.multiple else [value]
        for item in items:
            parts = item if isinstance(item, list | tuple) and param.nargs != 1 else [item]
            strs = [os.fspath(v) if isinstance(v, os.PathLike) else str(v) for v in parts]
            opts += [f"{flag}={strs[0]}"] if len(strs) == 1 and flag.startswith("--") else [flag, *strs]
    return path + opts + (["--", *positional] if positional else [])


def _torchrun_args(launch: LaunchOptions, nproc: int) -> list[str]:
    args = ["--nproc-per-node", str(nproc), "--nnodes", str(launch.nnodes), "--max-restarts", "0"]
    if launch.rdzv_endpoint:
        args += ["--rdzv-backend", "c10d", "--rdzv-endpoint", launch.rdzv_endpoint]
    elif launch.nnodes == 1 and launch.master_port is None:
        args += ["--standalone"]  # a free local port: several single-node runs can share a machine
    else:
        args += ["--node-rank", str(launch.node_rank), "--master-addr", launch.master_addr]
        args += ["--master-port", str(launch.master_port or 29500)]
    return args


def _run_workers(launch: LaunchOptions, nproc: int, argv: list[str]) -> None:
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError

    workdir = Path(tempfile.mkdtemp(prefix="gigatok-launch-"))
    args = torchrun.parse_args([*_torchrun_args(launch, nproc), "-m", "gigatok_cli.main", *argv])
    keep = False
    env = {LAUNCH_DIR_ENV: str(workdir), "GIGATOK_OFFLINE": "1"}
    try:
        with _environ(env), _quiet_torchrun():
            torchrun.run(args)
    except ChildFailedError as err:
        first = first_worker_error(workdir)
        codes = {f.exitcode for f in err.failures.values()}
        if first is None and len(codes) == 1 and codes <= STOP_CODES:
            # every worker was stopped by SIGTERM/SIGINT after saving (rank 0 said so): same exit code
            raise typer.Exit(codes.pop()) from None
        if first is None:  # killed or crashed without a Python exception (signal, segfault, OOM killer)
            rank, failure = min(err.failures.items(), key=lambda kv: kv[1].timestamp)
            how = (
                f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
            )
            raise GigatokError(
                f"worker {rank} of the {launch.nnodes * nproc} stopped with {how}",
                hint="its output is above; rerun with --nproc-per-node 1 to see the problem in one process",
            ) from None
        keep = first.get("traceback_file") is not None
        raise GigatokError(
            f"worker {first['rank']} failed: {first['message']}", hint=first.get("hint")
        ) from None
    except SignalException as err:
        # torchrun passed the signal on to the workers and waited for them (a trainer saves its
        # checkpoint first): leave with the shell's code for that signal
        if int(err.sigval) == signal.SIGINT:
            raise KeyboardInterrupt from None
        console.print(f"[yellow]stopped by {signal.Signals(err.sigval).name}[/]", highlight=False)
        raise typer.Exit(128 + int(err.sigval)) from None
    except RendezvousError as err:
        raise GigatokError(
            f"the workers could not meet: {(str(err).splitlines() or [''])[0][:300]}",
            hint="check --master-addr/--master-port (or --rdzv-endpoint) and run the same command on every node",
        ) from None
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set variables for the workers (they inherit the parent's environment); restore it afterwards."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _quiet_torchrun() -> Iterator[None]:
    """torchrun's agent logs banners and every worker's failure; gigatok reports the failure itself."""
    import torch.distributed.elastic.agent.server.api  # noqa: F401 - create the agent's logger first

    names = [
        n for n in logging.root.manager.loggerDict if n.startswith(("torch.distributed", "torch.elastic"))
    ]
    loggers = [logging.getLogger(n) for n in names]  # each has its own level (torch's get_logger sets one)
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


__all__ = [
    "SINGLE",
    "LaunchOptions",
    "launch_options",
    "maybe_launch",
    "worker_argv",
]
