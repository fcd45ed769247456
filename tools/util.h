/* Small helpers of the command-line tool and the bench programs (not of the library): a clock,
 * the median of timings, and strict parsing of the numeric arguments (NxC shapes, counts) with
 * overflow-checked byte counts, so that every size is known to fit before anything is allocated. */
#ifndef CLXENT_TOOL_UTIL_H
#define CLXENT_TOOL_UTIL_H
#include <stddef.h>

#include "../host/clock.h" /* clxent_seconds, clxent_median: the library's clock source, compiled in */

/* A decimal count: the whole string, digits only (no sign, space, base prefix, exponent or
 * fraction), in [min, max]. Returns NULL and sets *out, or a message saying what is wrong
 * ("is not a whole number of digits", "is out of range 1..256"). */
const char *tool_parse_count(const char *s, unsigned long long min, unsigned long long max, unsigned long long *out);
/* tool_parse_count for an int in [min, max], 0 <= min <= max. */
const char *tool_parse_int(const char *s, int min, int max, int *out);

/* The ranges of --repeat (timed rounds) and --warmup (untimed rounds first). */
#define TOOL_MAX_REPEAT 256
#define TOOL_MAX_WARMUP 1000

/* The largest number of classes C: labels are int32. */
#define TOOL_MAX_CLASSES 2147483647u

typedef struct tool_shape { size_t n, c; } tool_shape;
/* "NxC" (or "NXC"): N, C counts as tool_parse_count, N >= 1, 1 <= C <= TOOL_MAX_CLASSES, N·C
 * within size_t. Returns NULL and sets *out, or a message saying what is wrong. */
const char *tool_parse_shape(const char *s, tool_shape *out);

/* *total += count · size, unless that overflows size_t: then returns 0 (*total unchanged). */
int tool_add_bytes(size_t *total, size_t count, size_t size);

/* Checks that `bytes` of host memory (the arrays a shape needs) fit this machine; prints why not
 * ("prog: --shape NxC needs ... of host memory") and returns the exit status (3), or 0 if they fit
 * or the machine's memory is unknown. */
int tool_check_host_memory(const char *prog, const tool_shape *shape, size_t bytes);

/* The value of option argv[*i] (argv[*i + 1], and *i advanced), or NULL after printing
 * "prog: OPTION needs a value" when it is missing. */
const char *tool_option_value(const char *prog, int argc, char **argv, int *i);

#endif
