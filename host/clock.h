/* A monotonic clock in seconds, and the median of t[0..k) (sorts t; k >= 1). Used by the library
 * (group.c times its devices) and compiled into the tools as well (their timings): a helper, not
 * API, so the tools take this source rather than a library export. */
#ifndef CLXENT_CLOCK_H
#define CLXENT_CLOCK_H

double clxent_seconds(void);
double clxent_median(double *t, int k);

#endif
