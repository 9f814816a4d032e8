"""Shared test fixtures: the golden files, an isolated cache, deterministic torch.

Every golden file is read through :func:`fixture_path`: from ``tests/fixtures/`` (recorded from the
official code; docs/contributing.md says what each holds and which test reads it), or from the folder
named by ``GIGATOK_FIXTURES`` (same file names), e.g. to check other recordings of the official code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
FIXTURES_ENV = "GIGATOK_FIXTURES"


def fixtures_dir() -> Path:
    """The folder golden files are read from: ``$GIGATOK_FIXTURES`` if set, else ``tests/fixtures``."""
    override = os.environ.get(FIXTURES_ENV)
    return Path(override).expanduser() if override else FIXTURES


def fixture_path(name: str) -> Path:
    """The golden file ``name`` (the one place tests find recorded outputs of the official code)."""
    folder = fixtures_dir()
    path = folder / name
    if not path.is_file():
        where = f"{FIXTURES_ENV}={folder}" if os.environ.get(FIXTURES_ENV) else "the repository"
        pytest.fail(
            f"golden fixture {name!r} is missing from {folder} ({where}): restore tests/fixtures/ "
            f"from git (git checkout -- tests/fixtures) or point {FIXTURES_ENV} at a folder holding it"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's cache or the network from tests."""
    monkeypatch.setenv("GIGATOK_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("GIGATOK_OFFLINE", "1")
    hf_home = tmp_path_factory.mktemp("hf_home")  # the Hugging Face cache and token, isolated too
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: no internet
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def bump_mtime(path: Path) -> None:
    """Move ``path``'s mtime one second on: a rewrite within the file system's timestamp
    granularity (a clock tick) would otherwise look unchanged to the size + mtime checks."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny decode steps are dispatch-bound: one thread avoids OpenMP stalls on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_torchrun(
    *args: str, nproc: int = 2, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m gigatok_cli.main ARGS`` (gloo on CPU, free port).

    Runs ``torch.distributed.run`` with this interpreter, so it needs nothing beyond torch.
    """
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        full_env.pop(var, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "gigatok_cli.main",
        *args,
    ]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)


# The layers behind markers: ``slow`` and ``gpu`` tests run only when the ``-m`` expression names
# them (``-m slow``, ``-m gpu``), so ``-m "not spawn"`` is the fast layer of the default run rather than
# a selection that would pull the slow and GPU tests back in (a ``-m`` in addopts would be replaced).
OPT_IN_LAYERS = ("slow", "gpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    expr = config.getoption("markexpr") or ""
    kept, dropped = [], []
    for item in items:
        opted_out = any(item.get_closest_marker(m) and m not in expr for m in OPT_IN_LAYERS)
        (dropped if opted_out else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
