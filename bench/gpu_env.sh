# Sourced by the GPU session scripts (bench/gpu_run.sh, bench/gpu_ab.sh) from the repository root:
# the build B (BUILD, default build), OUT, the budget helpers (left, cap, stamp) and the OpenCL
# setup. A machine without an ICD file for NVIDIA's driver gets one made in /tmp/icd from the
# libnvidia-opencl.so.1 it has (OCL_ICD_VENDORS; the Khronos and ocl-icd loaders read it). SYSROOT
# (optional, default .gpu/sysroot) holds an ICD loader, cmocka and clinfo carried from elsewhere
# (usr/lib/x86_64-linux-gnu, usr/bin). Prints the machine and its OpenCL platforms.
DEV=${DEV:-gpu}
BUDGET=${BUDGET:-480}
T0=$(date +%s)
R=$PWD S=${SYSROOT:-$PWD/.gpu/sysroot}/usr
B=$(cd "${BUILD:-build}" 2>/dev/null && pwd) && [ -x "$B/clxent" ] || { echo "no build in ${BUILD:-build}" >&2; exit 2; }
OUT=${OUT:-/tmp/gpu-out}
CLINFO=$(command -v clinfo || echo "$S/bin/clinfo")
mkdir -p "$OUT"
left() { echo $((BUDGET - ($(date +%s) - T0))); }
# a step's timeout: its own limit, or what is left of the budget if less (at least 5 s)
cap() { local t=$1 l; l=$(left); [ "$l" -lt "$t" ] && t=$l; [ "$t" -lt 5 ] && t=5; echo "$t"; }
stamp() { echo "== $* [t=$(($(date +%s) - T0)) s]"; }

gpu_setup() {
  stamp machine
  date -u; uname -r; nproc; ldd --version | head -1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  stamp OpenCL ICDs
  ls -la /etc/OpenCL/vendors 2>&1; head -5 /etc/OpenCL/vendors/*.icd 2>&1
  local NV lib
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
}

# The build's test suite on DEV, bounded by LIMIT seconds (and the budget), into $OUT/ctest.txt;
# TESTS_R: only the tests it matches (ctest -R); TEST_OPTIONS: build options they all take.
gpu_ctest() {
  local limit=$1 oldb old CTEST
  # a build made in another checkout names that checkout's paths: point them here
  oldb=$(sed -n 's/^# Build directory: \(.*\)$/\1/p' "$B/CTestTestfile.cmake")
  old=$(sed -n 's/^# Source directory: \(.*\)$/\1/p' "$B/CTestTestfile.cmake")
  if [ -n "$old" ] && { [ "$old" != "$R" ] || [ "$oldb" != "$B" ]; }; then
    # one pass, the paths taken literally, the build directory first where both match
    find "$B" -name CTestTestfile.cmake -exec env OLDB="$oldb" OLD="$old" NEWB="$B" NEW="$R" \
      perl -pi -e 's{(\Q$ENV{OLDB}\E)|(\Q$ENV{OLD}\E)}{defined $1 ? $ENV{NEWB} : $ENV{NEW}}ge' {} +
  fi
  CTEST=$(command -v ctest || echo "$(dirname "$(command -v cmake)")/ctest")
  CLXENT_DEVICE=$DEV CLXENT_BUILD_OPTIONS="${TEST_OPTIONS-}" timeout "$(cap "$limit")" "$CTEST" --test-dir "$B" -j 12 \
    --timeout $((limit - 20)) -E 'math_accuracy' ${TESTS_R:+-R "$TESTS_R"} --output-on-failure >"$OUT/ctest.txt" 2>&1
  echo "ctest exit $?"; grep -E "tests passed|Failed|\*\*\*|Not Run|Timeout" "$OUT/ctest.txt" | head -30
}
