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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from gigatok_core.config import GPTConfig, GPTRecipe, TokenizerConfig, TokenizerRecipe, build_config
from gigatok_core.errors import GigatokError


def presets_dir() -> Path:
    """The folder holding the preset YAML files (source checkout, or the copy inside the wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_presets", here.parent / "presets"):
        if (candidate / "tokenizers.yaml").is_file():
            return candidate
    raise GigatokError("the preset files are missing from this installation", hint="reinstall gigatok-vision")


def _load_yaml(name: str) -> dict[str, Any]:
    data = OmegaConf.to_container(OmegaConf.load(presets_dir() / name), resolve=True)
    assert isinstance(data, dict), f"{name} must be a mapping"
    return data


def unknown_name_error(kind: str, name: str, known: list[str]) -> GigatokError:
    """A 'no such preset' error listing the presets and the closest match."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return GigatokError(f"unknown {kind} {name!r}", hint=f"{hint}known: {', '.join(known)}")


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
    for key, rec in _load_yaml("weights.yaml").items():
        rec = dict(rec)
        rec["sources"] = tuple(rec["sources"])
        out[key] = WeightsRecord(file=rec.pop("file", key), **rec)
    return out


@functools.cache
def _tokenizers() -> dict[str, TokenizerPreset]:
    out = {}
    for name, rec in _load_yaml("tokenizers.yaml").items():
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
    data = _load_yaml("gpt.yaml")
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


def tokenizer_preset(name: str) -> TokenizerPreset:
    try:
        return _tokenizers()[name]
    except KeyError:
        raise unknown_name_error("tokenizer preset", name, tokenizer_names()) from None


def gpt_preset(name: str) -> GPTPreset:
    try:
        return _gpt()[0][name]
    except KeyError:
        raise unknown_name_error("GPT preset", name, gpt_names()) from None


def weights_record(name: str) -> WeightsRecord:
    try:
        return _weights()[name]
    except KeyError:
        raise unknown_name_error("weights file", name, weights_names()) from None


def gpt_release(name: str) -> GPTRelease:
    try:
        return _gpt()[1][name]
    except KeyError:
        raise unknown_name_error("GPT checkpoint", name, release_names()) from None


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


def releases_for(gpt: str) -> list[GPTRelease]:
    return [r for r in _gpt()[1].values() if r.gpt == gpt]
