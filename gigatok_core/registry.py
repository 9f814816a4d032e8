"""The preset registry: names -> architecture configs, weight records and paper numbers.

Declared once, as data, in ``presets/*.yaml``:

- ``tokenizers.yaml``: tokenizer presets (config, recipe, weights id, paper rFID/LPIPS)
- ``gpt.yaml``: GPT architectures, the paper pairing, and the released (GPT, tokenizer) checkpoints
- ``weights.yaml``: every downloadable file (sources, hash, size, license)

Everything is validated on load against the dataclasses below and :mod:`gigatok_core.config`.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gigatok_core.config import GPTConfig, GPTRecipe, TokenizerConfig, TokenizerRecipe, build_config
from gigatok_core.config.preset_files import load_preset_yaml, unknown_name_error
from gigatok_core.errors import GigatokError

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsRecord:
    """Where one file lives and how to check it."""

    file: str
    kind: str  # tokenizer | gpt | aux
    sources: tuple[str, ...]
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    license: str | None = None
    description: str = ""
    unconfirmed: bool = False  # no source is known to hold it (only a guess, e.g. the Hub repo)

    def __post_init__(self) -> None:
        assert self.kind in ("tokenizer", "gpt", "aux"), f"{self.file}: bad kind {self.kind!r}"
        assert self.sources, f"{self.file}: no sources"
        for src in self.sources:
            assert src.split("://")[0] in ("gdrive", "hf", "https", "http"), f"{self.file}: bad source {src}"
        assert self.sha256 is None or len(self.sha256) == 64, f"{self.file}: sha256 must be 64 hex digits"


@dataclass(frozen=True)
class TokenizerPreset:
    name: str
    description: str
    config: TokenizerConfig
    recipe: TokenizerRecipe
    weights: str | None = None  # key into weights.yaml
    official_config: str | None = None
    params: int | None = None
    paper: dict[str, float] = field(default_factory=dict)
    declared: dict[str, Any] = field(default_factory=dict)  # config/recipe as written in the YAML

    @property
    def weights_record(self) -> WeightsRecord | None:
        return weights_record(self.weights) if self.weights else None


@dataclass(frozen=True)
class GPTPreset:
    name: str
    description: str
    config: GPTConfig
    recipe: GPTRecipe
    params: int | None = None
    declared: dict[str, Any] = field(default_factory=dict)  # config/recipe as written in the YAML


@dataclass(frozen=True)
class GPTRelease:
    """A released GPT checkpoint and the tokenizer it was trained on."""

    name: str  # "gpt-b@xl-xxl"
    gpt: str
    tokenizer: str
    weights: str
    paper: dict[str, float] = field(default_factory=dict)

    @property
    def weights_record(self) -> WeightsRecord:
        return weights_record(self.weights)


# ---------------------------------------------------------------------------------------------
# Loading (cached; the YAML files are read once per process)
# ---------------------------------------------------------------------------------------------
@functools.cache
def _weights() -> dict[str, WeightsRecord]:
    out = {}
    for key, rec in load_preset_yaml("weights.yaml").items():
        rec = dict(rec)
        rec["sources"] = tuple(rec["sources"])
        out[key] = WeightsRecord(file=rec.pop("file", key), **rec)
    return out


@functools.cache
def _tokenizers() -> dict[str, TokenizerPreset]:
    out = {}
    for name, rec in load_preset_yaml("tokenizers.yaml").items():
        rec = dict(rec)
        declared = {"config": rec.pop("config"), "recipe": rec.pop("recipe", {})}
        out[name] = TokenizerPreset(
            name=name,
            config=build_config(TokenizerConfig, declared["config"]),
            recipe=build_config(TokenizerRecipe, declared["recipe"]),
            declared=declared,
            **rec,
        )
        assert out[name].weights is None or out[name].weights in _weights(), f"{name}: unknown weights"
    return out


@functools.cache
def _gpt() -> tuple[dict[str, GPTPreset], dict[str, GPTRelease], dict[str, str]]:
    data = load_preset_yaml("gpt.yaml")
    archs = {
        name: GPTPreset(
            name=name,
            config=build_config(GPTConfig, rec["config"]),
            recipe=build_config(GPTRecipe, rec.get("recipe", {})),
            declared={"config": rec["config"], "recipe": rec.get("recipe", {})},
            **{k: v for k, v in rec.items() if k not in ("config", "recipe")},
        )
        for name, rec in data["architectures"].items()
    }
    releases = {name: GPTRelease(name=name, **rec) for name, rec in data["releases"].items()}
    for rel in releases.values():
        assert rel.gpt in archs and rel.tokenizer in _tokenizers() and rel.weights in _weights(), rel
    defaults = dict(data["default_tokenizer"])
    return archs, releases, defaults


# ---------------------------------------------------------------------------------------------
# What a registered weights file is, for the header of the safetensors gigatok writes from it
# ---------------------------------------------------------------------------------------------
def weights_meta(key: str) -> dict[str, Any]:
    """The self-describing metadata (:func:`gigatok_core.checkpoints.files.save_weights`) of weights file
    ``key``: kind, preset, architecture dict and, for a GPT, its tokenizer pairing.

    What a loader reads instead of guessing the preset from shapes (``b-l`` and ``b-l-dino`` share
    every shape). An aux file or an unregistered key gives only its kind.
    """
    from gigatok_core.config import config_to_dict

    owner = owner_of(key)
    if owner is not None and owner[0] == "tokenizer":
        return {
            "kind": "tokenizer",
            "preset": owner[1],
            "config": config_to_dict(tokenizer_preset(owner[1]).config),
        }
    if owner is not None:
        rel = gpt_release(owner[1])
        tok = tokenizer_preset(rel.tokenizer)
        return {
            "kind": "gpt",
            "preset": rel.gpt,
            "release": rel.name,
            "config": config_to_dict(gpt_preset(rel.gpt).config),
            "tokenizer": {  # the pairing, as the codes manifest records it
                "preset": rel.tokenizer,
                "checkpoint": None,
                "sha256": tok.weights_record.sha256 if tok.weights_record else None,
                "codebook_size": tok.config.codebook_size,
                "num_tokens": tok.config.num_latent_tokens,
            },
        }
    rec = _weights().get(key)
    return {"kind": rec.kind if rec else None}


# ---------------------------------------------------------------------------------------------
# Public lookups
# ---------------------------------------------------------------------------------------------
def tokenizer_names() -> list[str]:
    return list(_tokenizers())


def gpt_names() -> list[str]:
    return list(_gpt()[0])


def release_names() -> list[str]:
    return list(_gpt()[1])


def weights_names() -> list[str]:
    return list(_weights())


def _find(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``, else the error naming the closest known name."""
    try:
        return table[name]
    except KeyError:
        raise unknown_name_error(what, name, list(table)) from None


