"""The output side of a codes folder: what a run wrote, resuming it, refusing another run's folder.

Beside the shards and ``manifest.json`` (see :mod:`gigatok_core.data.codes_format`) an extraction keeps
``extract.json``: its resolved settings, written first. The folder is a
:class:`~gigatok_core.runs.folder.RunFolder` (:func:`codes_folder`): a rerun with the same settings
resumes (keeps the complete shards); other settings, or codes of another tokenizer, are refused
unless ``overwrite``, which removes exactly the files a codes run writes, nothing else in the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigatok_core.data.codes_format import (
    MANIFEST_NAME,
    CodesManifest,
    CodesTokenizer,
    ShardEntry,
    write_manifest,
)
from gigatok_core.errors import GigatokError
from gigatok_core.runs.folder import RunFolder

SETTINGS_NAME = "extract.json"
CHECK_GRID_NAME = "check_codes.png"
# Where the inputs were read from: a moved or differently spelled folder may resume a run (the
# file count and class names still have to agree); the tokenizer's path, when its weights agree.
WHERE_KEYS = frozenset({"data", "import_official", "classes_from"})
TOKENIZER_PATHS = ("checkpoint", "checkpoint_relative")
OUTPUTS = ("shard-*.codes.npy", "shard-*.labels.npy", MANIFEST_NAME, CHECK_GRID_NAME)
SCRATCH = (".shard-*.tmp",)


def codes_folder(output: str | Path, settings: dict[str, Any] | None = None) -> RunFolder:
    """The output folder of a codes run with ``settings`` (see :class:`RunFolder`)."""
    return RunFolder(
        output,
        "codes extraction",
        settings,
        settings_file=SETTINGS_NAME,
        outputs=OUTPUTS,
        scratch=SCRATCH,
        may_differ={*WHERE_KEYS, *(f"tokenizer.{k}" for k in TOKENIZER_PATHS)},
        hint="rerun with the settings of that run to resume it, pass --overwrite to start over, "
        "or choose another --output",
    )


def _weights(tokenizer: Any) -> Any:
    """A tokenizer record without the checkpoint's path: the preset and sha256 name the weights."""
    return (
        {k: v for k, v in tokenizer.items() if k not in TOKENIZER_PATHS}
        if isinstance(tokenizer, dict)
        else None
    )


def _describe(tokenizer: dict[str, Any]) -> str:
    name = tokenizer.get("preset") or "?"
    ckpt = tokenizer.get("checkpoint")
    sha = tokenizer.get("sha256")
    return name + (f" ({ckpt})" if ckpt else "") + (f" sha256 {sha[:12]}" if sha else "")


def prepare_output(output: str | Path, settings: dict[str, Any], *, overwrite: bool) -> bool:
    """Make ``output`` ready for a codes run with ``settings`` (JSON-able, holding ``tokenizer``).

    Returns True when the folder already holds the finished run with these settings (nothing to do).
    Refuses (GigatokError) a folder holding another run's codes unless ``overwrite``.
    """
    folder = codes_folder(output, settings)
    old = None if overwrite or not folder.path.is_dir() else folder.previous()
    if old is not None and _weights(old.get("tokenizer")) != _weights(settings["tokenizer"]):
        raise GigatokError(
            f"{output} holds codes of another tokenizer: {_describe(old.get('tokenizer') or {})}, "
            f"not {_describe(settings['tokenizer'])}",
            hint="pass --overwrite to replace them, or choose another --output",
        )
    if folder.check(overwrite=overwrite) and (folder.path / MANIFEST_NAME).is_file():
        return True
    folder.claim(overwrite=overwrite)
    return False


@dataclass
class ExtractReport:
    """What a run did (on the main rank)."""

    manifest: CodesManifest
    encoded_shards: int = 0  # shards written by this run
    encoded_images: int = 0  # images in them
    reused_shards: int = 0  # complete shards kept from an interrupted run
    already_complete: bool = False  # the folder held this finished run: nothing was done
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable image -> reason
    seconds: float = 0.0
    check_grid: Path | None = None

    @property
    def images_per_second(self) -> float:
        return self.encoded_images / self.seconds if self.seconds > 0 else 0.0


def finish_codes(
    output: Path,
    parts: list[Any],
    n_shards: int,
    record: CodesTokenizer,
    crops: int,
    classes: tuple[str, ...] | list[str],
    extra: dict[str, Any],
) -> ExtractReport:
    """Merge the ranks' shard entries and write the manifest (last)."""
    entries: dict[int, ShardEntry] = {}
    skipped: dict[str, str] = {}
    written: list[int] = []
    reused = 0
    for part_entries, part_skipped, part_written, part_reused in parts:
        entries.update(part_entries)
        skipped.update(part_skipped)
        written += part_written
        reused += part_reused
    if sorted(entries) != list(range(n_shards)):
        raise GigatokError(
            f"the ranks returned {len(entries)} of {n_shards} shards",
            hint="every rank must see the same --data",
        )
    if skipped:
        extra = {**extra, "skipped": sorted(skipped)}
    manifest = write_manifest(
        output,
        tokenizer=record,
        crops=crops,
        classes=classes,
        shards=[entries[k] for k in range(n_shards)],
        extra=extra,
    )
    return ExtractReport(
        manifest,
        encoded_shards=len(written),
        encoded_images=sum(entries[k].count for k in written),
        reused_shards=reused,
        skipped=skipped,
    )
