#!/bin/bash
# One GPU session's measurements, as docs/PERFORMANCE.md ("NVIDIA GPU") records them: probe the
# OpenCL platforms, demo (stop early if the kernels do not build, so that a second try has time),
# the default bench, the test suite on the GPU, PyTorch on the same shapes, the tuning sweep, the
# exhaustive math test, linear_xent, torch.compile. Each step is bounded so the whole job fits
# BUDGET seconds; everything is written to $OUT.
#
#   BUILD=build BUDGET=480 OUT=/tmp/gpu-out bash bench/gpu_run.sh     (from the repository root)
#
# A machine without an ICD file for NVIDIA's driver gets one made in /tmp/icd from the
# libnvidia-opencl.so.1 it has (OCL_ICD_VENDORS; the Khronos and ocl-icd loaders read it). SYSROOT
# (optional) holds an ICD loader, cmocka and clinfo carried from elsewhere (usr/lib, usr/bin).
# DEV=cpu runs the same job on PoCL, to try it out.
set -u
DEV=${DEV:-gpu}
BUDGET=${BUDGET:-480}
T0=$(date +%s)
R=$PWD S=${SYSROOT:-$PWD/.gpu/sysroot}/usr
B=$(cd "${BUILD:-build}" 2>/dev/null && pwd) && [ -x "$B/clxent" ] || { echo "gpu_run.sh: no build in ${BUILD:-build}" >&2; exit 2; }
OUT=${OUT:-/tmp/gpu-out}
CLINFO=$(command -v clinfo || echo "$S/bin/clinfo")
mkdir -p "$OUT"
left() { echo $((BUDGET - ($(date +%s) - T0))); }
# a step's timeout: its own limit, or what is left of the budget if less (at least 5 s)
cap() { local t=$1 l; l=$(left); [ "$l" -lt "$t" ] && t=$l; [ "$t" -lt 5 ] && t=5; echo "$t"; }
stamp() { echo "== $* [t=$(($(date +%s) - T0)) s]"; }
exec > >(tee "$OUT/log.txt") 2>&1

