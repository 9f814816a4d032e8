"""ImageNet-1k class names and parsing of user class lists ("22", "giant panda", "bald eagle").

The 1000 names are torchvision's (the standard ordering of ImageNet class indices).
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Iterable

from gigatok_core.errors import GigatokError

NUM_CLASSES = 1000
log = logging.getLogger("gigatok")


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
    if isinstance(item, int) or str(item).strip().lstrip("-").isdecimal():
        idx = int(item)
        if not 0 <= idx < NUM_CLASSES:
            raise GigatokError(
                f"class index {idx} is outside 0-{NUM_CLASSES - 1}",
                hint="ImageNet classes are numbered 0-999 (e.g. 388 = giant panda)",
            )
        return idx
    text = " ".join(str(item).split())
    names = class_names()
    lowered = [n.lower() for n in names]
    exact = [i for i, n in enumerate(names) if n == text]
    matches = exact or [i for i, n in enumerate(lowered) if n == text.lower()]
    if len(matches) > 1:
        options = ", ".join(f"{i} ({names[i]})" for i in matches)
        raise GigatokError(f"class name {text!r} is ambiguous", hint=f"use an index: {options}")
    # whole-word occurrences in other names: "crane" is 517 (the machine) but also "crane bird" (134)
    word = re.compile(rf"\b{re.escape(text.lower())}\b")
    containing = [i for i, n in enumerate(lowered) if word.search(n) and i not in matches]
    if len(matches) == 1:
        if containing:
            others = ", ".join(f"{i} ({names[i]})" for i in containing[:5])
            log.info("class %r is %d (%s); also see %s", text, matches[0], names[matches[0]], others)
        return matches[0]
    substring = [i for i, n in enumerate(lowered) if text.lower() in n]
    close = substring + [
        lowered.index(c)
        for c in difflib.get_close_matches(text.lower(), lowered, n=5, cutoff=0.5)
        if lowered.index(c) not in substring
    ]
    hint = (
        "closest matches: " + ", ".join(f"{i} ({names[i]})" for i in close[:6])
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
    ids = [resolve_class(s) for s in items]
    unique = list(dict.fromkeys(ids))
    if len(unique) < len(ids):
        log.info("classes listed twice are sampled once: %s", ", ".join(map(str, unique)))
    return unique
