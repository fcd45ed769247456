#!/bin/bash
# One GPU session's measurements, as docs/PERFORMANCE.md ("NVIDIA GPU") records them: probe the
# OpenCL platforms, demo (stop early if the kernels do not build, so that a second try has time),
# the default bench, the test suite on the GPU, PyTorch on the same shapes, the tuning sweep, the
# exhaustive math test, linear_xent, torch.compile. Each step is bounded so the whole job fits
# BUDGET seconds; everything is written to $OUT.
#
#   BUILD=build BUDGET=480 OUT=/tmp/gpu-out bash bench/gpu_run.sh     (from the repository root)
#
# bench/gpu_env.sh sets up OpenCL (an ICD file for NVIDIA's driver where the machine has none;
# SYSROOT: a carried ICD loader, cmocka and clinfo). DEV=cpu runs the same job on PoCL, to try it out.
set -u
. bench/gpu_env.sh
exec > >(tee "$OUT/log.txt") 2>&1

gpu_setup
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
gpu_ctest 200

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
