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
run "$build/clxent" demo > /dev/null
run "$build/clxent" check --quiet
CLXENT_VARIANT=item CLXENT_ZERO_COPY=1 run "$build/tests/test_api"
CLXENT_VARIANT=group CLXENT_ZERO_COPY=0 run "$build/tests/test_binary_info"
echo "valgrind: clean"
