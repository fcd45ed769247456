/*
 * The kernels' scalars for a call's options and reduction (clxent_params, kernels/clxent_defs.h).
 *
 * The cross-entropy terms divide by `divisor` (the weighted or plain count of rows), the z-loss by
 * `counted` rows. The kernels add each row's z-loss term times z_loss_row = divisor / counted to
 * its loss, so that the one division of Σ_i loss_i by `divisor` gives each term its own divisor
 * (PyTorch's for the cross-entropy, Liger's for the z-loss). A zero divisor (all rows ignored, or
 * all their weights 0) gives the loss x/0 as in PyTorch: NaN (0/0), or +inf when label smoothing
 * leaves a positive x from the other classes' weights; the gradient is 0.
 */
#include <string.h>

#include "internal.h"

clxent_params clxent_loss_params(const clxent_opts *o, double divisor, size_t counted, float weight_sum,
                                 float *reduce_divisor) {
  clxent_params p;
  memset(&p, 0, sizeof p);
  const int mean = o->reduction == CLXENT_MEAN;
  *reduce_divisor = mean ? (float)divisor : 1.0f;
  p.smoothing = o->label_smoothing;
  p.z_loss = o->z_loss;
  p.softcap = o->softcap;
  p.scale = !mean ? 1.0f : divisor > 0 ? 1.0f / (float)divisor : 0.0f;
  p.z_scale = !mean ? 1.0f : counted > 0 ? 1.0f / (float)counted : 0.0f;
  p.z_loss_row = !mean ? 1.0f : (divisor > 0 && counted > 0) ? (float)(divisor / (double)counted) : 0.0f;
  p.weight_sum = weight_sum;
  return p;
}
