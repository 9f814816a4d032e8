"""A training run's folder: its resolved config, its logs, and the rules for reusing it.

RUN_DIR/
  config.yaml        the resolved config (written once, before step 1)
  metrics.jsonl      one JSON object per logged step
  tb/                TensorBoard event files (`tensorboard --logdir RUN_DIR/tb`)
  checkpoints/       step-XXXXXXXX/ folders and the `latest` pointer (gigatok_core.checkpoints.files)
  samples/           PNG grids written by the task

A folder holding another config's run is refused (``--overwrite`` starts over, removing exactly the
entries above and nothing else); settings that only change how a run executes may differ on resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gigatok_core.errors import GigatokError
from gigatok_core.utils.fileio import write_text_atomic

log = logging.getLogger("gigatok")
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
RUN_ENTRIES = (CONFIG_FILE, METRICS_FILE, "tb", "checkpoints", "samples")
# Run settings that may change when a run is resumed (how it executes, not what it computes).
RESUMABLE_KEYS = frozenset(
    {
        "max_steps",
        "save_every",
        "keep",
        "log_every",
        "sample_every",
        "val_every",
        "device",
        "compile",
        "grad_accum",
        "strategy",
        "activation_checkpointing",
        "on_nan",
        "precision",
    }
)


def config_yaml(config: Mapping[str, Any]) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(dict(config)))


def _identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without the resumable run settings (what must match to continue a run)."""
    out = json.loads(json.dumps(dict(config), default=str))
    run = out.get("run")
    if isinstance(run, dict):
        out["run"] = {k: v for k, v in run.items() if k not in RESUMABLE_KEYS}
    return out


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        diffs: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            diffs += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return diffs
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def prepare_run_dir(
    run_dir: str | Path,
    config: Mapping[str, Any],
    *,
    resume: str,
    overwrite: bool,
    is_main: bool,
    check_resume: Callable[[], None] | None = None,
) -> bool:
    """Check (and on the main rank prepare) ``run_dir``; True when a previous run should be resumed.

    ``resume``: "auto" continues a run of the same config (a folder with another config's run is
    refused), "never" refuses any previous run. ``overwrite`` starts over whatever ``resume`` says:
    the previous run's entries (:data:`RUN_ENTRIES`) are removed, nothing else in the folder.
    ``check_resume`` runs when a run of the same config is to be resumed, before anything is written.
    """
    from omegaconf import OmegaConf

    if resume not in ("auto", "never"):
        raise GigatokError(f"--resume must be auto or never, got {resume!r}", hint="use auto or never")
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GigatokError(f"output {run_dir} is a file, not a folder", hint="pass a folder for --output")
    existing = [name for name in RUN_ENTRIES if (run_dir / name).exists()]
    if existing and (resume == "never" or overwrite):
        if not overwrite:
            raise GigatokError(
                f"{run_dir} already holds a training run ({', '.join(existing)})",
                hint="use --resume auto to continue it, or --overwrite to start over (removes it)",
            )
        if is_main:
            for name in existing:
                path = run_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            log.warning("--overwrite: removed the previous run in %s (%s)", run_dir, ", ".join(existing))
        existing = []
    if existing and (run_dir / CONFIG_FILE).is_file():
        old = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE), resolve=True)
        diffs = _differences(_identity(old), _identity(config))  # type: ignore[arg-type]
        if diffs:
            shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
            raise GigatokError(
                f"{run_dir} holds a run with another config ({shown})",
                hint="pick another --output, or --overwrite to start over (removes that run)",
            )
    elif existing:
        raise GigatokError(
            f"{run_dir} holds training files ({', '.join(existing)}) but no {CONFIG_FILE}",
            hint="pick another --output, or --overwrite to start over (removes them)",
        )
    if existing and check_resume is not None:
        check_resume()
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / CONFIG_FILE, config_yaml(config))
    return bool(existing)


# ---------------------------------------------------------------------------------------------
# Logs: metrics.jsonl (+ TensorBoard)
# ---------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # strict JSON has no NaN/inf
    return value


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl`` and mirrors scalars to TensorBoard.

    On resume, :meth:`truncate` drops records after the checkpoint's step (a killed run may have
    logged steps it must now redo), so the file reads as one uninterrupted run.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.tb: Any = None
        self.tb_dir = Path(run_dir) / "tb" if enabled and tensorboard else None

    def truncate(self, step: int) -> None:
        """Keep only the records of steps <= ``step``."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything after it is redone
        write_text_atomic(self.path, "".join(f"{line}\n" for line in kept))

    def open(self, start_step: int) -> None:
        if self.tb_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # a dependency, but a stripped-down install still trains
            return
        self.tb = SummaryWriter(log_dir=str(self.tb_dir), purge_step=start_step + 1 if start_step else None)

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {k: _plain(v) for k, v in record.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN_DIR/metrics.jsonl``."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextlib.contextmanager
def released_on_failed_start(run_dir: str | Path) -> Iterator[None]:
    """A run that fails before its first checkpoint leaves the folder as it found it.

    Without this, a start that dies (a frozen network that does not fit, a bad file) leaves a
    ``config.yaml`` behind that then refuses the corrected command as "another config's run". On
    an exception, when the folder held no run before and holds no checkpoint now, the run entries
    this start created are removed (the main rank only), and the folder too if it is left empty.
    """
    from gigatok_core.dist import dist_info

    run_dir = Path(run_dir)
    fresh = not (run_dir / CONFIG_FILE).exists()
    try:
        yield
    except BaseException:
        if fresh and dist_info().is_main and not (run_dir / "checkpoints" / "latest").exists():
            for name in RUN_ENTRIES:
                entry = run_dir / name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only when empty: never a user's other files
        raise
