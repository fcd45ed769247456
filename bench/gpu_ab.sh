#!/bin/bash
# A kernel change measured on a GPU within one lease: two builds' kernel times alternated (OLD, then
# NEW, then NEW, OLD, ...), the new build's demo and test suite on the GPU, a sweep of its build
# options and shapes, its options and 16-bit storage, and PyTorch eager on the same shapes. Each
# step is bounded so that the whole job fits BUDGET seconds; everything goes to $OUT.
#
#   OLD=build-old BUILD=build BUDGET=420 OUT=/tmp/gpu-out bash bench/gpu_ab.sh   (repository root)
#
# OLD needs only its clxent and libclxent.so (a build of the older commit); BUILD the tests too.
# Settings (lists separated by "|"; empty to skip): NEW_OPTIONS, build options of the new build's
# contenders in the alternated rounds (default: one, as built); TESTS=0 skips the suite
# (gpu_env.sh: TESTS_R, TEST_OPTIONS; TESTS_LIMIT seconds, default 170); SWEEP,
# build options for one more run each (default: CLXENT_GROUP_UNROLL 1, 2, 8, 16); GROUP_SIZES,
# group sizes (space-separated, default 512 1024); ROW_THREADS, items per row to force
# (space-separated, default none) on ROW_SHAPES (default SHAPES) under ROW_OPTIONS; DTYPES, the 16-bit types
# (default f16 bf16) and DTYPE_OPTIONS, build options for their runs;
# OPTIONS, the loss options to time (space-separated, default softcap smoothing bias all).
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
# the contenders of each round: the old build, then the new one under each of NEW_OPTIONS
# ("|"-separated build options; default: the new build as it is), the order reversed every
# other round
IFS='|' read -r -a variants <<<"${NEW_OPTIONS-}"
[ ${#variants[@]} -eq 0 ] && variants=("")
stamp "old/new alternated, $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
  [ "$(left)" -lt "${AB_RESERVE:-200}" ] && break
  order=(old "${variants[@]/#/new:}")
  if [ $((r % 2)) = 0 ]; then for ((k = 0, e = ${#order[@]} - 1; k < e; k++, e--)); do t=${order[k]}; order[k]=${order[e]}; order[e]=$t; done; fi
  for x in "${order[@]}"; do
    if [ "$x" = old ]; then timed "old round $r" "$OLD"
    else timed "new ${x#new:} round $r" "$B" CLXENT_BUILD_OPTIONS="${x#new:}"; fi
  done
done 2>&1 | tee "$OUT/ab.txt"

stamp tests on the GPU
[ "${TESTS:-1}" = 1 ] && [ "$(left)" -gt "${TESTS_LIMIT:-170}" ] && gpu_ctest "${TESTS_LIMIT:-170}"

stamp sweep
{
  IFS='|' read -r -a sweep <<<"${SWEEP--DCLXENT_GROUP_UNROLL=1|-DCLXENT_GROUP_UNROLL=2|-DCLXENT_GROUP_UNROLL=8|-DCLXENT_GROUP_UNROLL=16}"
  for o in "${sweep[@]}"; do
    [ "$(left)" -lt 90 ] && break
    timed "new CLXENT_BUILD_OPTIONS=$o" "$B" CLXENT_BUILD_OPTIONS="$o"
  done
  for g in ${GROUP_SIZES-512 1024}; do
    [ "$(left)" -lt 80 ] && break
    timed "new CLXENT_GROUP_SIZE=$g" "$B" CLXENT_GROUP_SIZE=$g
  done
  for t in ${ROW_THREADS-}; do
    [ "$(left)" -lt 70 ] && break
    SHAPES=${ROW_SHAPES:-$SHAPES} timed "new CLXENT_ROW_THREADS=$t ${ROW_OPTIONS:+CLXENT_BUILD_OPTIONS=$ROW_OPTIONS}" "$B" \
      CLXENT_ROW_THREADS=$t CLXENT_BUILD_OPTIONS="${ROW_OPTIONS-}"
  done
  IFS='|' read -r -a dopts <<<"${DTYPE_OPTIONS-}"
  [ ${#dopts[@]} -eq 0 ] && dopts=("")
  for o in "${dopts[@]}"; do for t in ${DTYPES-f16 bf16}; do
    [ "$(left)" -lt 60 ] && break 2
    echo "# new dtype $t ${o:+CLXENT_BUILD_OPTIONS=$o}"
    CLXENT_BUILD_OPTIONS="$o" timeout 30 "$B/clxent" bench --device "$DEV" --kernel-only --csv --repeat 10 --dtype $t \
      --shape 8192x32000 --shape 2048x128256 2>>"$OUT/errors.txt"
  done; done
  for op in ${OPTIONS-softcap smoothing bias all}; do
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
