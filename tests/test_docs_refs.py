"""References the code gives to its reasons point inside the repository and resolve.

Comments and docstrings explain a choice by the paper, the official code's file and function, or a
page of ``docs/`` (``docs/recipes.md#gpt``); a page or heading that moves must not leave them dangling,
and no reference to a document outside the repository may come back.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REF = re.compile(r"docs/([\w/-]+\.md)((?:#[\w-]+)(?:, #[\w-]+)*)?")
SECTION = "\u00a7"  # the section sign, spelled out so that this file does not match its own pattern
OUTSIDE = re.compile(
    rf"spec (ar|tokenizer) ?{SECTION}|spec {SECTION}|\.\./shared|shared/(spec|fixtures)|GIGATOK_{'SHARED'}"
)


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False).stdout
    names = out.split() or [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
    skip = ("tests/fixtures/", "site/")
    return [REPO / n for n in names if not n.startswith(skip) and (REPO / n).is_file()]


def _text_files() -> list[Path]:
    return [
        p for p in _tracked() if p.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".fish", ".bash", ""}
    ]


def _slug(heading: str) -> str:
    """mkdocs' default heading id (toc's slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"(?m)^#{1,6} (.+)$", text)}


def test_no_reference_to_a_document_outside_the_repository() -> None:
    hits = []
    for path in _text_files():
        if path.name == Path(__file__).name:
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)


def test_every_docs_reference_in_the_code_resolves() -> None:
    refs = 0
    broken = []
    for path in _text_files():
        if path.parts[len(REPO.parts)] == "docs":
            continue  # pages link with relative paths, which mkdocs build --strict checks
        for m in REF.finditer(path.read_text(errors="replace")):
            refs += 1
            page = REPO / "docs" / m.group(1)
            if not page.is_file():
                broken.append(f"{path.relative_to(REPO)}: {m.group(0)} (no such page)")
                continue
            for anchor in re.findall(r"#([\w-]+)", m.group(2) or ""):
                if anchor not in _anchors(page):
                    broken.append(f"{path.relative_to(REPO)}: {m.group(0)} (no heading #{anchor})")
    assert refs > 50
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(
    "heading,slug",
    [("The AR model and sampling", "the-ar-model-and-sampling"), ("ADM's evaluator", "adms-evaluator")],
)
def test_slug(heading: str, slug: str) -> None:
    assert _slug(heading) == slug
