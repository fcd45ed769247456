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
# Valgrind emulates a CPU without AVX-512: on an AVX-512 host PoCL then names another device under
# it ("pthread-haswell-..." where the plain runs had "pthread-skylake-avx512-..."), whose kernels no
# earlier stage compiled, so PoCL compiles them here, under valgrind: over 20 minutes for one
# program on the 2-core Xeon (2026-11-26, `clxent check`). There the group variant's program is
# left out (its host code is the item variant's but for the launch shapes, which the plain suite
# runs); the item variant's program is compiled once and cached for the later runs.
group=group
native="$("$build/clxent" devices 2>/dev/null | grep -m1 -o 'pthread-[^ ]*' || true)"
emulated="$(valgrind --quiet "$build/clxent" devices 2>/dev/null | grep -m1 -o 'pthread-[^ ]*' || true)"
if [ "$native" != "$emulated" ]; then
  echo "valgrind.sh: PoCL's device is $native natively, $emulated under valgrind: the item variant only" >&2
  group=item
fi
run "$build/clxent" demo > /dev/null
run "$build/clxent" check --quiet
CLXENT_VARIANT=item CLXENT_ZERO_COPY=1 run "$build/tests/test_api"
CLXENT_VARIANT=$group CLXENT_ZERO_COPY=0 run "$build/tests/test_binary_info"
echo "valgrind: clean"
