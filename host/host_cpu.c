/*
 * What the host's own CPU can do, for the kernels a CPU device (PoCL) compiles for that same CPU.
 *
 * PoCL passes the kernels the CPU model LLVM knows it as, whose features may be fewer than the
 * chip's (a Zen 4 compiles as skylake-avx512, without AVX-512 BF16): where the host finds an
 * instruction that model lacks, it tells the kernels by a build option, and they write the
 * instruction as inline assembly (kernels/common.cl, CLXENT_HAS_CVT_BF16).
 */
#include "internal.h"

#include <string.h>

#if CLXENT_HOST_IS_X86 && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

/* Whether a CPU device is this host's CPU: PoCL names its CPU device after the processor's brand
 * string (CPUID 0x80000002-4, as /proc/cpuinfo's model name: "pthread-skylake-avx512-AMD EPYC"),
 * which a remote device (PoCL's remote driver) or another vendor's runtime need not. Without a
 * brand string: no. */
int clxent_host_cpu_is_device(const char *device_name) {
#if CLXENT_HOST_IS_X86 && (defined(__GNUC__) || defined(__clang__))
  unsigned r[12] = {0};
  for (unsigned k = 0; k < 3; ++k)
    if (!__get_cpuid(0x80000002u + k, &r[4 * k], &r[4 * k + 1], &r[4 * k + 2], &r[4 * k + 3])) return 0;
  char brand[sizeof r + 1];
  memcpy(brand, r, sizeof r);
  brand[sizeof r] = '\0';
  char *b = brand, *end = brand + strlen(brand);
  while (*b == ' ') ++b; /* Intel pads the front */
  while (end > b && end[-1] == ' ') *--end = '\0';
  return *b && device_name && strstr(device_name, b) != NULL;
#else
  (void)device_name;
  return 0;
#endif
}

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
