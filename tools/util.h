/* Small helpers of the command-line tool and the bench programs (not of the library): a clock,
 * the median of timings, and the NxC shape argument. */
#ifndef CLXENT_TOOL_UTIL_H
#define CLXENT_TOOL_UTIL_H
#include <stddef.h>

/* A monotonic clock, in seconds. */
double tool_seconds(void);
/* The median of t[0..k) (sorts t); k >= 1. */
double tool_median(double *t, int k);

typedef struct tool_shape { size_t n, c; } tool_shape;
/* "NxC" (or "NXC") with N, C >= 1 into *out; returns 0 on anything else. */
int tool_parse_shape(const char *s, tool_shape *out);

#endif
