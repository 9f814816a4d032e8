"""The committed completion scripts must equal what the current CLI generates, and work."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMPLETIONS = Path(__file__).resolve().parents[1] / "completions"
_spec = importlib.util.spec_from_file_location("generate_completions", COMPLETIONS / "generate.py")
assert _spec is not None and _spec.loader is not None
generate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = generate  # its dataclasses look their module up
_spec.loader.exec_module(generate)
render_all = generate.render_all


def test_completion_scripts_are_up_to_date() -> None:
    for name, text in render_all().items():
        committed = COMPLETIONS / name
        assert committed.is_file(), f"{committed} is missing: run `python completions/generate.py`"
        assert committed.read_text() == text, (
            f"{committed} is stale: run `python completions/generate.py` and commit the result"
        )


def _bash_complete(words: list[str]) -> list[str]:
    script = COMPLETIONS / "gigatok.bash"
    cmd = (
        f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; _gigatok; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


@pytest.mark.spawn
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_options_and_presets() -> None:
    assert "reconstruct" in _bash_complete(["gigatok", "rec"])
    assert "--tokenizer" in _bash_complete(["gigatok", "reconstruct", "--tok"])
    assert _bash_complete(["gigatok", "reconstruct", "--tokenizer", "xl"]) == ["xl-xxl"]
    assert set(_bash_complete(["gigatok", "reconstruct", "--precision", ""])) == {"fp32", "bf16", "fp16"}


@pytest.mark.spawn
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_download_names_from_the_registry() -> None:
    from gigatok_cli.download import complete_names
    from gigatok_core import registry

    assert _bash_complete(["gigatok", "download", "gpt-b@x"]) == ["gpt-b@xl-xxl"]
    assert _bash_complete(["gigatok", "download", "vgg"]) == ["vgg16"]  # an alias
    offered = _bash_complete(["gigatok", "download", ""])
    assert [n for n in offered if not n.startswith("-")] == registry.downloadable_names()
    assert complete_names("") == registry.downloadable_names()  # --install-completion: the same set
    assert _bash_complete(["gigatok", "download", "--al"]) == ["--all"]
    assert _bash_complete(["gigatok", "download", "--li"]) == []  # the old mode flags are hidden
    assert _bash_complete(["gigatok", "cache", "l"]) == ["list"]
    assert _bash_complete(["gigatok", "cache", "clear", "gpt-b@x"]) == ["gpt-b@xl-xxl"]
    assert _bash_complete(["gigatok", "cache", "import", "f.pt", "--preset", "s-s-"]) == ["s-s-2d"]


def test_fish_completes_download_names() -> None:
    from gigatok_core import registry

    fish = (COMPLETIONS / "gigatok.fish").read_text()
    line = f"complete -c gigatok -n '__fish_seen_subcommand_from download' -a '{' '.join(registry.downloadable_names())}'"
    assert line in fish.splitlines()
