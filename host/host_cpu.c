/*
 * What the host's own CPU can do, for the kernels a CPU device (PoCL) compiles for that same CPU.
 *
 * PoCL passes the kernels the CPU model LLVM knows it as, whose features may be fewer than the
 * chip's (a Zen 4 compiles as skylake-avx512, without AVX-512 BF16): where the host finds an
 * instruction that model lacks, it tells the kernels by a build option, and they write the
 * instruction as inline assembly (kernels/common.cl, CLXENT_HAS_CVT_BF16).
 */
#include "internal.h"

#if CLXENT_HOST_IS_X86 && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

/* AVX-512 BF16 (vcvtneps2bf16): CPUID leaf 7, sub-leaf 1, EAX bit 5. The kernels use it only where
 * they are compiled for AVX-512 (__AVX512F__), so the operating system's AVX-512 state is PoCL's
 * concern, already met. */
int clxent_host_cpu_has_bf16_cvt(void) {
#if CLXENT_HOST_IS_X86 && (defined(__GNUC__) || defined(__clang__))
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1) return 0; /* a: the highest sub-leaf */
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
  return (a >> 5) & 1u;
#else
  return 0;
#endif
}
