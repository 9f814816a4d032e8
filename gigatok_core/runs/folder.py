"""One output folder per run: claim it, resume it, refuse another run's, overwrite only its own files.

Every command that writes a folder of outputs (``sample``, ``extract-codes``, the trainers, the probe,
the CFG search's results) goes through :class:`RunFolder`. A folder holds at most one run, named by
its settings file (``sample.json``, ``extract.json``, ``config.yaml``, ``config.json``, ...):

- a new or empty folder (or one holding only files of no run of this kind) is **claimed**: the
  settings file is written with the files the run writes (``outputs``) and its provenance
  (gigatok version, command line, UTC time), atomically;
- a folder whose settings agree with this run's identity settings is **resumed**;
- another run's folder is **refused** with the settings that differ (this run's value first) and
  what to do: pass the same options to resume it, ``--overwrite`` to start over, or another folder;
- ``overwrite`` first removes exactly what the previous run recorded (its ``outputs``; folders
  written before that record existed: the files a run of this kind writes), never a user's file;
- a start that fails before the run has produced anything leaves the folder as it found it
  (:meth:`RunFolder.released_on_failed_start`).

What each command writes (a sampling run's PNGs, a codes folder's shards, a training run's
checkpoints) stays in its own module; this module only knows names and glob patterns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gigatok_core.errors import GigatokError
from gigatok_core.runs.settings import PROVENANCE_KEYS, json_safe, provenance
from gigatok_core.utils.fileio import write_json, write_text_atomic

log = logging.getLogger("gigatok")
OUTPUTS_KEY = "outputs"  # the settings key recording what a run writes (what --overwrite removes)
RESERVED_KEYS = frozenset({*PROVENANCE_KEYS, OUTPUTS_KEY})  # never part of a run's identity
SHOWN_DIFFERENCES = 3


def plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from a JSON file (paths and other objects as strings)."""
    return json.loads(json.dumps(json_safe(settings), default=str))


def differences(ours: Any, theirs: Any, prefix: str = "", *, ignore: Collection[str] = ()) -> list[str]:
    """``key: ours vs theirs`` for every leaf that differs (nested keys dotted), sorted by key."""
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        out: list[str] = []
        for key in sorted(set(ours) | set(theirs), key=str):
            path = f"{prefix}{key}"
            if path not in ignore:
                out += differences(ours.get(key), theirs.get(key), f"{path}.", ignore=ignore)
        return out
    return [] if ours == theirs else [f"{prefix.rstrip('.')}: {_short(ours)} vs {_short(theirs)}"]


def _short(value: Any, width: int = 40) -> str:
    text = "unset" if value is None else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


