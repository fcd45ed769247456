/* clxent_copy (host/copy.c), the staging copies of the pipelined path: whole and exact for every
 * size around its thresholds (one memcpy below 16 MiB, pieces on threads above) and every
 * alignment, nothing written outside the destination. Internal: links the static library; needs
 * no device. */
#define CLXENT_EXPERIMENTAL_API /* internal.h names experimental types */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs these first */
#include <cmocka.h>

#include "internal.h"

#define GUARD 64
#define MIB ((size_t)1 << 20)

/* Copies `bytes` from src + src_off to dst + dst_off and checks every byte, and the guard bands of
 * the destination left as poisoned. */
static void check_copy_with(size_t bytes, size_t src_off, size_t dst_off, size_t threads) {
  unsigned char *src = malloc(bytes + src_off + 1), *dst = malloc(bytes + dst_off + 2 * GUARD);
  if (!src || !dst) fail_msg("malloc of %zu bytes failed", bytes);
  uint32_t x = (uint32_t)(bytes * 2654435761u + src_off * 40503u + dst_off);
  for (size_t k = 0; k < bytes + src_off + 1; ++k) x = x * 1664525u + 1013904223u, src[k] = (unsigned char)(x >> 24);
  memset(dst, 0xA5, bytes + dst_off + 2 * GUARD);
  unsigned char *to = dst + GUARD + dst_off;
  if (threads) clxent_copy_split(to, src + src_off, bytes, threads);
  else clxent_copy(to, src + src_off, bytes);
  if (memcmp(to, src + src_off, bytes)) {
    size_t k = 0;
    while (to[k] == src[src_off + k]) ++k;
    fail_msg("%zu bytes (source +%zu, destination +%zu, %zu threads): byte %zu differs", bytes, src_off, dst_off,
             threads, k);
  }
  for (size_t k = 0; k < GUARD + dst_off; ++k)
    if (dst[k] != 0xA5) fail_msg("%zu bytes: written %zu bytes before the destination", bytes, GUARD + dst_off - k);
  for (size_t k = 0; k < GUARD; ++k)
    if (to[bytes + k] != 0xA5) fail_msg("%zu bytes: written at byte %zu past the destination", bytes, k);
  free(src), free(dst);
}

/* threads 0: as the library chooses */
static void check_copy(size_t bytes, size_t src_off, size_t dst_off) { check_copy_with(bytes, src_off, dst_off, 0); }

static void test_small_sizes(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 7, 63, 64, 65, 4095, 4096, 65537};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s)
    for (size_t a = 0; a < 3; ++a) check_copy(sizes[s], a, 2 * a + 1);
}

/* around the split (16 MiB) and the piece (4 MiB), with the threads the library picks here */
static void test_split_sizes(void **state) {
  (void)state;
  static const size_t sizes[] = {16 * MIB - 1, 16 * MIB, 16 * MIB + 3, 20 * MIB - 64, 33 * MIB + 13, 64 * MIB + 1};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
    check_copy(sizes[s], 0, 0);
    check_copy(sizes[s], 1, 3);
  }
}

/* every number of threads, whatever this machine's processors: pieces of whole cache lines, the
 * last one the rest, and copies too small for the pieces asked (fewer threads, or one memcpy) */
static void test_thread_counts(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 63, 64, 127, 500, 4097, 3 * MIB + 5};
  for (size_t t = 1; t <= 9; ++t)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) check_copy_with(sizes[s], t % 3, t % 5, t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_sizes),
      cmocka_unit_test(test_split_sizes),
      cmocka_unit_test(test_thread_counts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
