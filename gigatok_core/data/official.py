"""``extract-codes --import-official DIR``: convert the official per-image codes layout (docs/recipes.md#gpt).

``extract_codes_c2i.py`` writes ``DIR/imagenet256_codes/{i}.npy`` (one image's crops: (crops, T),
saved as (1, crops, T) by the script) and ``DIR/imagenet256_labels/{i}.npy`` (the label: a scalar
or (1,)), i = ImageFolder index. We read them in index order into shards and a manifest. The class
names are not in that layout: ``classes_from`` (an ImageFolder tree) gives them, otherwise they are
the label numbers as text.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import torch

from gigatok_core.data.codes_dir import ExtractReport, finish_codes, prepare_output
from gigatok_core.data.codes_format import scan_shard, write_shard
from gigatok_core.data.encoder import tokenizer_record
from gigatok_core.errors import GigatokError
from gigatok_core.utils.progress import ProgressFn

CODES_SUBDIR = "imagenet256_codes"
LABELS_SUBDIR = "imagenet256_labels"


def _indexed(folder: Path) -> dict[int, Path]:
    files = {}
    for p in folder.glob("*.npy"):
        if not re.fullmatch(r"\d+", p.stem):
            raise GigatokError(
                f"{p} is not named by an image index", hint="the official files are named 0.npy, 1.npy, ..."
            )
        files[int(p.stem)] = p
    return files


def _find_layout(root: Path) -> tuple[list[Path], list[Path]]:
    """(codes files, labels files) of the official layout, paired by index, in index order."""
    root = Path(root)
    codes_dir, labels_dir = root / CODES_SUBDIR, root / LABELS_SUBDIR
    if not codes_dir.is_dir() or not labels_dir.is_dir():
        raise GigatokError(
            f"--import-official {root} lacks {CODES_SUBDIR}/ and {LABELS_SUBDIR}/",
            hint="pass the folder given to the official extract_codes_c2i.py as --code-path (e.g. .../ten_crop)",
        )
    codes, labels = _indexed(codes_dir), _indexed(labels_dir)
    if not codes:
        raise GigatokError(f"{codes_dir} holds no .npy files", hint="run the official extraction first")
    if codes.keys() != labels.keys():
        lone = sorted(codes.keys() ^ labels.keys())[0]
        side = LABELS_SUBDIR if lone in codes else CODES_SUBDIR
        raise GigatokError(
            f"image {lone} has no file in {root / side}: the official extraction looks incomplete",
            hint="rerun or finish the official extraction, then import again",
        )
    order = sorted(codes)
    return [codes[i] for i in order], [labels[i] for i in order]


def _read_one(codes_path: Path, labels_path: Path, num_tokens: int) -> tuple[np.ndarray, int]:
    try:
        c = np.load(codes_path, allow_pickle=False)
        y = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise GigatokError(
            f"cannot read {codes_path} / {labels_path} ({err})", hint="the file may be truncated"
        ) from None
    if c.ndim == 3 and c.shape[0] == 1:
        c = c[0]  # the script saves (1, crops, T)
    if c.ndim != 2 or c.shape[1] != num_tokens:
        raise GigatokError(
            f"{codes_path} holds codes of shape {list(c.shape)}, expected (crops, {num_tokens})",
            hint="these codes come from a tokenizer with another token count: pass its preset as --tokenizer",
        )
    if y.size != 1:
        raise GigatokError(f"{labels_path} holds {y.size} values, expected one label")
    return c, int(y.reshape(-1)[0])


def import_official_codes(
    source: str | Path,
    output: str | Path,
    *,
    tokenizer: str,
    checkpoint: str | Path | None = None,
    classes_from: str | Path | None = None,
    shard_size: int = 10_000,
    overwrite: bool = False,
    check_images: int = 4,
    device: torch.device | None = None,
    on_progress: ProgressFn | None = None,
) -> ExtractReport:
    """Convert the official layout in ``source`` into the codes folder ``output``; single process."""
    source, output = Path(source), Path(output)
    record, _ = tokenizer_record(tokenizer, checkpoint)
    codes_files, labels_files = _find_layout(source)
    first, _ = _read_one(codes_files[0], labels_files[0], record.num_tokens)
    crops = first.shape[0]
    names: list[str] | None = None
    if classes_from is not None:
        from gigatok_core.data.folder import find_classes

        names = find_classes(Path(classes_from), purpose="naming the imported classes")
    settings = {
        "tokenizer": record.to_dict(),
        "crops": crops,
        "shard_size": shard_size,
        "import_official": str(source),
        "num_files": len(codes_files),
        "classes_from": str(classes_from) if classes_from is not None else None,
    }
    start = time.perf_counter()
    if prepare_output(output, settings, overwrite=overwrite):
        from gigatok_core.data.codes_format import read_manifest

        return ExtractReport(read_manifest(output), already_complete=True)
    n = len(codes_files)
    n_shards = -(-n // shard_size)
    entries, written, reused, max_label = {}, [], 0, -1
    for k in range(n_shards):
        lo, hi = k * shard_size, min((k + 1) * shard_size, n)
        entry = scan_shard(output, k, crops=crops, num_tokens=record.num_tokens)
        if entry is None:
            rows = [_read_one(codes_files[i], labels_files[i], record.num_tokens) for i in range(lo, hi)]
            for i, (c, _) in zip(range(lo, hi), rows, strict=True):
                if c.shape[0] != crops:
                    raise GigatokError(f"{codes_files[i]} holds {c.shape[0]} crops, the first file {crops}")
            codes = np.stack([c for c, _ in rows])  # (N, crops, T)
            labels = np.array([y for _, y in rows])
            if codes.min() < 0 or codes.max() >= record.codebook_size:
                raise GigatokError(
                    f"code ids in {source} reach {int(codes.max())}, outside tokenizer {record.preset!r}'s "
                    f"codebook of {record.codebook_size}",
                    hint="pass the preset of the tokenizer that produced these codes as --tokenizer",
                )
            entry = write_shard(output, k, codes, labels, codebook_size=record.codebook_size)
            written.append(k)
        else:
            reused += 1
        max_label = max(max_label, int(np.load(output / entry.labels, mmap_mode="r").max(initial=-1)))
        entries[k] = entry
        if on_progress:
            on_progress(hi, n, stage="import-official")
    if names is None:
        names = [str(i) for i in range(max_label + 1)]
    elif max_label >= len(names):
        raise GigatokError(
            f"the imported labels reach {max_label}, but {classes_from} has {len(names)} class folders",
            hint="pass the ImageFolder the official codes were extracted from as --data, or omit --data",
        )
    report = finish_codes(
        output,
        [(entries, {}, written, reused)],
        n_shards,
        record,
        crops,
        names,
        {"imported_from": str(source)},
    )
    report.seconds = time.perf_counter() - start
    if check_images:
        from gigatok_core.data.check import check_grid

        report.check_grid = check_grid(
            report.manifest, tokenizer, checkpoint, device or torch.device("cpu"), check_images
        )
    return report
