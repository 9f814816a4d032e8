"""The table of ``gigatok cache list``: every registered file, its preset and what is cached.

Names a person types (presets, releases, aliases) are resolved by :mod:`gigatok_core.registry`
(:func:`~gigatok_core.registry.resolve_targets`, :func:`~gigatok_core.registry.display_name`).
"""

from __future__ import annotations

from typing import Any

from gigatok_core import registry
from gigatok_core.hub import cache
from gigatok_core.hub.fetch import hash_basis
from gigatok_core.registry import WeightsRecord

SIZE_UNKNOWN = "not published with the release, so not in its record; recorded at the first download"
HASH_WORDS = {  # how a file is verified (the --list caption explains them)
    "published": "published",  # the sha256 the Hub publishes for an LFS file
    "pinned": "pinned",  # a full sha256 in presets/weights.yaml
    "prefix": "name prefix",  # the hash prefix in the file name
    "first use": "first use",  # trusted on first use: recorded, re-checked on every later use
}


def _short(src: str) -> str:
    if src.startswith("hf://"):
        return "hub"
    return "drive" if src.startswith("gdrive://") else "https"


def _expected_hash(rec: WeightsRecord) -> str:
    """How the file will be verified before its first download."""
    first = HASH_WORDS[hash_basis(rec, rec.sources[0].startswith("hf://"))]
    if rec.sources[0].startswith("hf://") and len(rec.sources) > 1 and not (rec.sha256 or rec.sha256_prefix):
        return f"{first} (drive: {HASH_WORDS['first use']})"
    return first


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
                "sources": [_short(src) for src in rec.sources],
                "source": _origin(entry.get("origin"))
                if path
                else " → ".join(_short(s) for s in rec.sources),
                "hash": HASH_WORDS.get(entry.get("hash", ""), entry.get("hash"))
                if path and entry.get("hash")
                else _expected_hash(rec),
                "known_source": not rec.unconfirmed,
            }
        )
    return rows


def _origin(origin: str | None) -> str:
    """Where a cached file came from, in a word (hub, drive, https, import, or a local path)."""
    if not origin:
        return "?"
    if origin.startswith(("hf://", "gdrive://", "http://", "https://")):
        return _short(origin)
    return origin.split(":", 1)[0] if origin.startswith("import:") else "local copy"