def tokenizer_preset(name: str) -> TokenizerPreset:
    return _find(_tokenizers(), name, "tokenizer preset")


def gpt_preset(name: str) -> GPTPreset:
    return _find(_gpt()[0], name, "GPT preset")


def weights_record(name: str) -> WeightsRecord:
    return _find(_weights(), name, "weights file")


def gpt_release(name: str) -> GPTRelease:
    return _find(_gpt()[1], name, "GPT checkpoint")


# ---------------------------------------------------------------------------------------------
# Names a person types -> weights files, and back (`gigatok download NAME`, `gigatok cache import FILE --preset`)
#   tokenizer presets (``s-s``), GPT releases (``gpt-b@xl-xxl``), bare GPT presets (``gpt-xxl``:
#   its paper pairing), weights file names (``VQ_SS256_e100.pt``) and the aliases below.
# ---------------------------------------------------------------------------------------------
ALIASES: dict[str, str] = {
    "inception": "pt_inception-2015-12-05-6726825d.pth",
    "vgg16": "vgg16-397923af.pth",
    "dinov2-vitb14": "dinov2_vitb14_pretrain.pth",
    "dino-vits16": "dino_deitsmall16_pretrain.pth",
    "adm-ref": "VIRTUAL_imagenet256_labeled.npz",
}


