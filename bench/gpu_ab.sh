#!/bin/bash
# A kernel change measured on a GPU within one lease: two builds' kernel times alternated (OLD, then
# NEW, then NEW, OLD, ...), the new build's demo and test suite on the GPU, a sweep of its build
# options and shapes, its options and 16-bit storage, and PyTorch eager on the same shapes. Each
# step is bounded so that the whole job fits BUDGET seconds; everything goes to $OUT.
#
#   OLD=build-old BUILD=build BUDGET=420 OUT=/tmp/gpu-out bash bench/gpu_ab.sh   (repository root)
#
# OLD needs only its clxent and libclxent.so (a build of the older commit); BUILD the tests too.
# SWEEP: build options to time the new build under, one run each (default: the group kernel's
# loads in flight, CLXENT_GROUP_UNROLL, and the group size).
set -u
. bench/gpu_env.sh
OLD=$(cd "${OLD:-build-old}" 2>/dev/null && pwd) && [ -x "$OLD/clxent" ] || { echo "no OLD build" >&2; exit 2; }
exec > >(tee "$OUT/log.txt") 2>&1
SHAPES=${SHAPES:-"--shape 8192x32000 --shape 2048x128256 --shape 65536x1000 --shape 1048576x10 --shape 16384x4096"}
ROUNDS=${ROUNDS:-3}

gpu_setup
stamp demo and check
if ! timeout "$(cap 60)" "$B/clxent" demo --device "$DEV"; then
  echo "DEMO FAILED: stopping here so that a second run has device time"
  exit 1
fi
timeout "$(cap 40)" "$B/clxent" check --device "$DEV" --quiet; echo "check exit $?"

# one run of a build: kernel-only, the CSV with its header (variant, vector, group, exp)
timed() { # LABEL BUILD [VAR=VALUE...]
  local label=$1 b=$2; shift 2
  echo "# $label"
  env LD_LIBRARY_PATH="$S/lib/x86_64-linux-gnu:$b" "$@" timeout "$(cap 60)" "$b/clxent" bench --device "$DEV" \
    --kernel-only --csv --repeat 10 --warmup 2 $SHAPES 2>>"$OUT/errors.txt"
}
stamp "old/new alternated, $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
  [ "$(left)" -lt 200 ] && break
  if [ $((r % 2)) = 1 ]; then timed "old round $r" "$OLD"; timed "new round $r" "$B"
  else timed "new round $r" "$B"; timed "old round $r" "$OLD"; fi
done 2>&1 | tee "$OUT/ab.txt"

stamp tests on the GPU
[ "$(left)" -gt 150 ] && gpu_ctest 170

stamp sweep
{
  for o in ${SWEEP:-"-DCLXENT_GROUP_UNROLL=1" "-DCLXENT_GROUP_UNROLL=2" "-DCLXENT_GROUP_UNROLL=8" "-DCLXENT_GROUP_UNROLL=16"}; do
    [ "$(left)" -lt 90 ] && break
    timed "new CLXENT_BUILD_OPTIONS=$o" "$B" CLXENT_BUILD_OPTIONS="$o"
  done
  for g in 512 1024; do
    [ "$(left)" -lt 80 ] && break
    timed "new CLXENT_GROUP_SIZE=$g" "$B" CLXENT_GROUP_SIZE=$g
  done
  for t in f16 bf16; do
    [ "$(left)" -lt 60 ] && break
    echo "# new dtype $t"
    timeout 30 "$B/clxent" bench --device "$DEV" --kernel-only --csv --repeat 10 --dtype $t --shape 8192x32000 \
      --shape 2048x128256 2>>"$OUT/errors.txt"
  done
  for op in softcap smoothing bias all; do
    [ "$(left)" -lt 45 ] && break
    echo "# new options $op"
    timeout 30 "$B/clxent" bench --device "$DEV" --kernel-only --csv --repeat 10 --options $op --shape 8192x32000 \
      2>>"$OUT/errors.txt"
  done
} 2>&1 | tee "$OUT/sweep.txt"

stamp torch eager
if [ "$(left)" -gt 25 ]; then
  PYTHONUNBUFFERED=1 timeout $(($(left) - 5)) python3 bench/torch_xent.py --repeat 20 $SHAPES 2>&1 | tee "$OUT/torch.txt"
fi
stamp end
