"""The registry's weights with their structural check: what the loaders and ``gigatok download`` use.

The hub (:mod:`gigatok_core.hub`) is storage and knows nothing of models: it takes the check of a
tokenizer or GPT checkpoint as its ``shapes=`` hook. This module, above the model classes and the
hub, maps a registry name to the keys and shapes its preset builds (on the meta device: no memory,
no init) and passes that in, as timm checks each registry entry against its architecture::

    from gigatok_core.weights import fetch_weights
    path = fetch_weights("VQ_SS256_e100.pt")   # verified, structure-checked, safetensors

It imports the model *classes* (not their loaders), so ``tokenizer/load.py`` and ``ar/load.py``
can import it without a circle.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gigatok_core import hub, registry
from gigatok_core.config import GPTConfig, TokenizerConfig
from gigatok_core.registry import WeightsRecord

Shapes = Mapping[str, tuple[int, ...]]


# ---------------------------------------------------------------------------------------------
# Expected shapes (models built on the meta device)
# ---------------------------------------------------------------------------------------------
def tokenizer_shapes(cfg: TokenizerConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official-layout tokenizer for ``cfg``, distillation head included
    (official checkpoints carry it; the loaders drop it, docs/tokenizer.md#checkpoints)."""
    import torch

    from gigatok_core.tokenizer.model import VQTokenizer

    with torch.device("meta"):
        model = VQTokenizer(cfg, with_distill=True)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def gpt_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official-layout GPT for ``cfg`` (docs/ar.md#checkpoints)."""
    import torch

    from gigatok_core.ar.gpt import GPT

    with torch.device("meta"):
        model = GPT(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def expected_shapes(rec: WeightsRecord) -> Shapes | None:
    """What the preset owning ``rec`` expects, or None (an aux file or an unregistered one)."""
    owner = registry.owner_of(rec.file)
    if owner is None or rec.kind == "aux":
        return None
    kind, name = owner
    if kind == "tokenizer":
        return tokenizer_shapes(registry.tokenizer_preset(name).config)
    return gpt_shapes(registry.gpt_preset(registry.gpt_release(name).gpt).config)


# ---------------------------------------------------------------------------------------------
# The hub with the check passed in
# ---------------------------------------------------------------------------------------------
def fetch_weights(name: str, *, progress: bool = True, or_option: str | None = None) -> Path:
    """:func:`gigatok_core.hub.fetch_weights` with the structural check of ``name``'s preset."""
    return hub.fetch_weights(name, progress=progress, shapes=expected_shapes, or_option=or_option)


def import_weights(path: str | Path, preset: str) -> Path:
    """:func:`gigatok_core.hub.import_weights` with the structural check of ``preset``."""
    return hub.import_weights(path, preset, shapes=expected_shapes)


# ---------------------------------------------------------------------------------------------
# The one resolver of weights options
# ---------------------------------------------------------------------------------------------
def local_weights(ref: str | Path, what: str = "checkpoint") -> Path:
    """A weights reference made local: a path as given; a Hugging Face Hub id
    (``hf://OWNER/REPO[@REV]``, also as a Path mangles it, ``hf:/OWNER/REPO``) downloaded and
    verified by :func:`gigatok_core.hub.resolve_hub_ref` into the cache, its local file or folder.

    The hub branch is the only one that needs the network; everything after it reads local files.
    """
    from gigatok_core.config.source import is_hub_ref

    if not is_hub_ref(ref):
        return Path(ref)
    text = "hf://" + str(ref).split(":/", 1)[1].lstrip("/")
    return Path(hub.resolve_hub_ref(text))


def resolve_weights(ref: str | Path, what: str = "checkpoint", *, kind: str | None = None) -> Path:
    """The weights file behind any weights option (``--checkpoint``, ``--tokenizer-checkpoint``,
    ``--gpt-checkpoint``, ``--init``), so each takes the same things: a file; a folder (its newest
    exported ``*.safetensors`` of ``kind``, else the EMA, else model, weights of its newest training
    checkpoint: a run, ``checkpoints/`` or step folder); a hub id (:func:`local_weights`, then as
    a path). See :func:`gigatok_core.config.source.weights_file` for the local half."""
    from gigatok_core.config.source import weights_file

    return weights_file(local_weights(ref, what), what, kind=kind)
