"""One override grammar for every config: preset mapping -> YAML file -> ``key=value`` dotlist.

Works for flat configs (:class:`TokenizerConfig`) and nested ones (a training config holding a
model config, a recipe and run settings): ``recipe.lr=1e-3``, ``model.codebook_size=1024``.
Unknown keys are errors that name the closest known key (as torchtune's config parser does); types
are checked by OmegaConf; values are checked by each dataclass's ``__post_init__``. Every override
is checked, also one that a later override of the same key replaces.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gigatok_core.errors import GigatokError

T = TypeVar("T")


def check(cond: bool, msg: str) -> None:
    """Raise ``GigatokError("invalid config: msg")`` unless ``cond`` (for ``__post_init__``)."""
    if not cond:
        raise GigatokError(f"invalid config: {msg}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested_type(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls`` when that field is itself a config."""
    hint = _hints(cls).get(name)
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def check_keys(cls: type, values: Mapping[str, Any], *, where: str, prefix: str = "") -> None:
    """Refuse keys that are not fields of ``cls`` (recursively), naming the closest match."""
    known = [f.name for f in dataclasses.fields(cls)]
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f"did you mean {prefix + close[0]!r}? " if close else ""
            raise GigatokError(
                f"unknown {cls.__name__} setting {full!r} (in {where})",
                hint=f"{hint}known keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(known)}",
            )
        sub = _nested_type(cls, key)
        if sub is not None and isinstance(value, Mapping):
            check_keys(sub, value, where=where, prefix=f"{full}.")


def instantiate(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build ``cls`` from a plain mapping, building nested configs first (inner ``__post_init__`` first)."""
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        sub = _nested_type(cls, key)
        if sub is not None and isinstance(value, Mapping):
            value = instantiate(sub, value)
        elif isinstance(value, list) and typing.get_origin(_hints(cls).get(key)) is tuple:
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _as_mapping(layer: Any, *, where: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(layer) and not isinstance(layer, type):
        return config_to_dict(layer)
    if not isinstance(layer, Mapping):
        raise GigatokError(f"{where} must be a mapping of settings, not {type(layer).__name__}")
    return dict(layer)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file as a plain mapping (a clear error when missing, unreadable or not a mapping)."""
    path = Path(path)
    if path.is_dir():
        raise GigatokError(f"config file {path} is a folder", hint="pass a .yaml file")
    if not path.is_file():
        raise GigatokError(f"config file {path} does not exist", hint="check the --config path")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, ValueError, OSError) as err:  # yaml errors are ValueErrors
        raise GigatokError(f"config file {path} is not valid YAML ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GigatokError(f"config file {path} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def parse_dotlist(items: Sequence[str]) -> dict[str, Any]:
    """``["recipe.lr=1e-3", "run.max_steps=5"]`` -> nested mapping (YAML value syntax)."""
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise GigatokError(f"override {item!r} is not key=value", hint="for example recipe.lr=1e-3")
    try:
        data = OmegaConf.to_container(OmegaConf.from_dotlist(list(items)), resolve=True)
    except OmegaConfBaseException as err:
        raise GigatokError(f"bad override in {list(items)}: {err}") from None
    assert isinstance(data, dict)
    return data


def _key(item: str) -> str:
    return item.split("=", 1)[0].strip()


def check_shadowed(items: Sequence[str], build: Callable[[list[str]], object]) -> None:
    """Validate every ``key=value`` of ``items`` that a later item of the same key replaces (e.g. a
    ``run.max_steps=abc`` before the ``--max-steps`` option's own): ``build`` is called with the
    items minus those later ones, so a bad value is refused even though the merged config would
    not hold it. The error names both items."""
    items = list(items)
    for i, item in enumerate(items):
        later = [it for it in items[i + 1 :] if _key(it) == _key(item)]
        if not later:
            continue
        kept = [*items[: i + 1], *(it for it in items[i + 1 :] if _key(it) != _key(item))]
        try:
            build(kept)
        except GigatokError as err:
            raise GigatokError(
                f"{err.message} (in {item!r}, which {later[-1]!r} replaces)",
                hint=err.hint or "fix or drop that override",
            ) from None


def merge_mappings(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge plain mappings (later wins; nested mappings merge key by key)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge_mappings(out[key], value)
            else:
                out[key] = value
    return out


def build_config(
    cls: type[T],
    base: Mapping[str, Any] | Any | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> T:
    """Merge ``base`` (a preset's mapping or a config), a YAML file and overrides into ``cls``.

    ``overrides`` is a ``key=value`` dotlist (``["recipe.lr=1e-3"]``) or a nested mapping. Later
    layers win; a nested mapping merges into the nested config rather than replacing it.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    if base is not None:
        layers.append(("the preset", _as_mapping(base, where="the preset")))
    if config_file is not None:
        layers.append((f"config file {config_file}", load_yaml(config_file)))
    if overrides:
        if isinstance(overrides, Mapping):
            layers.append(("the overrides", dict(overrides)))
        else:
            check_shadowed(overrides, lambda kept: build_config(cls, base, config_file, kept))
            layers.append(("the overrides", parse_dotlist(overrides)))
    for where, layer in layers:
        check_keys(cls, layer, where=where)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), *(OmegaConf.create(layer) for _, layer in layers))
        values = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        msg = str(getattr(err, "msg", err)).splitlines()[0]
        raise GigatokError(
            f"bad {cls.__name__} setting{f' {key!r}' if key else ''}: {msg}",
            hint="check the value's type (numbers, true/false, [lists])",
        ) from None
    assert isinstance(values, dict)
    # Only the keys the layers set: the schema's defaults come from instances whose __post_init__
    # may have filled derived fields (GPTConfig.dim from its size), which must be derived again.
    return instantiate(cls, _pick(cls, values, merge_mappings(*(layer for _, layer in layers))))


def _pick(cls: type, values: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in given.items():
        sub = _nested_type(cls, key)
        if sub is not None and isinstance(value, Mapping) and isinstance(values.get(key), Mapping):
            out[key] = _pick(sub, values[key], value)
        else:
            out[key] = values[key]
    return out


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON-able dict of a config (nested configs included; tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))
