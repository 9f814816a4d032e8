"""Image I/O: finding inputs, decoding any PIL mode, the ADM centre crop, pixels <-> tensors.

Pre-processing follows the official code (docs/tokenizer.md#pre-and-post-processing): PIL -> RGB, ADM centre crop
(BOX halving while the short side >= 2S, BICUBIC to short side S, centre crop), then
``x = v / 127.5 - 1``. Post-processing: ``clamp(127.5 * y + 128, 0, 255)`` truncated to uint8.
Outputs are written atomically (:mod:`gigatok_core.utils.fileio`: temp file beside the target, then ``os.replace``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from gigatok_core.errors import GigatokError
from gigatok_core.utils.fileio import write_bytes_atomic, write_npz

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".jfif",
)


# ---------------------------------------------------------------------------------------------
# Finding inputs
# ---------------------------------------------------------------------------------------------
def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files, folders (recursively, by image extension) and glob patterns, in a stable order.

    Explicit files are kept whatever their extension (a corrupt one is reported when decoded).
    Raises if an input matches nothing.
    """
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            )
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
            files = [p for p in matches if p.is_file()]
            for folder in (p for p in matches if p.is_dir()):  # 'val/*' on a folder per class
                files.extend(
                    sorted(
                        q for q in folder.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS
                    )
                )
            if not files:
                raise GigatokError(
                    f"the pattern {text!r} matches no file", hint="quote the pattern or check the folder"
                )
            found.extend(files)
        else:
            raise GigatokError(
                f"input {text!r} does not exist", hint="pass image files, folders or glob patterns"
            )
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if not unique:
        raise GigatokError(
            "no images found in the inputs", hint=f"supported extensions: {' '.join(IMAGE_EXTENSIONS)}"
        )
    return unique


