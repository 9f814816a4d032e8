"""The official ``check_codes`` step: decode a few stored codes of each shard into a PNG grid.

One row per shard (at most ``max_rows``, spread evenly over the shards), the first ``per_shard``
images of the shard, crop 0, decoded through the tokenizer (this is the one place of the codes
pipeline that builds the decoder). A glance at the grid shows whether codes, labels and tokenizer
belong together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gigatok_core.data.codes_dir import CHECK_GRID_NAME
from gigatok_core.data.codes_format import CodesManifest


def write_check_grid(
    manifest: CodesManifest,
    tokenizer: str,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    per_shard: int = 4,
    max_rows: int = 16,
) -> Path:
    """Write ``CODES_DIR/check_codes.png`` and return its path."""
    from gigatok_core.data.images import Tile, contact_sheet, save_png, to_uint8
    from gigatok_core.tokenizer import load_tokenizer

    shards = [k for k, s in enumerate(manifest.shards) if s.count]
    if len(shards) > max_rows:
        shards = [shards[i] for i in np.linspace(0, len(shards) - 1, max_rows).round().astype(int)]
    model = load_tokenizer(tokenizer, checkpoint=checkpoint, device=device)
    rows = []
    for k in shards:
        entry = manifest.shards[k]
        codes = np.load(manifest.root / entry.codes, mmap_mode="r")[:per_shard, 0]  # (n, T)
        labels = np.load(manifest.root / entry.labels, mmap_mode="r")[:per_shard]  # (n,)
        with torch.inference_mode():
            images = model.decode_codes(torch.from_numpy(np.asarray(codes, dtype=np.int64)).to(model.device))
        pixels = to_uint8(images)  # (n, S, S, 3)
        names = manifest.classes
        rows.append(
            [
                Tile(p, f"s{k} {names[y] if 0 <= y < len(names) else y}")
                for p, y in zip(pixels, labels.tolist(), strict=True)
            ]
        )
    path = manifest.root / CHECK_GRID_NAME
    save_png(path, contact_sheet(rows))
    return path


def check_grid(
    manifest: CodesManifest, tokenizer: str, checkpoint: str | Path | None, dev: torch.device, per_shard: int
) -> Path:
    from gigatok_core.data.encoder import resolve_tokenizer_checkpoint

    ckpt = resolve_tokenizer_checkpoint(checkpoint) if checkpoint is not None else None
    return write_check_grid(manifest, tokenizer, checkpoint=ckpt, device=dev, per_shard=per_shard)