stamp machine
date -u; uname -r; nproc; ldd --version | head -1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
stamp OpenCL ICDs
ls -la /etc/OpenCL/vendors 2>&1; head -5 /etc/OpenCL/vendors/*.icd 2>&1
NV=$( (ldconfig -p | grep -o '/[^ ]*libnvidia-opencl\.so[.0-9]*'; find /usr/local/nvidia /usr/lib/x86_64-linux-gnu /usr/lib64 -maxdepth 3 -name 'libnvidia-opencl.so*' 2>/dev/null) | sort -u)
echo; echo "libnvidia-opencl: ${NV:-none}"
ldconfig -p | grep -E 'libOpenCL|libpocl' | head -8
mkdir -p /tmp/icd
cp /etc/OpenCL/vendors/*.icd /tmp/icd/ 2>/dev/null
if ! grep -qsi nvidia /tmp/icd/*.icd 2>/dev/null && [ -n "$NV" ]; then
  lib=$(echo "$NV" | grep 'so\.1$' | head -1); [ -n "$lib" ] || lib=$(echo "$NV" | head -1)
  echo "$lib" >/tmp/icd/nvidia.icd
  echo "made /tmp/icd/nvidia.icd -> $lib"
fi
export OCL_ICD_VENDORS=/tmp/icd LD_LIBRARY_PATH=$S/lib/x86_64-linux-gnu:$B${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CLXENT_CACHE_DIR=/tmp/clxent-cache
"$CLINFO" -l 2>&1
"$CLINFO" >"$OUT/clinfo.txt" 2>&1

stamp devices and demo
"$B/clxent" devices 2>&1
if ! timeout "$(cap 60)" "$B/clxent" demo --device "$DEV"; then
  echo "DEMO FAILED: stopping here so that a second run has device time"
  exit 1
fi
timeout "$(cap 60)" "$B/clxent" check --device "$DEV" --quiet; echo "check exit $?"

stamp bench default
timeout "$(cap 150)" "$B/clxent" bench --device "$DEV" 2>&1 | tee "$OUT/bench_default.txt"

stamp tests on the GPU
# a build made in another checkout names that checkout's paths: point them here
oldb=$(sed -n 's/^# Build directory: \(.*\)$/\1/p' "$B/CTestTestfile.cmake")
old=$(sed -n 's/^# Source directory: \(.*\)$/\1/p' "$B/CTestTestfile.cmake")
if [ -n "$old" ] && { [ "$old" != "$R" ] || [ "$oldb" != "$B" ]; }; then
  # one pass, the paths taken literally, the build directory first where both match
  find "$B" -name CTestTestfile.cmake -exec env OLDB="$oldb" OLD="$old" NEWB="$B" NEW="$R" \
    perl -pi -e 's{(\Q$ENV{OLDB}\E)|(\Q$ENV{OLD}\E)}{defined $1 ? $ENV{NEWB} : $ENV{NEW}}ge' {} +
fi
CTEST=$(command -v ctest || echo "$(dirname "$(command -v cmake)")/ctest")
CLXENT_DEVICE=$DEV timeout "$(cap 200)" "$CTEST" --test-dir "$B" -j 12 --timeout 170 -E 'math_accuracy' \
  --output-on-failure >"$OUT/ctest.txt" 2>&1
echo "ctest exit $?"; grep -E "tests passed|Failed|\*\*\*|Not Run|Timeout" "$OUT/ctest.txt" | head -30

stamp torch eager
PYTHONUNBUFFERED=1 timeout "$(cap 60)" python3 bench/torch_xent.py --repeat 20 2>&1 | tee "$OUT/torch.txt"

stamp sweep
{
  for e in 0 1; do for g in 128 256 512 1024; do for v in 4 8; do
    [ "$(left)" -lt 90 ] && break 3
    echo "# sweep OWN_MATH=$e GROUP=$g VEC=$v"
    CLXENT_OWN_MATH=$e CLXENT_GROUP_SIZE=$g CLXENT_VEC=$v timeout 40 "$B/clxent" bench --device "$DEV" --kernel-only \
      --csv --repeat 7 --warmup 2 --shape 8192x32000 --shape 2048x128256 --shape 65536x1000 --shape 1048576x10 2>>"$OUT/sweep_errors.txt"
  done; done; done
  for v in 4 8; do for rt in 1 2 4; do
    [ "$(left)" -lt 70 ] && break 2
    echo "# sweep short rows VEC=$v ROW_THREADS=$rt"
    CLXENT_ROW_THREADS=$rt CLXENT_VEC=$v timeout 30 "$B/clxent" bench --device "$DEV" --kernel-only --csv --repeat 7 \
      --shape 65536x1000 --shape 1048576x10 2>>"$OUT/sweep_errors.txt"
  done; done
  for v in 4 8; do
    [ "$(left)" -lt 60 ] && break
    echo "# sweep item variant VEC=$v"
    CLXENT_VARIANT=item CLXENT_VEC=$v timeout 30 "$B/clxent" bench --device "$DEV" --kernel-only --csv --repeat 7 \
      --shape 65536x1000 --shape 1048576x10 2>>"$OUT/sweep_errors.txt"
  done
  for t in f16 bf16; do
    [ "$(left)" -lt 45 ] && break
    echo "# dtype $t"
    timeout 30 "$B/clxent" bench --device "$DEV" --kernel-only --csv --repeat 7 --dtype $t --shape 8192x32000 --shape 2048x128256 2>>"$OUT/sweep_errors.txt"
  done
  for op in softcap smoothing bias all; do
    [ "$(left)" -lt 35 ] && break
    echo "# options $op"
    timeout 30 "$B/clxent" bench --device "$DEV" --kernel-only --csv --repeat 7 --options $op --shape 8192x32000 2>>"$OUT/sweep_errors.txt"
  done
} 2>&1 | tee "$OUT/sweep.txt"

stamp math accuracy
if [ "$(left)" -gt 60 ]; then
  CLXENT_DEVICE=$DEV timeout $(($(left) - 30)) "$B/tests/test_math" >"$OUT/math.txt" 2>&1
  echo "math exit $?"; tail -5 "$OUT/math.txt"
else echo "math: skipped (budget)"; fi
stamp linear bench
if [ "$(left)" -gt 100 ]; then
  timeout 60 "$B/clxent_bench_linear" --device "$DEV" --shape 4096x1024x32000 --repeat 3 --warmup 1 2>&1
else echo "linear: skipped (budget)"; fi
stamp torch.compile
if [ "$(left)" -gt 40 ]; then
  PYTHONUNBUFFERED=1 timeout $(($(left) - 10)) python3 bench/torch_xent.py --repeat 20 --compile \
    --shape 8192x32000 --shape 65536x1000 --shape 1048576x10 2>&1 | tee "$OUT/torch_compile.txt"
else echo "torch.compile: skipped (budget)"; fi
stamp end