def unique_stems(paths: Sequence[Path], reserved: Iterable[str] = ()) -> list[str]:
    """Output names: each file's stem, with ``-1``, ``-2``... appended until it differs from every
    earlier name and from ``reserved`` (case-insensitively, for case-insensitive file systems).

    Bytes that are not valid UTF-8 in a file name become U+FFFD, so every name can be written
    anywhere (PNG names, npz keys, JSON).
    """
    taken = {r.casefold() for r in reserved}
    names = []
    for p in paths:
        stem = p.stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        name, n = stem, 0
        while name.casefold() in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name.casefold())
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
class ImageReadError(GigatokError):
    """An input that could not be decoded (reported by name; skipped unless strict)."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    16/32-bit integer and float greyscale are rescaled (PIL's own conversion would clip them): to
    their nominal range ([0, 1] or [0, 255] floats, 8- or 16-bit integers) when the values lie in
    it, else stretched from their minimum to their maximum; images with transparency are
    composited on white; CMYK, palette, greyscale go through PIL.
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.nan_to_num(np.asarray(img).astype(np.float64))
        lo, top = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        nominal = (1.0, 255.0) if mode == "F" else (255.0, 65535.0)
        hi = next((n for n in nominal if lo >= 0 and top <= n), None)
        if mode.startswith("I;16"):
            hi = 65535.0
        if hi is None:  # outside every nominal range: stretch what is there
            arr, hi = arr - lo, max(top - lo, 1e-12)
        arr8 = np.clip(np.round(arr / hi * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image as RGB; raises :class:`ImageReadError` naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(
            f"cannot read image {path}: {err}", hint="the file is corrupt or not an image"
        ) from None


def center_crop_arr(img: Image.Image, size: int) -> np.ndarray:
    """ADM centre crop (docs/tokenizer.md#pre-and-post-processing): returns a (size, size, 3) uint8 array."""
    while min(img.size) >= 2 * size:
        img = img.resize(tuple(s // 2 for s in img.size), resample=Image.Resampling.BOX)
    scale = size / min(img.size)
    img = img.resize(tuple(round(s * scale) for s in img.size), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[top : top + size, left : left + size])


MAX_ASPECT = 64  # the centre crop of a thinner image is a smear, and its upscale can take gigabytes


def load_image(path: str | Path, image_size: int = 256) -> np.ndarray:
    """Read, convert and centre-crop one image: (S, S, 3) uint8.

    An image more than :data:`MAX_ASPECT` times longer than wide (or the reverse) is refused as
    unreadable: the ADM crop first scales its short side to ``image_size`` (a 40000x1 strip would
    become a 10 GB image).
    """
    img = read_image(path)
    if max(img.size) > MAX_ASPECT * min(img.size):
        raise ImageReadError(
            f"{path} is {img.size[0]}x{img.size[1]}: too elongated to centre-crop",
            hint=f"the crop takes images at most {MAX_ASPECT} times longer than wide",
        )
    return center_crop_arr(img, image_size)


# ---------------------------------------------------------------------------------------------
# Pixels <-> tensors
# ---------------------------------------------------------------------------------------------
def to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    arr = np.stack(list(images)) if not isinstance(images, np.ndarray) else images
    x = torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) ~[-1, 1] -> uint8 (B, H, W, 3), as the official scripts round."""
    y = torch.clamp(127.5 * x.float() + 128.0, 0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def check_writable(output: str | Path, *, option: str = "--output") -> Path:
    """Fail now, before any compute or download, if ``output`` cannot become a writable folder.

    Nothing is created: the nearest existing folder on the way to ``output`` must be writable.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise GigatokError(f"output {output} exists and is not a folder", hint=f"choose another {option}")
    probe = output
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise GigatokError(
            f"cannot create the output folder {output}: {probe} is not a folder",
            hint=f"choose another {option}",
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise GigatokError(
            f"cannot write to {probe} (permission denied)",
            hint=f"choose another {option}, or make that folder writable",
        )
    return output


def ensure_output_dir(output: str | Path) -> Path:
    """Create the output folder (and parents) or say clearly why it cannot be."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise GigatokError(f"output {output} exists and is not a folder", hint="choose another --output")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GigatokError(
            f"cannot create the output folder {output} ({err.strerror})", hint="choose another --output"
        ) from None
    return output


def save_png(path: str | Path, pixels: np.ndarray) -> None:
    """Save a (H, W, 3) uint8 array as PNG, atomically."""
    import io

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz``, atomically and safe for any key (:func:`gigatok_core.utils.fileio.write_npz`)."""
    write_npz(path, arrays)


@dataclass
class Tile:
    pixels: np.ndarray  # (H, W, 3) uint8
    label: str = ""


LABEL_LINE_HEIGHT = 11  # PIL's default bitmap font is 11 px high


def wrap_label(text: str, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """Break ``text`` into lines no wider than ``width`` pixels (words first, then characters)."""
    lines: list[str] = []
    for word in text.split():
        line = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(line) <= width:
            lines[-1] = line
            continue
        while draw.textlength(word) > width and len(word) > 1:  # a word wider than the tile
            cut = max(k for k in range(1, len(word) + 1) if draw.textlength(word[:k]) <= width or k == 1)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def contact_sheet(rows: Sequence[Sequence[Tile]], pad: int = 4, label_height: int = 14) -> np.ndarray:
    """Lay tiles out row by row on a white sheet, each with its label underneath.

    A label wider than its tile is wrapped onto more lines (the label band grows to the longest
    one; ``label_height`` is its minimum), so no label is cut.
    """
    if not rows or not any(rows):
        raise ValueError("no tiles")
    h = max(t.pixels.shape[0] for r in rows for t in r)
    w = max(t.pixels.shape[1] for r in rows for t in r)
    ncols = max(len(r) for r in rows)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [[wrap_label(t.label, w - 2, measure) for t in r] for r in rows]
    most_lines = max((len(lines) for r in wrapped for lines in r), default=0)
    band = max(label_height, most_lines * LABEL_LINE_HEIGHT + 3) if most_lines else 0
    cell_h = h + band
    sheet = Image.new("RGB", (pad + ncols * (w + pad), pad + len(rows) * (cell_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            x, y = pad + j * (w + pad), pad + i * (cell_h + pad)
            sheet.paste(Image.fromarray(tile.pixels), (x, y))
            for k, line in enumerate(wrapped[i][j]):
                draw.text((x + 1, y + h + 1 + k * LABEL_LINE_HEIGHT), line, fill=(0, 0, 0))
    return np.asarray(sheet)