def downloadable_names() -> list[str]:
    """The names worth suggesting for a download (weights file names are accepted too, not listed)."""
    released_gpts = {gpt_release(r).gpt for r in release_names()}
    return [
        *(n for n in tokenizer_names() if tokenizer_preset(n).weights),
        *release_names(),
        *(n for n in gpt_names() if n in released_gpts),
        *ALIASES,
    ]


def owner_of(key: str) -> tuple[str, str] | None:
    """The preset a weights file belongs to: ("tokenizer", "s-s"), ("gpt", "gpt-b@s-s") or None."""
    for name in tokenizer_names():
        if tokenizer_preset(name).weights == key:
            return "tokenizer", name
    for name in release_names():
        if gpt_release(name).weights == key:
            return "gpt", name
    return None


def display_name(key: str) -> str:
    """What a person calls weights file ``key``: its preset, its alias, or the file name."""
    owner = owner_of(key)
    if owner:
        return owner[1]
    return next((alias for alias, k in ALIASES.items() if k == key), key)


def weights_for(name: str, *, with_tokenizer: bool = True) -> list[str]:
    """Weights keys for one name (a GPT also brings its tokenizer when ``with_tokenizer``)."""
    if name in ALIASES:
        return [ALIASES[name]]
    if name in _weights():
        return [name]
    if name in _tokenizers():
        weights = tokenizer_preset(name).weights
        if weights is None:
            raise GigatokError(
                f"tokenizer preset {name!r} has no released weights",
                hint="train it with `gigatok train`, or pick one listed by `gigatok cache list`",
            )
        return [weights]
    if name in release_names() or name in gpt_names():
        rel = gpt_release(name) if name in release_names() else resolve_pair(name, None)[1]
        if rel is None:
            raise GigatokError(
                f"GPT preset {name!r} has no released weights",
                hint="see `gigatok cache list` for the released (GPT, tokenizer) pairs",
            )
        return [rel.weights, *(weights_for(rel.tokenizer) if with_tokenizer else [])]
    err = unknown_name_error("preset or weights name", name, downloadable_names())
    close = difflib.get_close_matches(name, weights_names(), n=1, cutoff=0.8)
    if close and err.hint and not err.hint.startswith("did you mean"):
        err.hint = f"did you mean {close[0]!r}? {err.hint}"
    raise err


def resolve_targets(names: list[str], *, with_tokenizer: bool = True) -> list[str]:
    """Weights keys for several names, in order, without duplicates."""
    out: list[str] = []
    for name in names:
        out += [k for k in weights_for(name, with_tokenizer=with_tokenizer) if k not in out]
    return out


def import_target(name: str) -> str:
    """The one weights key that ``gigatok cache import FILE --preset name`` fills."""
    return weights_for(name, with_tokenizer=False)[0]


# ---------------------------------------------------------------------------------------------
# GPT <-> tokenizer pairing
# ---------------------------------------------------------------------------------------------


def default_tokenizer_for(gpt: str) -> str:
    """The paper pairing for a GPT preset (``gpt-xxl`` -> ``xl-xxl``)."""
    gpt_preset(gpt)
    defaults = _gpt()[2]
    if gpt not in defaults:
        raise GigatokError(
            f"{gpt} has no released checkpoint, so there is no default tokenizer",
            hint="pass --tokenizer and --gpt-checkpoint",
        )
    return defaults[gpt]


def resolve_pair(gpt: str, tokenizer: str | None) -> tuple[str, GPTRelease | None]:
    """Resolve ``(gpt, tokenizer)``: pick the paper pairing when ``tokenizer`` is None and find the
    release. Returns (tokenizer name, release or None when the pair has no released weights)."""
    gpt_preset(gpt)
    tok = tokenizer if tokenizer is not None else default_tokenizer_for(gpt)
    tokenizer_preset(tok)
    for rel in _gpt()[1].values():
        if rel.gpt == gpt and rel.tokenizer == tok:
            return tok, rel
    return tok, None
