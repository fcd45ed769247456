/* Public structs as older headers laid them out, for the tests that a library reads a caller's
 * smaller struct (size-versioned structs grow only at the end). */
#ifndef CLXENT_TESTS_OLD_LAYOUTS_H
#define CLXENT_TESTS_OLD_LAYOUTS_H

#include <stddef.h>
#include <stdint.h>

#include "clxent.h"

/* clxent_tuning as it ended at build_options, before own_math was added. */
typedef struct tuning_before_own_math {
  size_t size;
  clxent_variant variant;
  unsigned vector_width;
  size_t group_size, row_threads;
  uint64_t block_bytes;
  clxent_switch zero_copy;
  const double *split;
  size_t split_count;
  const char *build_options;
} tuning_before_own_math;

#endif
