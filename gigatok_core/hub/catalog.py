"""Names a person types -> weights files, and the other way round.

Accepted names: tokenizer presets (``s-s``), GPT releases (``gpt-b@xl-xxl``), bare GPT presets
(``gpt-xxl``: its paper pairing, see :func:`gigatok_core.registry.resolve_pair`), weights file
names (``VQ_SS256_e100.pt``) and the short aliases of the auxiliary files below.
"""

from __future__ import annotations

import difflib
from typing import Any

from gigatok_core import registry
from gigatok_core.errors import GigatokError

ALIASES: dict[str, str] = {
    "inception": "pt_inception-2015-12-05-6726825d.pth",
    "vgg16": "vgg16-397923af.pth",
    "dinov2-vitb14": "dinov2_vitb14_pretrain.pth",
    "dino-vits16": "dino_deitsmall16_pretrain.pth",
    "adm-ref": "VIRTUAL_imagenet256_labeled.npz",
}


def known_names() -> list[str]:
    """The names worth suggesting (weights file names are accepted too, but not listed)."""
    released_gpts = {registry.gpt_release(r).gpt for r in registry.release_names()}
    return [
        *(n for n in registry.tokenizer_names() if registry.tokenizer_preset(n).weights),
        *registry.release_names(),
        *(n for n in registry.gpt_names() if n in released_gpts),
        *ALIASES,
    ]


def owner_of(key: str) -> tuple[str, str] | None:
    """The preset a weights file belongs to: ("tokenizer", "s-s"), ("gpt", "gpt-b@s-s") or None."""
    for name in registry.tokenizer_names():
        if registry.tokenizer_preset(name).weights == key:
            return "tokenizer", name
    for name in registry.release_names():
        if registry.gpt_release(name).weights == key:
            return "gpt", name
    return None


def resolve_name(name: str, *, with_tokenizer: bool = True) -> list[str]:
    """Weights keys for one name (a GPT also brings its tokenizer when ``with_tokenizer``)."""
    if name in ALIASES:
        return [ALIASES[name]]
    if name in registry.weights_names():
        return [name]
    if name in registry.tokenizer_names():
        weights = registry.tokenizer_preset(name).weights
        if weights is None:
            raise GigatokError(
                f"tokenizer preset {name!r} has no released weights",
                hint="train it with `gigatok train`, or pick one listed by `gigatok download --list`",
            )
        return [weights]
    if name in registry.release_names() or name in registry.gpt_names():
        if name in registry.release_names():
            rel = registry.gpt_release(name)
        else:
            _, found = registry.resolve_pair(name, None)
            if found is None:
                raise GigatokError(
                    f"GPT preset {name!r} has no released weights",
                    hint="see `gigatok download --list` for the released (GPT, tokenizer) pairs",
                )
            rel = found
        keys = [rel.weights]
        if with_tokenizer:
            keys += resolve_name(rel.tokenizer)
        return keys
    err = registry.unknown_name_error("preset or weights name", name, known_names())
    close = difflib.get_close_matches(name, registry.weights_names(), n=1, cutoff=0.8)
    if close and err.hint and not err.hint.startswith("did you mean"):
        err.hint = f"did you mean {close[0]!r}? {err.hint}"
    raise err


def resolve_targets(names: list[str], *, with_tokenizer: bool = True) -> list[str]:
    """Weights keys for several names, in order, without duplicates."""
    out: list[str] = []
    for name in names:
        for key in resolve_name(name, with_tokenizer=with_tokenizer):
            if key not in out:
                out.append(key)
    return out


def import_target(name: str) -> str:
    """The one weights key that ``--import FILE --preset name`` fills."""
    return resolve_name(name, with_tokenizer=False)[0]


def display_name(key: str) -> str:
    owner = owner_of(key)
    if owner:
        return owner[1]
    return next((alias for alias, k in ALIASES.items() if k == key), key)


# ---------------------------------------------------------------------------------------------
# The table of `gigatok download --list`
# ---------------------------------------------------------------------------------------------
def catalog_rows() -> list[dict[str, Any]]:
    """One row per downloadable file: preset, kind, parameters, paper metrics, file, license,
    size (bytes, when known), the cached path (None when not cached; no hashing) and ``state``:
    yes, unverified (present but not as recorded: checked on next use), partial <bytes>, or no."""
    from gigatok_core.hub import cache
    from gigatok_core.hub.cache import manifest_entry
    from gigatok_core.hub.fetch import cached_path

    rows = []
    for key in registry.weights_names():
        rec = registry.weights_record(key)
        owner = owner_of(key)
        params, paper = None, {}
        if owner and owner[0] == "tokenizer":
            preset = registry.tokenizer_preset(owner[1])
            params, paper = preset.params, dict(preset.paper)
        elif owner:
            rel = registry.gpt_release(owner[1])
            params, paper = registry.gpt_preset(rel.gpt).params, dict(rel.paper)
        path = cached_path(key)
        entry = manifest_entry(key) or {}
        stored, part = cache.stored_path(rec), cache.part_path(rec)
        if path:
            state = "yes"
        elif stored.is_file():
            state = "unverified"  # changed since recorded, or put there by hand: checked on next use
        elif part.is_file():
            state = f"partial {part.stat().st_size}"  # bytes so far; the next download resumes
        else:
            state = "no"
        rows.append(
            {
                "preset": display_name(key),
                "kind": rec.kind,
                "params": params,
                "paper": paper,
                "size": entry.get("size") or rec.size,
                "cached": str(path) if path else None,
                "state": state,
                "file": key,
                "license": rec.license,
                "description": rec.description,
            }
        )
    return rows
