"""bench/device_prepare.sh and bench/device_run.sh, rehearsed in a clean environment that has only
what the GPU machine has (the README's GPU section).

The environment: a fresh virtualenv (no pip of its own, no system packages) whose one ``.pth`` line
points at a folder of links to the installed distributions the GPU machine has
(``device_wheels.GPU_MACHINE_HAS`` and what they require): torch and the rest come from this
interpreter without a multi-GB install, and everything else (omegaconf, platformdirs, lpips, this
project's editable install) is absent until the carried wheels are installed. The working tree is
copied as the GPU machine gets it (``git ls-files``: tracked and untracked, not ignored), and nothing
beside it.

The wheel fetch: ``device_prepare.sh`` runs for real, with pip pointed (``PIP_NO_INDEX``,
``PIP_FIND_LINKS``) at a local stand-in index made by repacking the installed distributions as
wheels. That keeps the test offline, deterministic and fast, while every step of the script runs
(the requirement list from pyproject.toml, what the machine lacks, pip download with the machine's
tags, the requirements of what was fetched); the real PyPI fetch is what a developer runs.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import device_wheels as dw  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The clean environment
# ---------------------------------------------------------------------------------------------


def _requires(dist: md.Distribution) -> list[str]:
    out = []
    for line in dist.requires or []:
        req = dw.requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(dw.normalize(req.name))
    return out


def _installed() -> dict[str, md.Distribution]:
    here = sysconfig.get_paths()["purelib"]
    return {dw.normalize(d.metadata["Name"]): d for d in md.distributions(path=[here])}


def _closure(names: set[str], installed: dict[str, md.Distribution]) -> set[str]:
    seen, todo = set(), [n for n in names if n in installed]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [r for r in _requires(installed[name]) if r in installed]
    return seen


def _link_farm(dest: Path, keep: set[str], installed: dict[str, md.Distribution]) -> None:
    """Links to the top-level entries (packages, modules, .libs, dist-info) of the ``keep`` dists."""
    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    for name in keep:
        for f in installed[name].files or []:
            top = f.parts[0]
            if top == ".." or top == "__pycache__" or (dest / top).exists():
                continue
            src = site / top
            if src.exists():
                (dest / top).symlink_to(src)


def _repack(dist: md.Distribution, dest: Path) -> Path:
    """An installed pure-python distribution as a wheel (a local stand-in for PyPI)."""
    name = dw.normalize(dist.metadata["Name"]).replace("-", "_")
    whl = dest / f"{name}-{dist.version}-py3-none-any.whl"
    files = [f for f in dist.files or [] if f.parts[0] != ".." and "__pycache__" not in f.parts]
    assert not any(f.suffix in (".so", ".pyd") for f in files), f"{name} is not pure python"
    with zipfile.ZipFile(whl, "w") as zf:
        for f in files:
            src = Path(f.locate())
            if src.is_file():
                zf.write(src, str(f))
        info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
        if not any(f.name == "WHEEL" for f in files):
            zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    return whl


def _copy_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    return env | {
        "PATH": f"{tmp / 'venv' / 'bin'}:{env['PATH']}",
        "PIP_NO_INDEX": "1",
        "OUT": str(tmp / "out"),
    }


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("device")
    installed = _installed()
    has = _closure(set(dw.GPU_MACHINE_HAS), installed)
    wanted = {dw.normalize(dw.requirement(r).name) for r in dw.project_requirements()}
    lacks = _closure(wanted, installed) - has
    # stand-in index
    (tmp / "index").mkdir()
    for name in lacks:
        _repack(installed[name], tmp / "index")
    # the working tree, then the wheels fetched into it
    (tmp / "repo").mkdir()
    _copy_tree(tmp / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp / "index"), "PYTHON": sys.executable}
    prepare = subprocess.run(
        ["bash", "bench/device_prepare.sh"], cwd=tmp / "repo", env=env, capture_output=True, text=True
    )
    # the clean interpreter: a venv seeing only the GPU machine's distributions
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    site = next((tmp / "venv" / "lib").glob("python*/site-packages"))
    _link_farm(tmp / "machine-site", has, installed)
    (site / "gpu_machine.pth").write_text(f"{tmp / 'machine-site'}\n")
    return {"tmp": tmp, "repo": tmp / "repo", "prepare": prepare, "lacks": lacks, "env": _clean_env(tmp)}


def _run(machine: dict, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "bench/device_run.sh", *args],
        cwd=machine["repo"],
        env=machine["env"] | env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
def test_prepare_fetches_what_the_machine_lacks_and_prints_the_command(machine: dict) -> None:
    prep = machine["prepare"]
    assert prep.returncode == 0, prep.stdout + prep.stderr
    assert {"omegaconf", "lpips", "platformdirs"} <= machine["lacks"]
    wheels = sorted((machine["repo"] / ".whl").glob("*.whl"))
    assert {dw.wheel_name_version(w)[0] for w in wheels} == machine["lacks"]
    assert all(dw.wheel_fits(w) for w in wheels)
    out = prep.stdout
    assert 'carry:     [".whl"]' in out and "command:   bash bench/device_run.sh" in out
    assert "timeout_s: 420" in out
    # a rerun keeps the wheels (offline)
    again = subprocess.run(
        ["bash", "bench/device_prepare.sh"],
        cwd=machine["repo"],
        env={**machine["env"], "PIP_FIND_LINKS": str(machine["tmp"] / "nowhere"), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and again.stdout.count(": kept ") == len(wheels), again.stdout + again.stderr


def test_the_clean_environment_has_only_what_the_machine_has(machine: dict) -> None:
    probe = "import importlib.util as u; print([m for m in ('torch', 'omegaconf', 'lpips', 'gigatok_core') if u.find_spec(m)])"
    out = subprocess.run(["python", "-c", probe], env=machine["env"], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "['torch']", out.stdout + out.stderr


def test_device_run_installs_offline_and_passes_the_preflight(machine: dict) -> None:
    res = _run(machine, "--check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "preflight: every module found" in res.stdout
    assert "torch " in res.stdout and "device: " in res.stdout
    assert (machine["tmp"] / "out" / "device_run.log").read_text().count("preflight") >= 1


def test_preflight_names_the_missing_module_and_stops(machine: dict) -> None:
    empty = machine["tmp"] / "empty"
    empty.mkdir(exist_ok=True)
    res = _run(machine, "--smoke", WHEEL_DIR=str(empty), DEPS_DIR=str(machine["tmp"] / "deps-empty"))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "MISSING omegaconf (omegaconf)" in res.stdout and "lpips (lpips)" in res.stdout
    assert "gpu_suite" not in res.stdout.split("preflight")[-1]  # stopped before the suite


def test_unpack_installs_a_wheel_without_pip(tmp_path: Path, machine: dict) -> None:
    wheels = sorted((machine["repo"] / ".whl").glob("*.whl"))
    dw.unpack(wheels, tmp_path / "t")
    assert (tmp_path / "t" / "omegaconf" / "__init__.py").is_file()
    assert any(p.name.startswith("lpips-") and p.suffix == ".dist-info" for p in (tmp_path / "t").iterdir())


@pytest.mark.slow
def test_smoke_run_in_the_clean_environment_writes_every_case(machine: dict) -> None:
    """The whole rehearsal (~1-4 min on 2 shared cores: every case on CPU), hence slow."""
    res = _run(machine, "--smoke")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = json.loads((machine["tmp"] / "out" / "gpu_suite.json").read_text())
    suite_cases = subprocess.run(
        ["python", "bench/gpu_suite.py", "--list"],
        cwd=machine["repo"],
        env=machine["env"],
        capture_output=True,
        text=True,
    ).stdout
    names = [line.split("\t")[1] for line in suite_cases.splitlines() if line.strip()]
    assert data["finished"] is True and [c["name"] for c in data["cases"]] == names
    for case in data["cases"]:
        assert case["status"] == "done", case
        rows = [r for r in data["rows"] if r["group"] == case["name"]]
        assert rows and not any(r["note"].startswith("failed") for r in rows), (case, rows)


def test_the_readme_gives_the_one_command_and_what_to_carry() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The GPU suite") :]
    section = section[: section.index("\n## ")]
    assert "bash bench/device_prepare.sh" in section and "carry `.whl`" in section
    assert "bash bench/device_run.sh\n" in section and "timeout of 420 s" in section
    script = (ROOT / "bench" / "device_run.sh").read_text()
    suite_timeout = int(script.split("SUITE_TIMEOUT_S=${SUITE_TIMEOUT_S:-")[1].split("}")[0])
    assert suite_timeout + 30 <= 420  # install, preflight and versions fit in the rest
    assert "timeout_s: 420" in (ROOT / "bench" / "device_prepare.sh").read_text()
