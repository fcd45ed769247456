#define _POSIX_C_SOURCE 200809L /* sysconf */
#include "util.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Digits from s up to the first non-digit: *end, the value in *out; 0 if there is no digit or the
 * value overflows (then *out is meaningless). Written out rather than strtoull, which takes a
 * sign, leading space and (with base 0) prefixes, and depends on the locale. */
static int read_digits(const char *s, const char **end, unsigned long long *out) {
  unsigned long long v = 0;
  int overflow = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; ++p) {
    const unsigned d = (unsigned)(*p - '0');
    if (v > (ULLONG_MAX - d) / 10) overflow = 1;
    else v = v * 10 + d;
  }
  *end = p;
  *out = v;
  return p != s && !overflow;
}

static char message[160]; /* the tools are single-threaded */

const char *tool_parse_count(const char *s, unsigned long long min, unsigned long long max, unsigned long long *out) {
  const char *end;
  unsigned long long v;
  const int ok = read_digits(s, &end, &v);
  if (end == s || *end) return "is not a whole number (digits only)";
  if (!ok || v < min || v > max) {
    snprintf(message, sizeof message, "is out of range %llu..%llu", min, max);
    return message;
  }
  *out = v;
  return NULL;
}

const char *tool_parse_int(const char *s, int min, int max, int *out) {
  unsigned long long v;
  const char *why = tool_parse_count(s, (unsigned long long)min, (unsigned long long)max, &v);
  if (!why) *out = (int)v;
  return why;
}

const char *tool_parse_shape(const char *s, tool_shape *out) {
  const char *end;
  unsigned long long n, c;
  const int n_ok = read_digits(s, &end, &n);
  if (end == s || (*end != 'x' && *end != 'X')) return "is not NxC (two whole numbers, digits only)";
  const char *c_text = end + 1;
  const int c_ok = read_digits(c_text, &end, &c);
  if (end == c_text || *end) return "is not NxC (two whole numbers, digits only)";
  if (!n_ok || n == 0 || n > SIZE_MAX) {
    snprintf(message, sizeof message, "has N (rows) out of range 1..%zu", (size_t)SIZE_MAX);
    return message;
  }
  if (!c_ok || c == 0 || c > TOOL_MAX_CLASSES) {
    snprintf(message, sizeof message, "has C (classes) out of range 1..%u (labels are int32)", TOOL_MAX_CLASSES);
    return message;
  }
  if (n > SIZE_MAX / c) return "has N·C (values) overflowing size_t";
  out->n = (size_t)n;
  out->c = (size_t)c;
  return NULL;
}

int tool_add_bytes(size_t *total, size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return 0;
  if (count * size > SIZE_MAX - *total) return 0;
  *total += count * size;
  return 1;
}

int tool_check_host_memory(const char *prog, const tool_shape *shape, size_t bytes) {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return 0;
  const double have = (double)pages * (double)page;
  if ((double)bytes <= have) return 0;
  fprintf(stderr, "%s: --shape %zux%zu needs %.1f GiB of host memory; this machine has %.1f GiB\n", prog,
          shape->n, shape->c, (double)bytes / (1 << 30), have / (1 << 30));
  return 3;
}

const char *tool_option_value(const char *prog, int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "%s: %s needs a value\n", prog, argv[*i]);
    return NULL;
  }
  return argv[++*i];
}
