/* The plain C loop the PoCL path is measured against: the same work as clxent_softmax_xent
 * (hard labels, MEAN, loss and gradient) in three passes per row, rows spread over OpenMP threads.
 * Built with -O3 -march=native so that it is the best a straightforward C programmer gets. */
#include <math.h>

#include "c_loop.h"

double clxent_c_loop_softmax_xent(size_t n, size_t c, const float *logits, const int32_t *labels, float *grad) {
  const float scale = 1.0f / (float)n;
  double total = 0.0;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) reduction(+ : total)
#endif
  for (size_t i = 0; i < n; ++i) {
    const float *z = logits + i * c;
    float *g = grad + i * c;
    float m = -INFINITY;
    for (size_t j = 0; j < c; ++j) m = z[j] > m ? z[j] : m;
    float s = 0.0f;
    for (size_t j = 0; j < c; ++j) s += expf(z[j] - m);
    const float k = scale / s;
    for (size_t j = 0; j < c; ++j) g[j] = expf(z[j] - m) * k;
    g[labels[i]] -= scale;
    total += (double)((m - z[labels[i]]) + logf(s));
  }
  return total / (double)n;
}
