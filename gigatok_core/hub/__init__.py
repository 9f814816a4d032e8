"""The weights hub: registry names -> verified local files (download, cache, import, verify).

    from gigatok_core.hub import fetch_weights
    path = fetch_weights("VQ_SS256_e100.pt")   # .../weights/VQ_SS256_e100.safetensors

Modules: ``cache`` (layout, manifest, hashing), ``transfer`` (HTTP with resume), ``gdrive``
(Drive confirmation and error pages), ``sources`` (source URLs, Hugging Face / torch hub caches),
``structure`` (keys/shapes check, safetensors conversion), ``catalog`` (names and aliases),
``fetch`` (the orchestration).
"""

from gigatok_core.hub.cache import cache_dir, offline, stored_path
from gigatok_core.hub.catalog import ALIASES, catalog_rows, display_name, import_target, resolve_targets
from gigatok_core.hub.fetch import (
    VerifyResult,
    cached_path,
    clear_weights,
    fetch_record,
    fetch_weights,
    import_weights,
    verify_cache,
)

__all__ = [
    "ALIASES",
    "VerifyResult",
    "cache_dir",
    "cached_path",
    "catalog_rows",
    "clear_weights",
    "display_name",
    "fetch_record",
    "fetch_weights",
    "import_target",
    "import_weights",
    "offline",
    "resolve_targets",
    "stored_path",
    "verify_cache",
]
