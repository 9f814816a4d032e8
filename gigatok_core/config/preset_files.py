"""The preset files (``presets/*.yaml``) as plain data, below every typed config.

:mod:`gigatok_core.config` reads a preset's declared ``config``/``recipe`` mapping from here
(``TokenizerConfig.from_name``), and :mod:`gigatok_core.registry` builds its typed, validated
records from the same data. Keeping the raw read down here keeps the imports a DAG
(config -> preset_files, registry -> config).
"""

from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from gigatok_core.errors import GigatokError


def presets_dir() -> Path:
    """The folder holding the preset YAML files (source checkout, or the copy inside the wheel)."""
    package = Path(__file__).resolve().parents[1]  # gigatok_core/
    for candidate in (package / "_presets", package.parent / "presets"):
        if (candidate / "tokenizers.yaml").is_file():
            return candidate
    raise GigatokError("the preset files are missing from this installation", hint="reinstall gigatok-vision")


@functools.cache
def _read(name: str) -> dict[str, Any]:
    data = OmegaConf.to_container(OmegaConf.load(presets_dir() / name), resolve=True)
    if not isinstance(data, dict):
        raise GigatokError(f"preset file {name} must hold a mapping", hint="reinstall gigatok-vision")
    return data


def load_preset_yaml(name: str) -> dict[str, Any]:
    """One preset file (``tokenizers.yaml``, ``gpt.yaml``, ``weights.yaml``) as a fresh plain dict."""
    return copy.deepcopy(_read(name))


def unknown_name_error(kind: str, name: str, known: list[str]) -> GigatokError:
    """A 'no such preset' error listing the presets and the closest match."""
    folded = {k.lower(): k for k in known}  # `--preset TINY`: the case is the only difference
    close = [folded[name.lower()]] if name.lower() in folded else []
    close = close or [
        folded[c] for c in difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.4)
    ]
    hint = f"did you mean {close[0]!r}? " if close else ""
    return GigatokError(f"unknown {kind} {name!r}", hint=f"{hint}known: {', '.join(known)}")


def declared(kind: str, name: str) -> dict[str, Any]:
    """``{"config": ..., "recipe": ...}`` of tokenizer or GPT preset ``name`` as written in its file."""
    if kind == "tokenizer":
        entries, what = _read("tokenizers.yaml"), "tokenizer preset"
    elif kind == "gpt":
        entries, what = _read("gpt.yaml")["architectures"], "GPT preset"
    else:
        raise ValueError(f"kind must be 'tokenizer' or 'gpt', got {kind!r}")
    if name not in entries:
        raise unknown_name_error(what, name, list(entries))
    rec = entries[name]
    return copy.deepcopy({"config": rec.get("config", {}), "recipe": rec.get("recipe", {})})
