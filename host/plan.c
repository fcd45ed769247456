/*
 * The kernels' scalars for a call's options and reduction (clxent_params, kernels/clxent_defs.h).
 *
 * The cross-entropy terms divide by `divisor` (the weighted or plain count of rows), the z-loss by
 * `counted` rows. The kernels add each row's z-loss term times z_loss_row = divisor / counted to
 * its loss, so that the one division of Σ_i loss_i by `divisor` gives each term its own divisor
 * (PyTorch's for the cross-entropy, Liger's for the z-loss).
 *
 * A zero divisor under MEAN, as in PyTorch: the loss is NaN (never +inf, even where label
 * smoothing leaves a positive sum); the gradient is 0 when no row counts (all ignored), and NaN on
 * the counted rows when they all have class weight 0 (PyTorch's 0/0; ignored rows stay 0).
 *
 * opts->mean_denominator D > 0 (MEAN) replaces both divisors: Σ_i loss_i (z-loss terms included,
 * z_loss_row = 1) and every gradient term divide by D, so no divisor is ever zero.
 *
 * opts->grad_output under MEAN and SUM, one value g, multiplies the gradient's scales (scale and
 * z_scale) and nothing else: the loss is not scaled. Under NONE its values reach the kernels as
 * row_scale instead. The scales of a call without it are exactly those of earlier releases.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clxent_params clxent_loss_params(const clxent_opts *o, double divisor, size_t counted, float weight_sum,
                                 float *reduce_divisor) {
  clxent_params p;
  memset(&p, 0, sizeof p);
  const int mean = o->reduction == CLXENT_MEAN;
  *reduce_divisor = !mean ? 1.0f : divisor > 0 ? (float)divisor : NAN;
  p.smoothing = o->label_smoothing;
  p.z_loss = o->z_loss;
  p.softcap = o->softcap;
  p.scale = !mean ? 1.0f : divisor > 0 ? 1.0f / (float)divisor : counted > 0 ? NAN : 0.0f;
  p.z_scale = !mean ? 1.0f : counted > 0 ? 1.0f / (float)counted : 0.0f;
  p.z_loss_row = !mean ? 1.0f : (divisor > 0 && counted > 0) ? (float)(divisor / (double)counted) : 0.0f;
  p.weight_sum = weight_sum;
  if (mean && o->mean_denominator > 0) {
    const float d = (float)o->mean_denominator; /* validated: a normal float */
    *reduce_divisor = d;
    p.scale = p.z_scale = 1.0f / d;
    p.z_loss_row = 1.0f;
  }
  if (o->grad_output && o->reduction != CLXENT_NONE) {
    p.scale *= o->grad_output[0];
    p.z_scale *= o->grad_output[0];
  }
  return p;
}

const float *clxent_row_scale(const clxent_opts *o, const void *grad) {
  return o->reduction == CLXENT_NONE && grad ? o->grad_output : NULL;
}

clxent_status clxent_scaled_weights(clxent_ctx *ctx, const float *w, size_t c, double magnitude, float **out,
                                    float *sum, int *shift) {
  *out = NULL;
  *shift = 0;
  /* within 2^±64 nothing the kernels compute from the weights and 1/divisor can overflow: no copy,
   * and the bits of every earlier release */
  if (!(magnitude > 0) || (magnitude >= 0x1p-64 && magnitude <= 0x1p64)) return CLXENT_OK;
  int e, top = 0;
  frexp(magnitude, &e);
  float largest = 0.0f;
  for (size_t j = 0; j < c; ++j) largest = w[j] > largest ? w[j] : largest;
  frexpf(largest, &top);
  if (1 - e > 126 - top) e = top - 125; /* the largest weight stays finite (weights spanning over
                                           2^126 keep what precision floats have) */
  float *scaled = malloc(c * sizeof *scaled);
  if (!scaled) return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "malloc of %zu scaled class weights failed", c);
  double total = 0.0;
  for (size_t j = 0; j < c; ++j) total += scaled[j] = ldexpf(w[j], 1 - e);
  *out = scaled;
  *sum = (float)total;
  *shift = 1 - e;
  return CLXENT_OK;
}
