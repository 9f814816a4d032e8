"""The on-disk format of pre-extracted tokenizer codes (CODES_DIR): shards and a manifest.

The official pipeline (docs/recipes.md#gpt) writes one ``.npy`` per image (2.5 million files for ImageNet).
We store per shard one memory-mappable array of codes and one of labels, plus a manifest written
last, so a folder without ``manifest.json`` is recognisably unfinished:

- ``shard-{k:05d}.codes.npy``: (N, crops, T), uint16 when the codebook fits, else int32;
- ``shard-{k:05d}.labels.npy``: (N,) int32;
- ``manifest.json``: format, tokenizer record, crops, image count, class names, per-shard
  file names, counts and sha256 hashes, ``created_by``.

Each shard file is written atomically (``fileio.atomic_write``), the codes before the labels, so a
shard whose labels file exists is complete; a killed extraction resumes at the missing shards. The Dataset reading them is
:class:`gigatok_core.data.codes.CodesDataset`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gigatok_core.errors import GigatokError
from gigatok_core.utils.fileio import atomic_write, sha256_file, write_json

CODES_FORMAT = 1
MANIFEST_NAME = "manifest.json"
EXTRACT_COMMAND = "gigatok train extract-codes"
_UINT16_VOCAB = 1 << 16


def shard_files(k: int) -> tuple[str, str]:
    """The (codes, labels) file names of shard ``k``."""
    return f"shard-{k:05d}.codes.npy", f"shard-{k:05d}.labels.npy"


def codes_dtype(codebook_size: int) -> np.dtype:
    """uint16 when every id fits (codebook_size <= 65536), else int32."""
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    return np.dtype(np.uint16) if codebook_size <= _UINT16_VOCAB else np.dtype(np.int32)


def _holds_images(root: Path) -> bool:
    """True when ``root`` or one of its sub-folders (an ImageFolder tree) holds an image file."""
    from gigatok_core.data.images import IMAGE_EXTENSIONS

    folders = [root, *(p for p in root.iterdir() if p.is_dir())]
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for f in folders for p in f.iterdir() if p.is_file())


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True)
class CodesTokenizer:
    """Which tokenizer produced the codes: a preset name and/or a checkpoint (sha256, its absolute
    path and its path relative to the codes folder: :func:`gigatok_core.weights.find_recorded`)."""

    codebook_size: int
    num_tokens: int
    preset: str | None = None
    checkpoint: str | None = None
    sha256: str | None = None
    checkpoint_relative: str | None = None

    def __post_init__(self) -> None:
        if self.codebook_size < 1 or self.num_tokens < 1:
            raise ValueError(f"codebook_size and num_tokens must be >= 1, got {self}")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "preset": self.preset,
            "checkpoint": self.checkpoint,
            "sha256": self.sha256,
            "codebook_size": self.codebook_size,
            "num_tokens": self.num_tokens,
        }
        if self.checkpoint_relative is not None:  # only beside a checkpoint (a preset has none)
            out["checkpoint_relative"] = self.checkpoint_relative
        return out

    def locate(self, base: str | Path) -> Path | None:
        """The recorded checkpoint file, found from anywhere (absolute path, else relative to
        ``base``, the folder holding the record) and checked by its sha256; None for a preset."""
        from gigatok_core.weights import find_recorded

        if not self.checkpoint:
            return None
        return find_recorded(
            self.checkpoint,
            self.checkpoint_relative,
            self.sha256,
            base=base,
            what="the tokenizer checkpoint the codes were extracted with",
            hint="pass the tokenizer weights with --tokenizer-checkpoint FILE|RUN_DIR",
        )

    def same_source(self, other: CodesTokenizer) -> bool:
        """True when both records name the same tokenizer (preset, weights hash and shapes)."""
        return (self.preset, self.sha256, self.codebook_size, self.num_tokens) == (
            other.preset,
            other.sha256,
            other.codebook_size,
            other.num_tokens,
        )


@dataclass(frozen=True)
class ShardEntry:
    """One shard as the manifest lists it."""

    codes: str
    labels: str
    count: int
    sha256_codes: str
    sha256_labels: str

    @classmethod
    def hashed(cls, root: Path, k: int, count: int) -> ShardEntry:
        """The entry of shard ``k`` of the folder ``root``, its two files hashed now."""
        codes_name, labels_name = shard_files(k)
        return cls(
            codes_name, labels_name, count, sha256_file(root / codes_name), sha256_file(root / labels_name)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "codes": self.codes,
            "labels": self.labels,
            "count": self.count,
            "sha256": {"codes": self.sha256_codes, "labels": self.sha256_labels},
        }


@dataclass(frozen=True)
class CodesManifest:
    """The parsed ``manifest.json`` of a codes folder (``root`` is the folder)."""

    root: Path
    tokenizer: CodesTokenizer
    crops: int
    num_images: int
    classes: tuple[str, ...]
    shards: tuple[ShardEntry, ...]
    created_by: str = ""
    format: int = CODES_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_tokens(self) -> int:
        return self.tokenizer.num_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "tokenizer": self.tokenizer.to_dict(),
            "crops": self.crops,
            "num_images": self.num_images,
            "classes": list(self.classes),
            "shards": [s.to_dict() for s in self.shards],
            "created_by": self.created_by,
            **self.extra,
        }


# ---------------------------------------------------------------------------- writing
def write_shard(
    codes_dir: str | Path, k: int, codes: np.ndarray, labels: np.ndarray, *, codebook_size: int
) -> ShardEntry:
    """Write shard ``k`` (codes (N, crops, T), labels (N,)) atomically; return its manifest entry.

    The codes file is written before the labels file: an existing labels file marks a complete shard.
    """
    codes = np.asarray(codes)
    labels = np.asarray(labels)
    if codes.ndim != 3 or labels.shape != (codes.shape[0],):
        raise ValueError(f"codes must be (N, crops, T) and labels (N,), got {codes.shape} and {labels.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"code ids must lie in [0, {codebook_size}), got [{codes.min()}, {codes.max()}]")
    root = Path(codes_dir)
    codes_name, labels_name = shard_files(k)
    for name, arr in (
        (codes_name, codes.astype(codes_dtype(codebook_size))),
        (labels_name, labels.astype(np.int32)),
    ):
        with atomic_write(root / name, "wb") as f:
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
    return ShardEntry.hashed(root, k, int(codes.shape[0]))


def scan_shard(codes_dir: str | Path, k: int, *, crops: int, num_tokens: int) -> ShardEntry | None:
    """The entry of shard ``k`` if its two files exist and agree in shape, else None (not complete).

    Used to resume an interrupted extraction: complete shards are kept, the rest are redone.
    """
    root = Path(codes_dir)
    codes_name, labels_name = shard_files(k)
    if not (root / labels_name).is_file() or not (root / codes_name).is_file():
        return None
    try:
        codes = np.load(root / codes_name, mmap_mode="r", allow_pickle=False)
        labels = np.load(root / labels_name, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if codes.ndim != 3 or codes.shape[1:] != (crops, num_tokens) or labels.shape != (codes.shape[0],):
        return None
    return ShardEntry.hashed(root, k, int(codes.shape[0]))


def write_manifest(
    codes_dir: str | Path,
    *,
    tokenizer: CodesTokenizer,
    crops: int,
    classes: Sequence[str],
    shards: Iterable[ShardEntry],
    extra: dict[str, Any] | None = None,
) -> CodesManifest:
    """Write ``manifest.json`` (last, atomically) for the given shards; the image count is their sum."""
    from gigatok_core import __version__

    shards = tuple(shards)
    manifest = CodesManifest(
        root=Path(codes_dir),
        tokenizer=tokenizer,
        crops=int(crops),
        num_images=sum(s.count for s in shards),
        classes=tuple(classes),
        shards=shards,
        created_by=f"gigatok {__version__}",
        extra=dict(extra or {}),
    )
    write_json(Path(codes_dir) / MANIFEST_NAME, manifest.to_dict())
    return manifest


# ---------------------------------------------------------------------------- reading
def _bad(root: Path, what: str) -> GigatokError:
    return GigatokError(
        f"codes folder {root}: {what}",
        hint=f"rerun `{EXTRACT_COMMAND} ... --output {root}` (it resumes), or `--overwrite` to start over",
    )


def _parse(root: Path, raw: Any) -> CodesManifest:
    if not isinstance(raw, dict):
        raise _bad(root, f"{MANIFEST_NAME} is not a JSON object")
    if raw.get("format") != CODES_FORMAT:
        raise GigatokError(
            f"codes folder {root}: {MANIFEST_NAME} has format {raw.get('format')!r}, this gigatok reads format {CODES_FORMAT}",
            hint=f"extract the codes again with this version: `{EXTRACT_COMMAND} --overwrite`",
        )
    try:
        tok = raw["tokenizer"]
        tokenizer = CodesTokenizer(
            codebook_size=int(tok["codebook_size"]),
            num_tokens=int(tok["num_tokens"]),
            preset=tok.get("preset"),
            checkpoint=tok.get("checkpoint"),
            sha256=tok.get("sha256"),
            checkpoint_relative=tok.get("checkpoint_relative"),
        )
        shards = tuple(
            ShardEntry(
                str(s["codes"]),
                str(s["labels"]),
                int(s["count"]),
                s["sha256"]["codes"],
                s["sha256"]["labels"],
            )
            for s in raw["shards"]
        )
        known = {"format", "tokenizer", "crops", "num_images", "classes", "shards", "created_by"}
        manifest = CodesManifest(
            root=root,
            tokenizer=tokenizer,
            crops=int(raw["crops"]),
            num_images=int(raw["num_images"]),
            classes=tuple(str(c) for c in raw["classes"]),
            shards=shards,
            created_by=str(raw.get("created_by", "")),
            extra={k: v for k, v in raw.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as err:
        raise _bad(root, f"{MANIFEST_NAME} is missing or has a malformed entry ({err!r})") from None
    if manifest.num_images != sum(s.count for s in shards):
        raise _bad(
            root,
            f"{MANIFEST_NAME} says {manifest.num_images} images but its shards hold {sum(s.count for s in shards)}",
        )
    if manifest.crops < 1:
        raise _bad(root, f"{MANIFEST_NAME} says crops={manifest.crops}")
    return manifest


def read_manifest(codes_dir: str | Path, *, verify: bool = False) -> CodesManifest:
    """Read and check a codes folder's manifest and the headers of its shard files.

    ``verify=True`` also re-hashes every shard against the manifest (reads all the data).
    A missing, empty or half-written folder raises a GigatokError naming the command that completes it.
    """
    root = Path(codes_dir)
    if not root.exists():
        raise GigatokError(
            f"codes folder {root} does not exist",
            hint=f"extract codes first: `{EXTRACT_COMMAND} --tokenizer PRESET --data IMAGES --output {root}`",
        )
    if not root.is_dir():
        raise GigatokError(
            f"codes folder {root} is not a folder", hint="pass the CODES_DIR written by extract-codes"
        )
    path = root / MANIFEST_NAME
    if not path.is_file():
        n = len(list(root.glob("shard-*.npy")))
        if n:
            raise _bad(root, f"no {MANIFEST_NAME} beside {n} shard files: the extraction did not finish")
        if _holds_images(root):  # an image folder given as --codes: extract into a new folder
            new = root.parent / f"{root.name}-codes"
            raise GigatokError(
                f"{root} holds images, not codes (no {MANIFEST_NAME})",
                hint=f"extract codes from it into a new folder first: `{EXTRACT_COMMAND} --tokenizer PRESET "
                f"--data {root} --output {new}`, then pass --codes {new}",
            )
        raise GigatokError(
            f"codes folder {root} holds no codes (no {MANIFEST_NAME})",
            hint=f"extract codes into it: `{EXTRACT_COMMAND} --tokenizer PRESET --data IMAGES --output {root}`",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _bad(root, f"{MANIFEST_NAME} is not readable JSON ({err})") from None
    manifest = _parse(root, raw)
    dtype = codes_dtype(manifest.tokenizer.codebook_size)
    for s in manifest.shards:
        for name, shape, want in (
            (s.codes, (s.count, manifest.crops, manifest.num_tokens), dtype),
            (s.labels, (s.count,), np.dtype(np.int32)),
        ):
            try:
                arr = np.load(root / name, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise _bad(root, f"shard file {name} listed in {MANIFEST_NAME} is missing") from None
            except (OSError, ValueError) as err:
                raise _bad(root, f"shard file {name} is not a readable .npy ({err})") from None
            if arr.shape != shape or arr.dtype != want:
                raise _bad(
                    root,
                    f"shard file {name} holds {arr.dtype}{list(arr.shape)}, expected {want}{list(shape)}",
                )
        if verify:
            for name, digest in ((s.codes, s.sha256_codes), (s.labels, s.sha256_labels)):
                if sha256_file(root / name) != digest:
                    raise _bad(root, f"shard file {name} does not match its sha256 in {MANIFEST_NAME}")
    return manifest
