"""ImageNet-1k class names and parsing of user class lists ("22", "giant panda", "bald eagle").

The 1000 names are torchvision's (the standard ordering of ImageNet class indices).
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Iterable, Sequence

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


def slugify(name: str) -> str:
    """File-name friendly: ``"Giant panda"`` -> ``giant-panda`` (``class`` when nothing is left)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "class"


def slug(idx: int) -> str:
    """File-name friendly ImageNet name: ``388`` -> ``giant-panda``."""
    return slugify(class_name(idx))


def resolve_own_class(item: str | int, names: Sequence[str]) -> int:
    """An index or a (case-insensitive) name among a run's own classes ``names`` -> index."""
    listed = ", ".join(f"{i} ({n})" for i, n in enumerate(names[:10])) + (" ..." if len(names) > 10 else "")
    if isinstance(item, int) or str(item).strip().lstrip("-").isdecimal():
        idx = int(item)
        if not 0 <= idx < len(names):
            raise GigatokError(
                f"class index {idx} is outside this GPT's {len(names)} classes (0-{len(names) - 1})",
                hint=f"its classes: {listed}",
            )
        return idx
    text = " ".join(str(item).split())
    exact = [i for i, n in enumerate(names) if n == text]
    matches = exact or [i for i, n in enumerate(names) if n.lower() == text.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        options = ", ".join(f"{i} ({names[i]})" for i in matches)
        raise GigatokError(f"class name {text!r} is ambiguous", hint=f"use an index: {options}")
    close = difflib.get_close_matches(text, list(names), n=5, cutoff=0.5)
    hint = "closest: " + ", ".join(close) if close else f"its classes: {listed}"
    raise GigatokError(f"this GPT has no class {text!r}", hint=hint)


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


def parse_classes(spec: str | Iterable[str | int], names: Sequence[str] | None = None) -> list[int]:
    """``"22,388"`` / ``"giant panda, bald eagle"`` / a list of items -> class indices (order kept).

    ``names``: a GPT's own class names (trained on one's own class folders); default ImageNet's."""
    items = [s for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    items = [s.strip() if isinstance(s, str) else s for s in items]
    items = [s for s in items if s != ""]
    if not items:
        raise GigatokError(
            "no classes given", hint="e.g. --classes 22,388 or --classes 'giant panda,bald eagle'"
        )
    ids = [resolve_class(s) if names is None else resolve_own_class(s, names) for s in items]
    unique = list(dict.fromkeys(ids))
    repeated = [c for c in unique if ids.count(c) > 1]
    if repeated:
        log.info("classes listed more than once are sampled once: %s", ", ".join(map(str, repeated)))
    return unique
