"""ImageNet-1k class names and parsing of user class lists ("22", "giant panda", "bald eagle").

The 1000 names are torchvision's (the standard ordering of ImageNet class indices).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable

from gigatok_core.errors import GigatokError

NUM_CLASSES = 1000


@functools.cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, index = class id."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    assert len(_IMAGENET_CATEGORIES) == NUM_CLASSES
    return tuple(_IMAGENET_CATEGORIES)


def class_name(idx: int) -> str:
    return class_names()[idx]


def slug(idx: int) -> str:
    """File-name friendly name: ``388`` -> ``giant-panda``."""
    return re.sub(r"[^a-z0-9]+", "-", class_name(idx).lower()).strip("-")


def resolve_class(item: str | int) -> int:
    """An index 0-999 or a case-insensitive class name -> class index."""
    if isinstance(item, int) or str(item).strip().lstrip("-").isdigit():
        idx = int(item)
        if not 0 <= idx < NUM_CLASSES:
            raise GigatokError(
                f"class index {idx} is outside 0-{NUM_CLASSES - 1}",
                hint="ImageNet classes are numbered 0-999 (e.g. 388 = giant panda)",
            )
        return idx
    text = " ".join(str(item).split())
    names = class_names()
    exact = [i for i, n in enumerate(names) if n == text]
    if len(exact) == 1:
        return exact[0]
    matches = [i for i, n in enumerate(names) if n.lower() == text.lower()]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        options = ", ".join(f"{i} ({names[i]})" for i in matches)
        raise GigatokError(f"class name {text!r} is ambiguous", hint=f"use an index: {options}")
    lowered = [n.lower() for n in names]
    close = difflib.get_close_matches(text.lower(), lowered, n=5, cutoff=0.5)
    close += [n for n in lowered if text.lower() in n and n not in close][: 5 - len(close)]
    hint = (
        "closest matches: " + ", ".join(f"{lowered.index(c)} ({names[lowered.index(c)]})" for c in close)
        if close
        else "use an index 0-999 or an ImageNet class name such as 'giant panda'"
    )
    raise GigatokError(f"unknown ImageNet class {text!r}", hint=hint)


def parse_classes(spec: str | Iterable[str | int]) -> list[int]:
    """``"22,388"`` / ``"giant panda, bald eagle"`` / a list of items -> class indices (order kept)."""
    items = [s for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    items = [s.strip() if isinstance(s, str) else s for s in items]
    items = [s for s in items if s != ""]
    if not items:
        raise GigatokError(
            "no classes given", hint="e.g. --classes 22,388 or --classes 'giant panda,bald eagle'"
        )
    return [resolve_class(s) for s in items]
