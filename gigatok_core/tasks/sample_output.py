"""The output folder of a sampling run: which run owns it, resuming, and its summaries.

A folder holds at most one run: a :class:`~gigatok_core.runs.folder.RunFolder`
(:func:`sample_folder`). Its ``sample.json`` records the settings and every file the run wrote or
will write (``outputs``). A new run in that folder must have the same pixel settings and include
every sample of the previous one (a continuation: more classes or more per class); anything else is
another run and is refused. ``overwrite=True`` first removes exactly the files the previous run
recorded, nothing else.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gigatok_core.ar.classes import class_name, slug, slugify
from gigatok_core.data.images import Tile, contact_sheet, save_npz, save_png
from gigatok_core.errors import GigatokError
from gigatok_core.runs.folder import RunFolder

SETTINGS_FILE = "sample.json"
CODES_FILE = "codes.npz"
GRID_FILE = "grid.png"
PARTIAL_CODES = ".codes-partial"  # per-batch codes while a run is in progress (merged at the end)
GRID_MAX_PER_CLASS = 8
GRID_MAX_CLASSES = 32
log = logging.getLogger("gigatok")
# Settings that change the pixels; a resumed run must agree on all of them.
OUTPUT_KEYS = (
    "gpt",
    "tokenizer",
    "gpt_checkpoint",
    "tokenizer_checkpoint",
    "cfg",
    "sampling",
    "seed",
    "rng",
    "sampler",  # recorded for --sampler sjd only (absent = the standard sampler)
    "precision",
)


@dataclass(frozen=True)
class SampleItem:
    """Sample ``index`` of class ``class_idx``; ``name``: the class's name in a GPT's own classes
    (None: ImageNet's)."""

    class_idx: int
    index: int
    name: str | None = None

    @property
    def stem(self) -> str:
        label = slugify(self.name) if self.name is not None else slug(self.class_idx)
        return f"{self.class_idx:03d}_{label}_{self.index:04d}"

    @property
    def label(self) -> str:
        return self.name if self.name is not None else class_name(self.class_idx)


def plan(classes: Sequence[int], num_per_class: int, names: Sequence[str] | None = None) -> list[SampleItem]:
    """Output order: all samples of the first class, then the next class, ... ``names``: the GPT's
    own class names (a run trained on one's own class folders), else ImageNet's."""
    return [
        SampleItem(c, k, names[c] if names is not None else None)
        for c in dict.fromkeys(classes)
        for k in range(num_per_class)
    ]


def planned_outputs(items: Sequence[SampleItem], *, grid: bool, save_codes: bool) -> list[str]:
    """File names (relative to the folder) a run of ``items`` writes, settings file last."""
    names = [f"{it.stem}.png" for it in items]
    names += [n for n, on in ((CODES_FILE, save_codes), (GRID_FILE, grid)) if on]
    return [*names, SETTINGS_FILE]


def read_previous(output: Path) -> dict[str, Any]:
    """The previous run's settings in ``output`` (empty when there are none or they are unreadable)."""
    try:
        return sample_folder(output).previous() or {}
    except GigatokError:
        return {}


def sample_folder(
    output: Path,
    items: Sequence[SampleItem] = (),
    settings: dict[str, Any] | None = None,
    *,
    grid: bool = True,
    save_codes: bool = True,
) -> RunFolder:
    """The output folder of a sampling run of ``items`` (see :class:`RunFolder`)."""
    return RunFolder(
        output,
        "sampling run",
        settings,
        settings_file=SETTINGS_FILE,
        outputs=planned_outputs(items, grid=grid, save_codes=save_codes),
        scratch=(PARTIAL_CODES,),
        compare=OUTPUT_KEYS,
        legacy_outputs=lambda previous: planned_outputs(_previous_plan(previous), grid=True, save_codes=True),
        phrase="different settings",
        hint="choose another --output, or pass --overwrite to replace that run's files",
    )


def check_output(
    output: Path,
    items: list[SampleItem],
    settings: dict[str, Any],
    *,
    overwrite: bool,
    save_codes: bool,
    grid: bool,
) -> tuple[RunFolder, bool]:
    """Refuse to touch files of another run; returns (the folder, whether a part of it is done).

    Nothing is written: :meth:`RunFolder.claim` does that once the models are loaded (with
    ``overwrite``, it first removes the previous run's files, those its sample.json records).
    Without it, a folder whose run has other pixel settings, or samples this run does not include,
    is refused.
    """
    folder = sample_folder(output, items, settings, grid=grid, save_codes=save_codes)
    if not folder.check(overwrite=overwrite):  # new, or overwrite
        return folder, False
    previous = folder.previous() or {}
    earlier = {it.stem for it in _previous_plan(previous)}
    if not earlier <= {it.stem for it in items}:
        what = f"classes {previous.get('classes')}, {previous.get('num_per_class')} each"
        summaries = [output / n for n, on in ((GRID_FILE, grid), (CODES_FILE, save_codes)) if on]
        summaries = [p for p in summaries if p.exists()]
        if summaries:
            raise GigatokError(
                f"{summaries[0]} covers samples this run does not include ({what}); writing it "
                "again would drop them",
                hint="include those classes again, pass --overwrite to start over, or choose another --output",
            )
        raise GigatokError(
            f"{output} holds another sampling run ({what}) that this one does not continue",
            hint="choose another --output, include those samples again, or pass --overwrite to "
            "replace that run's files",
        )
    return folder, any((output / f"{it.stem}.png").exists() for it in items)


def _previous_plan(previous: dict[str, Any]) -> list[SampleItem]:
    """The samples a previous run's sample.json describes (empty if it is unreadable)."""
    try:
        names = previous.get("run_class_names")
        return plan(
            [int(c) for c in previous.get("classes", [])],
            int(previous.get("num_per_class", 0)),
            names if isinstance(names, list) else None,
        )
    except (TypeError, ValueError, IndexError):
        return []


def known_codes(output: Path) -> dict[str, np.ndarray]:
    """Codes already saved for this folder: the final codes.npz, then in-progress batch files."""
    out: dict[str, np.ndarray] = {}
    final = output / CODES_FILE
    if final.exists():
        with np.load(final) as data:
            if "names" in data:
                out.update(zip(data["names"].tolist(), data["codes"], strict=True))
    for part in sorted((output / PARTIAL_CODES).glob("*.npz")):
        with np.load(part) as data:
            out.update(zip(data["names"].tolist(), data["codes"], strict=True))
    return out


def write_codes(output: Path, items: list[SampleItem]) -> Path:
    known = known_codes(output)
    missing = [it.stem for it in items if it.stem not in known]
    if missing:
        raise GigatokError(
            f"codes for {len(missing)} samples are missing (first: {missing[0]})",
            hint="a rank may have failed; run the same command again to resume",
        )
    path = output / CODES_FILE
    save_npz(
        path,
        {
            "codes": np.stack([known[it.stem] for it in items]).astype(np.int64),
            "labels": np.array([it.class_idx for it in items], dtype=np.int64),
            "indices": np.array([it.index for it in items], dtype=np.int64),
            "names": np.array([it.stem for it in items]),
        },
    )
    shutil.rmtree(output / PARTIAL_CODES, ignore_errors=True)
    return path


def write_grid(output: Path, items: list[SampleItem]) -> Path:
    """A labelled contact sheet: one row per class (first 32 classes, first 8 samples each)."""
    rows: list[list[Tile]] = []
    for c in list(dict.fromkeys(it.class_idx for it in items))[:GRID_MAX_CLASSES]:
        row = []
        for it in [it for it in items if it.class_idx == c][:GRID_MAX_PER_CLASS]:
            img = Image.open(output / f"{it.stem}.png").convert("RGB")
            if img.width > 128:
                img = img.resize((128, round(128 * img.height / img.width)), Image.Resampling.BICUBIC)
            row.append(Tile(np.asarray(img), f"{c} {it.label} #{it.index}"))
        rows.append(row)
    path = output / GRID_FILE
    save_png(path, contact_sheet(rows, label_height=14))
    classes, per_class = len(dict.fromkeys(it.class_idx for it in items)), max(it.index for it in items) + 1
    if (classes, per_class) != grid_shape(classes, per_class):
        log.info(
            "%s shows the first %d classes and %d samples of each (of %d classes, %d each)",
            path, *grid_shape(classes, per_class), classes, per_class,
        )  # fmt: skip
    return path


def grid_shape(num_classes: int, num_per_class: int) -> tuple[int, int]:
    """(rows, columns) of the grid for a run."""
    return min(num_classes, GRID_MAX_CLASSES), min(num_per_class, GRID_MAX_PER_CLASS)
