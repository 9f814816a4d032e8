"""The table of ``gigatok download --list``: every registered file, its preset and what is cached.

Names a person types (presets, releases, aliases) are resolved by :mod:`gigatok_core.registry`
(:func:`~gigatok_core.registry.resolve_targets`, :func:`~gigatok_core.registry.display_name`).
"""

from __future__ import annotations

from typing import Any

from gigatok_core import registry
from gigatok_core.hub import cache

SIZE_UNKNOWN = "not published with the release, so not in its record; recorded at the first download"


def catalog_rows() -> list[dict[str, Any]]:
    """One row per downloadable file: preset, kind, parameters, paper metrics, file, license,
    ``size`` (bytes: pinned in the record, or recorded when the file entered this cache; None when
    neither, with the reason in ``size_note``), the cached path (None when not cached; no hashing)
    and ``state``: yes, unverified (present but not as recorded: checked on next use),
    partial <bytes>, or no."""
    rows = []
    for key in registry.weights_names():
        rec = registry.weights_record(key)
        owner = registry.owner_of(key)
        params, paper = None, {}
        if owner and owner[0] == "tokenizer":
            preset = registry.tokenizer_preset(owner[1])
            params, paper = preset.params, dict(preset.paper)
        elif owner:
            rel = registry.gpt_release(owner[1])
            params, paper = registry.gpt_preset(rel.gpt).params, dict(rel.paper)
        path = cache.cached_path(key)
        entry = cache.manifest_entry(key) or {}
        size = rec.size or entry.get("size")
        rows.append(
            {
                "preset": registry.display_name(key),
                "kind": rec.kind,
                "params": params,
                "paper": paper,
                "size": size,
                "size_note": None if size else SIZE_UNKNOWN,
                "cached": str(path) if path else None,
                "state": cache.cache_state(rec, key),
                "file": key,
                "license": rec.license,
                "description": rec.description,
            }
        )
    return rows