class RunFolder:
    """The output folder ``path`` of one run of ``kind`` (e.g. "sampling run") with ``settings``
    (a mapping, or a dataclass such as a command's request).

    ``settings_file``: its name in the folder (``.yaml``: YAML with the provenance as comments,
    else JSON). ``outputs``: names or glob patterns (plain names, no folders) of what this run writes,
    recorded in the settings file; ``scratch``: patterns of in-progress files a run of this kind may
    leave (removed with its outputs, never recorded). ``legacy_outputs(previous)``: the outputs of a
    run whose settings file predates the ``outputs`` record (default: ``outputs`` + ``scratch``).

    Identity: the settings less the provenance and ``outputs``; only the top-level keys ``compare``
    when given; never the dotted keys ``may_differ`` (how a run executes, not what it computes).
    ``phrase`` names a difference in messages ("other settings", "another config", ...); ``hint``
    replaces the advice of a refusal; ``option`` is the flag that named the folder.
    """

    def __init__(
        self,
        path: str | Path,
        kind: str,
        settings: Mapping[str, Any] | Any = None,
        *,
        settings_file: str,
        outputs: Sequence[str] = (),
        scratch: Sequence[str] = (),
        compare: Collection[str] | None = None,
        may_differ: Collection[str] = (),
        legacy_outputs: Callable[[Mapping[str, Any]], Sequence[str]] | None = None,
        phrase: str = "other settings",
        hint: str | None = None,
        option: str = "--output",
    ) -> None:
        for name in (settings_file, *outputs, *scratch):
            if not _is_plain_name(name):
                raise ValueError(f"run folder entries are plain names or patterns, got {name!r}")
        self.path = Path(path)
        self.kind = kind
        if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
            settings = dataclasses.asdict(settings)  # a request object saved as the run's settings
        self.settings = dict(settings or {})
        self.settings_file = settings_file
        self.outputs = [n for n in dict.fromkeys(outputs) if n != settings_file]
        self.scratch = list(scratch)
        self.compare = None if compare is None else tuple(compare)
        self.may_differ = frozenset(may_differ)
        self.legacy_outputs = legacy_outputs
        self.phrase = phrase
        self.hint = hint
        self.option = option

    # -- reading ------------------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.path / self.settings_file

    @property
    def is_yaml(self) -> bool:
        return self.settings_file.endswith((".yaml", ".yml"))

    def previous(self) -> dict[str, Any] | None:
        """The settings of the run already in the folder; None when there is no settings file.

        An unreadable settings file raises (it may be anything: nothing is assumed about it).
        """
        if not self.settings_path.is_file():
            return None
        try:
            if self.is_yaml:
                from omegaconf import OmegaConf

                raw = OmegaConf.to_container(OmegaConf.load(self.settings_path), resolve=True)
            else:
                raw = json.loads(self.settings_path.read_text(encoding="utf-8"))
        except Exception as err:  # JSON, YAML and OS errors alike: the file is not a run's settings
            raise GigatokError(
                f"{self.settings_path} cannot be read ({type(err).__name__}: {err})",
                hint=f"pass --overwrite to start over, or choose another {self.option}",
            ) from None
        if not isinstance(raw, dict):
            raise GigatokError(
                f"{self.settings_path} does not hold a run's settings",
                hint=f"pass --overwrite to start over, or choose another {self.option}",
            )
        return raw

    def identity(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """What must agree for a run to continue another: see the class docstring."""
        out = {k: v for k, v in plain(settings).items() if k not in RESERVED_KEYS}
        return out if self.compare is None else {k: out.get(k) for k in self.compare}

    def differences(self, previous: Mapping[str, Any]) -> list[str]:
        """``key: this run's value vs the folder's`` for every identity setting that differs."""
        return differences(self.identity(self.settings), self.identity(previous), ignore=self.may_differ)

    def recorded(self, previous: Mapping[str, Any] | None) -> list[str]:
        """The names/patterns the previous run owns (its ``outputs``, or the legacy ones)."""
        names = (previous or {}).get(OUTPUTS_KEY)
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            owned = list(names)
        elif previous is not None and self.legacy_outputs is not None:
            owned = list(self.legacy_outputs(previous))
        else:
            owned = [*self.outputs, *self.scratch]
        # A recorded pattern counts only when this kind writes it: an edited record ("*") never
        # reaches a user's files.
        known = {*self.outputs, *self.scratch}
        owned = [n for n in owned if _is_plain_name(n) and (n in known or not _is_pattern(n))]
        return list(dict.fromkeys([*owned, *self.scratch]))

    def _matches(self, names: Sequence[str]) -> list[Path]:
        if not self.path.is_dir():
            return []
        found: dict[Path, None] = {}
        for name in names:
            for p in sorted(self.path.glob(name)) if _is_pattern(name) else [self.path / name]:
                if (p.exists() or p.is_symlink()) and p.parent == self.path:
                    found[p] = None
        return list(found)

    def held(self) -> list[Path]:
        """Files of this run's kind already in the folder (its settings file included)."""
        return self._matches([self.settings_file, *self.outputs, *self.scratch])

    # -- deciding -----------------------------------------------------------------------------
    def check(self, *, overwrite: bool = False) -> bool:
        """Whether this run resumes the folder's run; refuses (GigatokError) another run's folder.

        Read-only: nothing is written or removed (see :meth:`claim`). With ``overwrite`` only a
        folder path that is not a folder is refused.
        """
        if self.path.exists() and not self.path.is_dir():
            raise GigatokError(
                f"{self.option} {self.path} exists and is not a folder", hint=f"choose another {self.option}"
            )
        if overwrite or not self.path.is_dir():
            return False
        previous = self.previous()
        if previous is not None:
            self.refuse_if_different(previous)
            return True
        files = self.held()
        if files:
            more = f" and {len(files) - 1} more" if len(files) > 1 else ""
            raise GigatokError(
                f"{files[0]}{more} already exist (files of a {self.kind}), and {self.path} has no "
                f"{self.settings_file} to resume from",
                hint=f"pass --overwrite to replace them, or choose another {self.option}",
            )
        return False

    def refuse_if_different(self, previous: Mapping[str, Any], where: str | Path | None = None) -> None:
        """Refuse (GigatokError) when ``previous`` settings are another run's, naming what differs."""
        diffs = self.differences(previous)
        if not diffs:
            return
        shown = "; ".join(diffs[:SHOWN_DIFFERENCES])
        if len(diffs) > SHOWN_DIFFERENCES:
            shown += f" (and {len(diffs) - SHOWN_DIFFERENCES} more)"
        raise GigatokError(
            f"{where or self.path} holds a {self.kind} with {self.phrase} (this run vs that one: {shown})",
            hint=self.hint
            or f"pass the same options to resume it, --overwrite to start over (removes only that "
            f"run's files), or choose another {self.option}",
        )

    # -- writing ------------------------------------------------------------------------------
    def claim(self, *, overwrite: bool = False) -> list[str]:
        """Make the folder this run's (call on one process, after :meth:`check`): with
        ``overwrite`` remove the previous run's files first; write the settings file. Returns the
        names removed."""
        removed = self.remove_previous() if overwrite else []
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise GigatokError(
                f"cannot create the output folder {self.path} ({err.strerror})",
                hint=f"choose another {self.option}",
            ) from None
        previous = None if overwrite else self.previous()
        kept = [] if previous is None else [n for n in self.recorded(previous) if self._matches([n])]
        try:
            self.write_settings([*kept, *self.outputs])
        except OSError as err:
            raise GigatokError(
                f"cannot write to {self.path} ({err.strerror})",
                hint=f"check the folder's permissions or choose another {self.option}",
            ) from None
        if removed:
            log.warning("--overwrite: removed the previous run in %s (%s)", self.path, ", ".join(removed))
        return removed

    def write_settings(self, outputs: Sequence[str] | None = None) -> Path:
        """Write the settings file atomically: settings, ``outputs`` (this file last), provenance."""
        names = [
            n
            for n in dict.fromkeys([*(self.outputs if outputs is None else outputs)])
            if n != self.settings_file
        ]
        names.append(self.settings_file)
        if self.is_yaml:  # a config file users may pass back: provenance and outputs as comments
            from omegaconf import OmegaConf

            notes = {**provenance(), OUTPUTS_KEY: " ".join(names)}
            header = "".join(f"# {k}: {' '.join(str(v).splitlines())}\n" for k, v in notes.items())
            write_text_atomic(self.settings_path, header + OmegaConf.to_yaml(OmegaConf.create(self.settings)))
        else:
            write_json(self.settings_path, {**plain(self.settings), OUTPUTS_KEY: names, **provenance()})
        return self.settings_path

    def remove_previous(self, *, keep: Collection[str] = ()) -> list[str]:
        """Remove what the folder's previous run recorded (or, for an unreadable or missing record,
        what a run of this kind writes), its settings file last; returns the names removed.
        ``keep``: names not to remove (files this run has already written again)."""
        try:
            previous = self.previous()
        except GigatokError:
            previous = None
        victims = [
            p
            for p in self._matches(self.recorded(previous))
            if p != self.settings_path and p.name not in keep
        ]
        victims += self._matches([self.settings_file])
        for p in victims:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        return [p.name for p in victims]

    @contextlib.contextmanager
    def released_on_failed_start(
        self, *, started: Callable[[], bool] = lambda: False, is_main: bool | None = None
    ) -> Iterator[None]:
        """A run that fails before it ``started()`` (e.g. wrote its first checkpoint) leaves the
        folder as it found it.

        Without this, a start that dies (a model that does not fit, a bad file) leaves a settings
        file behind that then refuses the corrected command as another run's. On an exception,
        when the folder held no file of this kind before, the files this start wrote are removed
        (main process only), and the folder too if that leaves it empty: never a user's other files.
        """
        if is_main is None:
            from gigatok_core.dist import dist_info

            is_main = dist_info().is_main
        fresh = not self.held()  # a folder holding a run (or files a refusal protects) keeps them
        try:
            yield
        except BaseException:
            if fresh and is_main and not started():
                self.remove_previous()
                with contextlib.suppress(OSError):
                    self.path.rmdir()  # only when empty
            raise
