"""Weights cache (placeholder until the download issue lands: finds files, never downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from gigatok_core.errors import GigatokError
from gigatok_core.registry import weights_record


def cache_dir() -> Path:
    """The cache folder: ``$GIGATOK_CACHE`` or the platform's user cache dir."""
    return Path(os.environ.get("GIGATOK_CACHE") or platformdirs.user_cache_dir("gigatok"))


def fetch_weights(name: str, *, progress: bool = True) -> Path:
    """Local path of the verified file registered as ``name`` in presets/weights.yaml."""
    rec = weights_record(name)
    path = cache_dir() / "weights" / rec.file
    if not path.is_file():
        raise GigatokError(f"{rec.file} is not in the cache ({path})",
                           hint=f"download it from {rec.sources[0]} and put it at {path}, or pass --checkpoint FILE")
    return path
