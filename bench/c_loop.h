#ifndef CLXENT_C_LOOP_H
#define CLXENT_C_LOOP_H
#include <stddef.h>
#include <stdint.h>
/* Returns the MEAN loss; writes the gradient. */
double clxent_c_loop_softmax_xent(size_t n, size_t c, const float *logits, const int32_t *labels, float *grad);
#endif
