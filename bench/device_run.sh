#!/usr/bin/env bash
# Run ON THE GPU MACHINE (no network), from the carried working tree:
#
#     bash bench/device_run.sh            # the GPU suite, at most ~6.5 minutes in all
#     bash bench/device_run.sh --smoke    # the same on CPU with the tiny presets (a rehearsal)
#     bash bench/device_run.sh --check    # install + preflight + versions only
#
# 1. installs the carried wheels (.whl/, from bench/device_prepare.sh) offline into .device-deps/;
# 2. puts the repository root and that folder on PYTHONPATH;
# 3. a 5-second import preflight that names any missing module (and stops: nothing to measure);
# 4. prints the versions (Python, torch, CUDA, the device);
# 5. runs bench/gpu_suite.py under a global timeout (SUITE_TIMEOUT_S, default 390 s; the suite's
#    own budget ends 30 s earlier; --smoke: 1500 s), writing gpu_suite.json and device_run.log into $OUT when it is
#    set (else outputs/device_run/). The JSON is rewritten after every row: a kill loses nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=gpu
case "${1:-}" in
  --smoke) MODE=smoke ;;
  --check) MODE=check ;;
  "") ;;
  *) echo "usage: bash bench/device_run.sh [--smoke|--check]" >&2; exit 2 ;;
esac
PY=${PYTHON:-$(command -v python3 || command -v python)}
OUTDIR=${OUT:-$ROOT/outputs/device_run}
mkdir -p "$OUTDIR"
exec > >(tee -a "$OUTDIR/device_run.log") 2>&1
# on the GPU: 390 s; the CPU rehearsal is slower (every case on a few shared cores): 25 minutes
if [ "$MODE" = gpu ]; then SUITE_TIMEOUT_S=${SUITE_TIMEOUT_S:-390}; else SUITE_TIMEOUT_S=${SUITE_TIMEOUT_S:-1500}; fi
BUDGET_S=${BUDGET_S:-$((SUITE_TIMEOUT_S - 30))}
TARGET=${DEPS_DIR:-$ROOT/.device-deps}
export PYTHONPATH="$ROOT:$TARGET${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 GIGATOK_OFFLINE=1 PIP_NO_INDEX=1
echo "== device_run ($MODE) $(date -u +%FT%TZ) in $ROOT with $PY"

# 1. the carried wheels, offline
rm -rf "$TARGET"
timeout 120 "$PY" bench/device_wheels.py install --wheels "${WHEEL_DIR:-$ROOT/.whl}" --target "$TARGET" \
  || echo "!! installing the wheels failed (the preflight says what is missing)"

# 3. preflight: 5 seconds
timeout 5 "$PY" bench/device_wheels.py preflight
rc=$?
if [ $rc -eq 124 ]; then
  echo "!! preflight ran past 5 s (a slow file system?): going on, the suite will say what fails"
elif [ $rc -ne 0 ]; then
  echo "!! preflight failed (exit $rc): stopping before the suite"
  exit $rc
fi

# 4. versions
timeout 60 "$PY" - <<'PYEOF' || echo "!! could not import torch"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
          f"{torch.cuda.device_count()} visible")
else:
    print("device: no CUDA device")
PYEOF
[ "$MODE" = check ] && exit 0

# 5. the suite, under a global timeout well inside the 10-minute command limit
ARGS=(--json "$OUTDIR/gpu_suite.json" --budget-s "$BUDGET_S")
[ "$MODE" = smoke ] && ARGS+=(--smoke)
echo "== gpu_suite ${ARGS[*]} (killed at ${SUITE_TIMEOUT_S} s)"
timeout -k 10 "$SUITE_TIMEOUT_S" "$PY" bench/gpu_suite.py "${ARGS[@]}"
rc=$?
[ $rc -eq 124 ] && echo "!! the suite ran past ${SUITE_TIMEOUT_S} s and was stopped; $OUTDIR/gpu_suite.json holds every finished row"
echo "== done (exit $rc): $OUTDIR/gpu_suite.json"
exit $rc
