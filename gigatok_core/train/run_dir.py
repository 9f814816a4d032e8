"""A training run's folder: its resolved config, its logs, and the rules for reusing it.

RUN_DIR/
  config.yaml        the resolved config (written once, before step 1)
  metrics.jsonl      one JSON object per logged step
  tb/                TensorBoard event files (`tensorboard --logdir RUN_DIR/tb`)
  checkpoints/       step-XXXXXXXX/ folders and the `latest` pointer (gigatok_core.checkpoints.files)
  samples/           PNG grids written by the task

The folder is a :class:`~gigatok_core.runs.folder.RunFolder` (:func:`training_folder`): another
config's run is refused, ``--overwrite`` starts over removing exactly the entries above and nothing
else, settings that only change how a run executes may differ on resume, and a start that fails
before its first checkpoint leaves the folder as it found it. ``config.yaml`` carries the run's
provenance (gigatok version, command line, time) as comments, so it still loads as a config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gigatok_core.errors import GigatokError
from gigatok_core.runs.folder import RunFolder
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


def training_folder(run_dir: str | Path, config: Mapping[str, Any] | None = None) -> RunFolder:
    """The folder of a training run with the resolved ``config`` (see :class:`RunFolder`)."""
    return RunFolder(
        run_dir,
        "training run",
        config,
        settings_file=CONFIG_FILE,
        outputs=RUN_ENTRIES,
        may_differ=[f"run.{key}" for key in RESUMABLE_KEYS],
        phrase="another config",
        hint="pass the same config to resume it, --overwrite to start over (removes that run's files "
        "only), or pick another --output",
    )


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
    if resume not in ("auto", "never"):
        raise GigatokError(f"--resume must be auto or never, got {resume!r}", hint="use auto or never")
    folder = training_folder(run_dir, config)
    existing = folder.held() if folder.path.is_dir() else []
    if existing and resume == "never" and not overwrite:
        raise GigatokError(
            f"{run_dir} already holds a training run ({', '.join(p.name for p in existing)})",
            hint="use --resume auto to continue it, or --overwrite to start over (removes it)",
        )
    resuming = folder.check(overwrite=overwrite)
    if resuming and check_resume is not None:
        check_resume()
    if is_main:
        folder.claim(overwrite=overwrite)
    return resuming


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


def released_on_failed_start(run_dir: str | Path) -> contextlib.AbstractContextManager[None]:
    """A training start that fails before its first checkpoint leaves ``run_dir`` as it found it
    (:meth:`RunFolder.released_on_failed_start`; a run has started once ``checkpoints/latest`` exists)."""
    latest = Path(run_dir) / "checkpoints" / "latest"
    return training_folder(run_dir).released_on_failed_start(started=latest.exists)
