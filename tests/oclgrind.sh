#!/usr/bin/env bash
# The group (GPU) variant's kernels, and the item (CPU) variant's on short rows, under Oclgrind, a
# simulated GPU-like device that reports what PoCL's CPU execution hides (issue 13 §7). Fails
# (exit 1) on any mismatch against the float64 reference and on ANY message from Oclgrind, which
# itself exits 0 after reporting.
#
#   tests/oclgrind.sh [build-dir]     (default: build; needs build/tests/oclgrind_kernels)
#
# Two passes over tests/oclgrind_kernels.c:
#   1. every unit in one process with --data-races (local and global memory races, barrier
#      divergence) and --check-api; Oclgrind's memory checker (out-of-bounds reads and writes,
#      misaligned accesses) is always on;
#   2. --uninitialized with --check-api, one process per unit (--unit K), two at a time. Oclgrind
#      21.10's uninitialised-value shadow of a buffer outlives clReleaseMemObject: a bigger
#      buffer created later in the same slot keeps the old, smaller shadow, and every value
#      past its end reads as uninitialised (a 30-line OpenCL program shows it). The library
#      replaces its buffers when a call needs bigger ones, so in one long process this reports
#      correct data; a fresh process per unit never replaces a buffer. (The same shadow is also
#      wrong after clEnqueueFillBuffer, which the driver therefore does not use.)
#      Not the item configuration's, linear + cross-entropy and vocabulary-slice units (the last
#      ones, past --units-uninitialized): there Oclgrind 21.10 crashes (SIGSEGV in a memcpy in
#      Uninitialized::instructionExecuted, a worker thread) in the first linear_stats or
#      softmax_slice_stats it runs, whatever CLXENT_VEC and own math, and in the item variant's
#      row kernels (a SIGSEGV in 30 of its 83 units: every one of softmax_xent_soft and of
#      softmax_xent_hard where the row kernel runs, softcap past 32 classes or c >= 65; its
#      short-row units run clean); pass 1 runs them (bounds,
#      races, API) and checks every result.
# Oclgrind's messages are taken from stderr, which the driver leaves to them (its own reports go
# to stdout): `--log FILE` is no use, Oclgrind reopens (truncates) it for every OpenCL context.
# `oclgrind` preloads its own OpenCL runtime, so no other platform (PoCL) is visible; the driver
# also fails unless the device it ran on is named "Oclgrind".
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
prog="$build/tests/oclgrind_kernels"
if ! command -v oclgrind >/dev/null; then
  echo "oclgrind.sh: oclgrind is not installed (Debian: apt-get install oclgrind)" >&2
  exit 1
fi
if [ ! -x "$prog" ]; then
  echo "oclgrind.sh: $prog is not built (cmake --build $build --target oclgrind_kernels)" >&2
  exit 1
fi
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
status=0

# Prints Oclgrind's messages in a log and fails the run if there are any.
check_log() {
  if [ -s "$1" ]; then
    echo "oclgrind.sh: Oclgrind reported ($2):" >&2
    head -n 200 "$1" >&2
    status=1
  fi
}

echo "== pass 1: data races, barrier divergence, out-of-bounds accesses, API errors"
start=$SECONDS
if ! oclgrind --data-races --check-api "$prog" --require-device Oclgrind 2>"$logs/pass1.log"; then
  echo "oclgrind.sh: the driver failed under Oclgrind (pass 1)" >&2
  status=1
fi
check_log "$logs/pass1.log" "pass 1"
echo "pass 1: $((SECONDS - start)) s"

units="$("$prog" --units-uninitialized)"
echo "== pass 2: uninitialised values, $units of $("$prog" --units) units (the group configurations: not the item, linear and slice ones), a process each"
start=$SECONDS
export logs prog
seq 0 $((units - 1)) | xargs -P 2 -I{} sh -c '
  if ! oclgrind --uninitialized --check-api "$prog" --require-device Oclgrind --unit "$1" \
      >"$logs/unit-$1.out" 2>"$logs/unit-$1.log"; then
    echo "$1" >>"$logs/failed"
  fi' sh {}
if [ -s "$logs/failed" ]; then
  for unit in $(sort -n "$logs/failed"); do
    echo "oclgrind.sh: unit $unit failed under Oclgrind (pass 2):" >&2
    head -n 50 "$logs/unit-$unit.out" >&2
  done
  status=1
fi
for unit in $(seq 0 $((units - 1))); do check_log "$logs/unit-$unit.log" "pass 2, unit $unit"; done
echo "pass 2: $((SECONDS - start)) s"

if [ "$status" = 0 ]; then echo "oclgrind.sh: clean (no Oclgrind report, every result matched)"; fi
exit "$status"
