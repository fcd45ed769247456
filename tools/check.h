#ifndef CLXENT_CHECK_H
#define CLXENT_CHECK_H
#include <stdint.h>

#include "clxent.h"

/* `clxent check ...`: argv[0] is "check". Returns the process exit code. */
int clxent_check_main(int argc, char **argv);
/* float → 16-bit storage (f16 or bf16 bits), round to nearest even; tiny values (|f| < 2^-14)
 * become 0. Written apart from the library so that the self-test does not trust its conversions;
 * the benchmark uses it to make its 16-bit inputs. */
uint16_t clxent_tool_to_storage(float f, clxent_dtype t);
#endif
