#!/usr/bin/env bash
# valgrind memcheck over programs that drive the whole host code on PoCL: no invalid read or write
# and no definite leak may remain (suppressions for glibc/PoCL internals in tests/valgrind.supp).
# Usage: tests/valgrind.sh BUILD_DIR   (the build must exist; the kernels' binary cache makes it quick)
set -euo pipefail
build="${1:-build}"
here="$(cd "$(dirname "$0")" && pwd)"
run() {
  echo "== valgrind $*" >&2
  valgrind --quiet --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
    --suppressions="$here/valgrind.supp" "$@"
}
# The programs, each run by $1 (run, or warm below): both variants' host code and kernels.
programs() {
  "$1" "$build/clxent" demo > /dev/null
  "$1" "$build/clxent" check --quiet
  CLXENT_VARIANT=item CLXENT_ZERO_COPY=1 "$1" "$build/tests/test_api"
  CLXENT_VARIANT=$group CLXENT_ZERO_COPY=0 "$1" "$build/tests/test_binary_info"
}
group=group lib=""
# Valgrind emulates a CPU without AVX-512: on an AVX-512 host PoCL then names another device under
# it ("pthread-haswell-..." where the plain runs had "pthread-skylake-avx512-...") and compiles
# every kernel again, with LLVM running under valgrind: over 20 minutes a program on the 2-core
# Xeon (2026-11-26). So the programs first run natively as PoCL would compile them under valgrind
# (POCL_KERNELLIB_NAME: its kernel library and target CPU for that CPU; CLXENT_VEC: the vector
# width it would report), which fills a PoCL kernel cache of this script's own with the same
# entries (PoCL keys them by source, options and target), and valgrind then finds them there: the
# whole stage, the group variant's program included, took 7 minutes instead of 42 without it
# (2026-11-27). clxent's own program cache starts empty under valgrind, so that its source build
# and cache store run there as on a fresh machine.
native="$("$build/clxent" devices 2>/dev/null | grep -m1 -o 'pthread-[^ ]*' || true)"
emulated="$(valgrind --quiet "$build/clxent" devices 2>/dev/null | grep -m1 -o 'pthread-[^ ]*' || true)"
if [ "$native" != "$emulated" ]; then
  case "${emulated#pthread-}" in # PoCL's kernel libraries (lib/CL/pocl_llvm_utils.cc) and their float lanes
    haswell-*) lib=avx2 vec=8 ;;
    bdver1-*) lib=avx_fma4 vec=8 ;;
    ivybridge-*) lib=avx_f16c vec=8 ;;
    sandybridge-*) lib=avx vec=8 ;;
    penryn-*) lib=sse41 vec=4 ;;
    core2-*) lib=ssse3 vec=4 ;;
    athlon64-*) lib=sse2 vec=4 ;;
    *) lib="" ;;
  esac
fi
if [ "$native" != "$emulated" ] && [ -z "$lib" ]; then
  # a CPU this script does not know: PoCL compiles under valgrind, so only the item variant's program
  echo "valgrind.sh: PoCL's device is $native natively, $emulated under valgrind (no kernel library known for it): the item variant only" >&2
  group=item
elif [ "$native" != "$emulated" ]; then
  echo "valgrind.sh: PoCL's device is $native natively, $emulated under valgrind: compiling for it natively first" >&2
  caches="$(mktemp -d)"
  trap 'rm -rf "$caches"' EXIT
  # CLXENT_BF16_CVT=0 in both: the host's CPUID may offer AVX-512 BF16 natively and not under
  # valgrind, and the build option it sets (-DCLXENT_HOST_CVT_BF16, host/host_cpu.c) is part of
  # PoCL's key: a mismatch compiled every program again under valgrind (2026-11-28)
  export POCL_CACHE_DIR="$caches/pocl" CLXENT_VEC=$vec CLXENT_BF16_CVT=0
  warm() {
    echo "== natively, as under valgrind: $*" >&2
    if ! POCL_KERNELLIB_NAME=$lib CLXENT_CACHE_DIR="$caches/warm" "$@" > "$caches/warm.log" 2>&1; then
      cat "$caches/warm.log" >&2
      echo "valgrind.sh: the native run for valgrind's CPU failed: $*" >&2
      exit 1
    fi
  }
  programs warm
  export CLXENT_CACHE_DIR="$caches/clxent"
fi
programs run
echo "valgrind: clean"
