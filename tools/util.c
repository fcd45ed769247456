#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

double tool_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double tool_median(double *t, int k) {
  qsort(t, (size_t)k, sizeof *t, compare_doubles);
  return k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
}

static int starts_with_digit(const char *s) { return *s >= '0' && *s <= '9'; } /* strtoull takes "-1" */

int tool_parse_shape(const char *s, tool_shape *out) {
  char *end;
  if (!starts_with_digit(s)) return 0;
  const unsigned long long n = strtoull(s, &end, 10);
  if (end == s || (*end != 'x' && *end != 'X')) return 0;
  const char *c_text = end + 1;
  if (!starts_with_digit(c_text)) return 0;
  const unsigned long long c = strtoull(c_text, &end, 10);
  if (end == c_text || *end || n == 0 || c == 0) return 0;
  if (n > SIZE_MAX / 8 / c) return 0; /* n·c floats (and a second array) must be addressable */
  out->n = (size_t)n;
  out->c = (size_t)c;
  return 1;
}
