#!/bin/sh
# Bad usage of the command-line tool and of the C-loop bench program: every malformed, out of
# range or overflowing argument must exit 2 with a message that names the argument, before any
# device is opened or memory allocated; a shape whose arrays this machine cannot hold exits 3.
# Never a signal (a crash, an ASan report, the OOM killer), never a run.
#   usage: cli_usage.sh path/to/clxent path/to/clxent_bench_c_loop
# No device is needed: every case fails before clxent_create. (The bench cases name a device that
# does not exist, and each case has a time limit, so that an argument wrongly accepted fails fast
# instead of starting a benchmark.)
tool=$1
loop=$2
failures=0
count=0
err=${TMPDIR:-/tmp}/clxent_cli_usage.$$
trap 'rm -f "$err"' EXIT
nodev=no-such-device-cli-usage
limit=
command -v timeout >/dev/null 2>&1 && limit="timeout 120"

# expect STATUS WORD PROGRAM ARGS...: PROGRAM ARGS must exit STATUS and say WORD on stderr.
expect() {
  want=$1 word=$2
  shift 2
  count=$((count + 1))
  $limit "$@" >/dev/null 2>"$err" </dev/null
  got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $* -> exit $got, want $want"
    [ "$got" -eq 124 ] && [ -n "$limit" ] && echo "      (timed out)"
    [ "$got" -gt 128 ] && echo "      (killed by signal $((got - 128)))"
    sed 's/^/      | /' "$err" | head -n 5
    failures=$((failures + 1))
  elif ! grep -q -e "$word" "$err"; then
    echo "FAIL: $* -> exit $got as expected, but stderr does not name '$word':"
    sed 's/^/      | /' "$err" | head -n 5
    failures=$((failures + 1))
  fi
}

for prog in "$tool bench --device $nodev" "$loop --device $nodev"; do
  # shapes: the whole string NxC, digits only, N, C >= 1, C a label (int32), N*C and its bytes in size_t
  for bad in 4294967296x4294967297 -5x10 10x-5 +5x10 " 5x10" "5x 10" 10x x10 x 0x10 10x0 00x10 1e3x10 0x10x10 \
             99999999999999999999x1 1x99999999999999999999 18446744073709551616x1 10x10junk 10x10x10 10 "" \
             1x2147483648 4611686018427387904x2 2305843009213693952x1 0x5x10 5X; do
    # shellcheck disable=SC2086 # $prog is a program and its command
    expect 2 --shape $prog --shape "$bad"
  done
  for bad in -1 0 257 99999999999 99999999999999999999 abc 1.5 " 3" "3 " 0x10 +3 ""; do
    # shellcheck disable=SC2086
    expect 2 --repeat $prog --repeat "$bad"
  done
  for bad in -1 abc 1e3 99999999999 "" 1001; do
    # shellcheck disable=SC2086
    expect 2 --warmup $prog --warmup "$bad"
  done
  for flag in --shape --repeat --warmup --device; do
    # shellcheck disable=SC2086
    expect 2 "$flag" $prog "$flag" # the value missing
  done
  # shellcheck disable=SC2086
  expect 2 --bogus $prog --bogus
  # shellcheck disable=SC2086
  expect 2 --shape $prog --shape 1x1 --shape 1x2 --shape 1x3 --shape 1x4 --shape 1x5 --shape 1x6 --shape 1x7 \
    --shape 1x8 --shape 1x9 --shape 1x10 --shape 1x11 --shape 1x12 --shape 1x13 --shape 1x14 --shape 1x15 \
    --shape 1x16 --shape 1x17
  # a valid shape far beyond any machine's memory (n·c·4 bytes fits size_t): exit 3, no allocation
  # shellcheck disable=SC2086
  expect 3 "memory" $prog --shape 100000000x2000000000
  # shellcheck disable=SC2086
  expect 3 "memory" $prog --shape 1000000000000x1000
done

for bad in f64 F32 "" f32x; do expect 2 --dtype "$tool" bench --device $nodev --dtype "$bad"; done
for bad in bogus "" "weights,,zloss" "weights," ",weights" "weights,bogus" \
           "$(printf 'weights,%.0s' $(seq 1 40))bogus"; do
  expect 2 --options "$tool" bench --device $nodev --options "$bad"
done
expect 2 --dtype "$tool" bench --dtype
expect 2 --options "$tool" bench --options
expect 2 --kernel-only "$tool" bench --device $nodev --kernel-only --host-path
expect 2 --device "$tool" check --device
expect 2 --bogus "$tool" check --bogus
expect 2 --device "$tool" demo --device
expect 2 --bogus "$tool" demo --bogus
expect 2 extra "$tool" devices extra
expect 2 nosuchcommand "$tool" nosuchcommand
expect 2 usage "$tool"

echo "$((count - failures)) of $count bad-usage cases handled"
[ "$failures" -eq 0 ]
