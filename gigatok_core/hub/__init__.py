"""The weights hub: registry names -> verified local files (download, cache, import, verify).

The hub is storage: it knows nothing of models. The structural check of a model checkpoint is
passed in (``shapes=``); :mod:`gigatok_core.weights` passes the presets' check::

    from gigatok_core.weights import fetch_weights
    path = fetch_weights("VQ_SS256_e100.pt")   # .../weights/VQ_SS256_e100.safetensors

Modules: ``cache`` (layout, manifest, look-ups), ``lock`` (an inter-process lock that leaves no
file), ``hf`` (the Hugging Face Hub through ``huggingface_hub``: registry sources and the ``hf://``
references every weights option takes, :func:`resolve_hub_ref`), ``transfer`` (HTTP with resume, for
Drive and HTTPS sources), ``gdrive`` (Drive confirmation and error pages),
``sources`` (source URLs, torch hub's cache), ``structure`` (keys/shapes check,
safetensors conversion), ``fetch`` (the orchestration), ``manage`` (import, verify, clear),
``catalog`` (the ``gigatok cache list`` table). Importing it does not import torch.

Layer: above :mod:`gigatok_core.registry` and ``config``, below the model packages (``ar``,
``tokenizer``) and :mod:`gigatok_core.weights`; the import contract keeps model code out.
"""

from gigatok_core.hub.cache import cache_dir, cached_path, offline, stored_path
from gigatok_core.hub.catalog import catalog_rows
from gigatok_core.hub.fetch import fetch_record, fetch_weights
from gigatok_core.hub.hf import parse_hub_ref, resolve_hub_ref
from gigatok_core.hub.manage import VerifyResult, cached_files, clear_weights, import_weights, verify_cache

__all__ = [
    "VerifyResult",
    "cache_dir",
    "cached_files",
    "cached_path",
    "catalog_rows",
    "clear_weights",
    "fetch_record",
    "fetch_weights",
    "import_weights",
    "offline",
    "parse_hub_ref",
    "resolve_hub_ref",
    "stored_path",
    "verify_cache",
]
