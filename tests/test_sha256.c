/* The program cache's SHA-256 (host/sha256.c): FIPS 180-4's examples, and the hardware rounds
 * (x86-64's SHA extensions, where the CPU has them) against the portable ones on every length
 * around the block and padding edges and on a few megabytes. Needs no device. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sha256.h"

static void hex(const unsigned char d[32], char out[65]) {
  for (int i = 0; i < 32; ++i) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* FIPS 180-4 (and its example documents): "abc", the empty message, the two-block message, and
 * a million 'a's; through the default path and the portable one. */
static void test_known_digests(void **state) {
  (void)state;
  static const struct {
    const char *text;
    size_t repeat;
    const char *digest;
  } known[] = {
      {"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (size_t k = 0; k < sizeof known / sizeof known[0]; ++k) {
    const size_t len = strlen(known[k].text), size = len * known[k].repeat;
    char *msg = malloc(size + 1);
    assert_non_null(msg);
    for (size_t r = 0; r < known[k].repeat; ++r) memcpy(msg + r * len, known[k].text, len);
    for (int portable = 0; portable < 2; ++portable) {
      unsigned char d[32];
      char got[65];
      clxent_sha256_ex(msg, size, d, portable);
      hex(d, got);
      if (strcmp(got, known[k].digest))
        fail_msg("\"%.8s\"x%zu (%s): %s, want %s", known[k].text, known[k].repeat, portable ? "portable" : "default", got,
                 known[k].digest);
    }
    free(msg);
  }
}

/* Every length from 0 to 1100 (the 55/56/64-byte padding edges, many blocks) and a few large
 * ones, from an unaligned start: the default path (hardware where present) gives the portable
 * digest. */
static void test_paths_agree(void **state) {
  (void)state;
  const size_t big = (3u << 20) + 77;
  unsigned char *buf = malloc(big + 1);
  assert_non_null(buf);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i <= big; ++i) x ^= x << 13, x ^= x >> 7, x ^= x << 17, buf[i] = (unsigned char)x;
  static const size_t large[] = {4096, 65536 + 63, (1u << 20) + 1, (3u << 20) + 77};
  for (size_t n = 0; n <= 1100 + sizeof large / sizeof large[0]; ++n) {
    const size_t size = n <= 1100 ? n : large[n - 1101];
    unsigned char a[32], b[32];
    clxent_sha256_ex(buf + 1, size, a, 0);
    clxent_sha256_ex(buf + 1, size, b, 1);
    if (memcmp(a, b, 32)) {
      char ha[65], hb[65];
      hex(a, ha), hex(b, hb);
      fail_msg("%zu bytes: default %s, portable %s", size, ha, hb);
    }
  }
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_known_digests), cmocka_unit_test(test_paths_agree)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
