/*
 * libFuzzer harness for the settings (host/config.c): any value of any CLXENT_* variable, and any
 * clxent_config / clxent_tuning contents, must give CLXENT_OK or CLXENT_ERR_INVALID_ARG at once
 * (no hang, no crash), and an accepted value must be one the rest of the library can use.
 * Input: byte 0 picks the variable, byte 1 picks what the config sets (bit 3: own_math, from bits
 * 4-5, so that the older seeds read as before), then up to 40 bytes of tuning fields, then the
 * value (up to NUL). Seeds: fuzz/corpus_env.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#define CLXENT_EXPERIMENTAL_API
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const names[] = {"CLXENT_VARIANT",   "CLXENT_VEC",         "CLXENT_GROUP_SIZE",
                                    "CLXENT_ROW_THREADS", "CLXENT_MAX_ALLOC", "CLXENT_BLOCK_BYTES",
                                    "CLXENT_ZERO_COPY", "CLXENT_SPLIT",       "CLXENT_CACHE",
                                    "CLXENT_CACHE_DIR", "CLXENT_BUILD_OPTIONS", "CLXENT_OWN_MATH"};
#define NAMES (sizeof names / sizeof names[0])

static uint64_t take(const uint8_t **p, size_t *left, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v = v << 8 | (*left ? (--*left, *(*p)++) : 0);
  return v;
}

static int is_pow2_or_0(uint64_t x) { return !(x & (x - 1)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *p = data;
  size_t left = size;
  const char *name = names[take(&p, &left, 1) % NAMES];
  const unsigned what = (unsigned)take(&p, &left, 1);
  clxent_tuning t = CLXENT_TUNING_INIT;
  double split[4];
  t.variant = (clxent_variant)(take(&p, &left, 1) % 4);
  t.vector_width = (unsigned)take(&p, &left, 1);
  t.group_size = (size_t)take(&p, &left, 8);
  t.row_threads = (size_t)take(&p, &left, 8);
  t.block_bytes = take(&p, &left, 8);
  t.zero_copy = (clxent_switch)(take(&p, &left, 1) % 4);
  t.split_count = (size_t)(take(&p, &left, 1) % 5);
  for (size_t k = 0; k < 4; ++k) {
    const uint64_t bits = take(&p, &left, 2) << 48 | 0x3ff0000000000000ull;
    memcpy(&split[k], &bits, sizeof split[k]);
  }
  t.split = t.split_count ? split : NULL;
  char value[64];
  size_t n = 0;
  while (n + 1 < sizeof value && left && *p) value[n++] = (char)*p, ++p, --left;
  value[n] = '\0';
  clxent_config c = CLXENT_CONFIG_INIT;
  if (what & 1) c.tuning = &t;
  if (what & 2) c.max_alloc = t.block_bytes;
  if (what & 4) c.cache = t.zero_copy;
  if (what & 8) t.own_math = (clxent_switch)((what >> 4) % 4);

  setenv(name, value, 1);
  clxent_settings s;
  const clxent_status st = clxent_resolve_settings(&c, &s);
  unsetenv(name);
  if (st != CLXENT_OK && st != CLXENT_ERR_INVALID_ARG) abort();
  if (st != CLXENT_OK) return 0;
  /* what was accepted is usable */
  if ((unsigned)s.variant > CLXENT_VARIANT_GROUP || (unsigned)s.zero_copy > CLXENT_OFF || (unsigned)s.cache > CLXENT_OFF ||
      (unsigned)s.own_math > CLXENT_OFF)
    abort();
  if (s.vector_width && s.vector_width != 4 && s.vector_width != 8 && s.vector_width != 16) abort();
  if (!is_pow2_or_0(s.group_size) || !is_pow2_or_0(s.row_threads)) abort();
  if (s.split_count > CLXENT_MAX_MEMBERS) abort();
  for (size_t k = 0; k < s.split_count; ++k)
    if (!(s.split[k] > 0) || !isfinite(s.split[k])) abort();
  return 0;
}
