#!/usr/bin/env bash
# Run HERE, where PyPI is reachable, before a GPU rental:
#
#     bash bench/device_prepare.sh
#
# Fetches, as wheels for the GPU machine's Python (CPython 3.12, manylinux x86_64, or pure python),
# every dependency of the project that machine lacks (bench/device_wheels.py: GPU_MACHINE_HAS) into
# .whl/ (git-ignored; WHEEL_DIR overrides), then prints what to carry and the one command to run.
# PYTHON picks the interpreter that runs pip (default: python3, else python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3 || command -v python)}
DEST=${WHEEL_DIR:-.whl}

"$PY" bench/device_wheels.py fetch --dest "$DEST"

cat <<MSG

Ready. On the GPU machine (the device tool's run):
  carry:     ["$DEST"]          (git-ignored; the tracked and untracked files travel anyway)
  command:   bash bench/device_run.sh
  timeout_s: 420                (the suite stops itself by 390 s; this leaves room for one rerun)
The table streams to stdout; \$OUT/gpu_suite.json holds every finished row even if the run is killed.
Rehearse it here first (CPU, tiny presets): bash bench/device_run.sh --smoke
MSG
