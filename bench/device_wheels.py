"""Wheels for a bare GPU machine: fetch here what it lacks, install them there without a network.

    python bench/device_wheels.py fetch --dest .whl        # here (bench/device_prepare.sh calls it)
    python bench/device_wheels.py install --wheels .whl --target .device-deps   # there, offline
    python bench/device_wheels.py preflight                # there: names every missing module

The GPU machine (see the README's GPU section) has Python 3.12 with torch, torchvision, triton and
the common packages of :data:`GPU_MACHINE_HAS`, no network, and takes only what travels in the
working tree (64 MiB). ``fetch`` compares the project's dependencies (``pyproject.toml``) with that
list, downloads every missing one as a wheel for CPython 3.12 on manylinux x86_64 (or a pure-python
wheel), follows their own requirements the same way, and builds a pure-python wheel with
``pip wheel`` where PyPI has only a source archive (``antlr4-python3-runtime`` 4.9.x, which
omegaconf 2.3 pins). Wheels already in the folder are kept (a rerun is offline).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.12"
ABI = "cp312"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64")
CARRY_LIMIT = 64 * 2**20  # the device tool carries at most 64 MiB of ignored paths

# What the GPU machine has (distribution names, PEP 503-normalised): the stated packages and the
# requirements they bring with them.
GPU_MACHINE_HAS = frozenset(
    {
        # stated
        "torch",
        "torchvision",
        "triton",
        "numpy",
        "scipy",
        "scikit-image",
        "pillow",
        "timm",
        "safetensors",
        "einops",
        "rich",
        "typer",
        "requests",
        "filelock",
        "huggingface-hub",
        "tensorboard",
        "pyyaml",
        "pytest",
        "pip",
        # brought by the stated ones (torch, huggingface_hub, typer, rich, requests, pytest, ...)
        "tqdm",
        "packaging",
        "typing-extensions",
        "fsspec",
        "jinja2",
        "markupsafe",
        "networkx",
        "sympy",
        "mpmath",
        "setuptools",
        "click",
        "shellingham",
        "pygments",
        "markdown-it-py",
        "mdurl",
        "urllib3",
        "idna",
        "certifi",
        "charset-normalizer",
        "iniconfig",
        "pluggy",
        "protobuf",
        "grpcio",
        "absl-py",
        "markdown",
        "werkzeug",
        "tensorboard-data-server",
        "imageio",
        "tifffile",
        "lazy-loader",
        "hf-xet",
    }
)

# Import names to check on the machine (module -> distribution); the project's own packages too.
MODULES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "scipy": "scipy",
    "skimage": "scikit-image",
    "PIL": "pillow",
    "timm": "timm",
    "safetensors": "safetensors",
    "einops": "einops",
    "rich": "rich",
    "typer": "typer",
    "requests": "requests",
    "filelock": "filelock",
    "huggingface_hub": "huggingface-hub",
    "tensorboard": "tensorboard",
    "yaml": "pyyaml",
    "pytest": "pytest",
    "tqdm": "tqdm",
    "omegaconf": "omegaconf",
    "platformdirs": "platformdirs",
    "lpips": "lpips",
    "gigatok_core": "(this repository)",
    "gigatok_cli": "(this repository)",
}
LIGHT_IMPORTS = ("omegaconf", "platformdirs", "yaml", "einops", "gigatok_core.config")  # torch-free


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement(text: str) -> Any:
    """A parsed PEP 508 requirement (``packaging``, or pip's vendored copy of it)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - pip always vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    return Requirement(text)


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    import tomllib

    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def missing_requirements(requirements: list[str]) -> list[str]:
    """The requirements whose distribution the GPU machine lacks."""
    return [r for r in requirements if normalize(requirement(r).name) not in GPU_MACHINE_HAS]


# ---------------------------------------------------------------------------------------------
# Wheels
# ---------------------------------------------------------------------------------------------
def wheel_name_version(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return normalize(name), version


def wheel_fits(path: Path) -> bool:
    """A wheel the machine can install: pure python (py3-none-any) or CPython 3.12 manylinux x86_64."""
    tags = path.stem.split("-")[-3:]
    python, abi, platform = tags
    if platform == "any" and abi == "none" and any(p.startswith("py3") for p in python.split(".")):
        return True
    return ABI in python.split(".") and abi in (ABI, "abi3") and "x86_64" in platform and "linux" in platform


def wheel_requirements(path: Path) -> list[str]:
    """``Requires-Dist`` of a wheel that apply on the machine (Linux, CPython 3.12, no extras)."""
    with zipfile.ZipFile(path) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
    env = {"python_version": PYTHON_VERSION, "python_full_version": f"{PYTHON_VERSION}.0"}
    env |= {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
    env |= {"implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix"}
    out = []
    for line in meta.get_all("Requires-Dist") or []:
        req = requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out.append(str(req))
    return out


def _have(dest: Path, text: str) -> Path | None:
    req = requirement(text)
    for whl in sorted(dest.glob("*.whl")):
        name, version = wheel_name_version(whl)
        if name == normalize(req.name) and req.specifier.contains(version, prereleases=True):
            return whl
    return None


def _pip(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args]
    print("  $ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True)


def fetch_one(req: str, dest: Path) -> Path:
    """The wheel for requirement ``req`` in ``dest``: kept, downloaded, or built from the sdist."""
    have = _have(dest, req)
    if have is not None:
        print(f"  {req}: kept {have.name}")
        return have
    before = set(dest.glob("*.whl"))
    platform = [a for p in PLATFORMS for a in ("--platform", p)]
    proc = _pip(
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        ABI,
        "--abi",
        "none",
        *platform,
        "--dest",
        str(dest),
        req,
    )
    if proc.returncode != 0:  # no wheel for that Python/platform: build one (pure python only)
        print(f"  {req}: no fitting wheel on the index, building one from the source archive")
        proc = _pip("wheel", "--no-deps", "--wheel-dir", str(dest), req)
        if proc.returncode != 0:
            sys.exit(f"could not fetch or build {req}:\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    new = [p for p in set(dest.glob("*.whl")) - before] or [_have(dest, req)]
    whl = new[0]
    if whl is None or not wheel_fits(whl):
        sys.exit(f"{req}: got {whl}, which Python {PYTHON_VERSION} on Linux x86_64 cannot install")
    print(f"  {req}: {whl.name}")
    return whl


def fetch(dest: Path, requirements: list[str] | None = None) -> list[Path]:
    """Every wheel the machine needs beyond :data:`GPU_MACHINE_HAS`, with their own requirements."""
    dest.mkdir(parents=True, exist_ok=True)
    todo = missing_requirements(requirements if requirements is not None else project_requirements())
    done: dict[str, Path] = {}
    while todo:
        req = todo.pop(0)
        name = normalize(requirement(req).name)
        if name in done:
            continue
        done[name] = fetch_one(req, dest)
        todo += [r for r in missing_requirements(wheel_requirements(done[name])) if r not in todo]
    return sorted(done.values())


# ---------------------------------------------------------------------------------------------
# On the machine: install offline, preflight
# ---------------------------------------------------------------------------------------------
def unpack(wheels: list[Path], target: Path) -> None:
    """Install wheels by unpacking them (what pip does for a pure or platlib-only wheel), for a
    machine whose Python has no pip."""
    target.mkdir(parents=True, exist_ok=True)
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            for member in zf.namelist():
                parts = member.split("/")
                if ".." in parts or member.startswith("/"):
                    continue
                if len(parts) > 2 and parts[0].endswith(".data") and parts[1] in ("purelib", "platlib"):
                    out = target.joinpath(*parts[2:])  # WHEEL.data/purelib/x -> x
                elif parts[0].endswith(".data"):
                    continue  # scripts, headers: not needed to import
                else:
                    out = target / member
                if member.endswith("/"):
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(zf.read(member))


def install(wheel_dir: Path, target: Path) -> int:
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        print(
            f"no wheels in {wheel_dir}: nothing to install (run bench/device_prepare.sh where PyPI is reachable)"
        )
        return 0
    use_pip = importlib.util.find_spec("pip") is not None
    print(f"installing {len(wheels)} wheels into {target} ({'pip, offline' if use_pip else 'unpacked'})")
    if use_pip:
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile"]
        cmd += ["--disable-pip-version-check", "--quiet", "--target", str(target), *map(str, wheels)]
        proc = subprocess.run(cmd)
        if proc.returncode == 0:
            return 0
        print("pip failed: unpacking the wheels instead")
    unpack(wheels, target)
    return 0


def preflight() -> int:
    """Find every module (no import of torch: instant), import the light ones; name what is missing."""
    t0 = time.perf_counter()
    missing = [f"{m} ({d})" for m, d in MODULES.items() if importlib.util.find_spec(m) is None]
    for module in LIGHT_IMPORTS:
        if module.split(".")[0] in {m.split(" ")[0] for m in missing}:
            continue
        try:
            importlib.import_module(module)
        except ImportError as err:
            missing.append(f"{err.name or module} (needed by {module})")
    if missing:
        print("preflight: MISSING " + ", ".join(missing))
        print(
            "  carry .whl from bench/device_prepare.sh, or add the package to GPU_MACHINE_HAS only if it is there"
        )
        return 3
    print(f"preflight: every module found ({len(MODULES)} checked, {time.perf_counter() - t0:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download/build the wheels the GPU machine lacks (needs PyPI)")
    f.add_argument("--dest", type=Path, default=ROOT / ".whl")
    i = sub.add_parser("install", help="install carried wheels offline into a target folder")
    i.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    i.add_argument("--target", type=Path, required=True)
    sub.add_parser("preflight", help="name every module the suite needs that is missing")
    args = ap.parse_args(argv)
    if args.cmd == "fetch":
        print(
            f"the GPU machine lacks: {', '.join(missing_requirements(project_requirements())) or 'nothing'}"
        )
        wheels = fetch(args.dest)
        size = sum(p.stat().st_size for p in args.dest.glob("*.whl"))
        print(f"{len(wheels)} wheels in {args.dest} ({size / 2**20:.1f} MiB)")
        if size > CARRY_LIMIT:
            sys.exit(f"{size / 2**20:.0f} MiB is over the 64 MiB the device tool carries")
        return 0
    if args.cmd == "install":
        return install(args.wheels, args.target)
    return preflight()


if __name__ == "__main__":
    sys.exit(main())
