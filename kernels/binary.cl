/*
 * Binary cross-entropy, elementwise: one work-item per value (the shape every device vectorises,
 * PoCL across work-items). A launch covers `count` values of the batch's n·cols, starting at flat
 * index `first` (the batch's value k is in column k mod cols); loss[i] receives the unscaled loss
 * of the launch's value i, which the host streams out or folds into chunk sums (reduce.cl), and
 * grad[i] its gradient times `scale` (the reduction's). With pos_weight p (per column,
 * BCEWithLogitsLoss's rule) the positive term is weighted:
 *   loss = -[p·y ln a + (1-y) ln(1-a)],   dL/da = (a (1-y) - p·y (1-a)) / (a (1-a))
 * (the numerator is a - y for p = 1, written so that a = y = 1 gives exactly 0).
 * row_scale, if given, holds the launch's upstream gradients (opts->grad_output under NONE), one per
 * value like loss[i]: value i's gradient is multiplied by it (the loss is not).
 */

#define BINARY_ARGS(input)                                                                          \
  const ulong count, const ulong first, __global const store_t *input, __global const store_t *targets, \
      __global const float *pos_weight, const int cols, const float scale, __global store_t *grad,   \
      __global float *loss, __global const float *row_scale

inline float pos_weight_of(__global const float *pos_weight, ulong k, int cols) {
  return pos_weight ? pos_weight[k % (ulong)cols] : 1.0f;
}

/* From logits, sigmoid fused:  a = σ(z),  -ln a = softplus(-z),  -ln(1-a) = softplus(z), with
 *   softplus(±z) = max(±z, 0) + ln(1 + e^{-|z|})   (never overflows)
 *   dL/dz = S · (a (1-y) - p·y (1-a)),   a = σ(z) and 1-a = σ(-z) from e^{-|z|}: no overflow,
 *   and no 1 - a cancellation; at z = ±inf both are exact (a = 1 or 0).
 * Comparisons instead of fmax, so that a NaN z reaches the loss. */
__kernel void sigmoid_xent(BINARY_ARGS(logits)) {
  const ulong i = get_global_id(0);
  if (i >= count) return;
  const float z = LOAD(logits, i), y = LOAD(targets, i), pw = pos_weight_of(pos_weight, first + i, cols);
  const float e = exp(-fabs(z)), log1p_e = log1p(e); /* e in (0, 1]; NaN stays NaN */
  const float softplus_neg = (z < 0.0f ? -z : 0.0f) + log1p_e, softplus_pos = (z > 0.0f ? z : 0.0f) + log1p_e;
  /* a term whose weight is 0 adds 0, also where its softplus is +inf (z = ±inf): the limits
   * z → +inf, y = 1 and z → -inf, y = 0 are 0, not inf - inf. One formula with and without
   * pos_weight (p = 1), so that pos_weight all ones gives the same bits as none. */
  const float wp = pw * y, wn = 1.0f - y;
  loss[i] = (wp == 0.0f ? 0.0f : wp * softplus_neg) + (wn == 0.0f ? 0.0f : wn * softplus_pos);
  if (grad) {
    const float a = z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    const float one_minus_a = z >= 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
    const float s = row_scale ? scale * row_scale[i] : scale;
    STORE(s * (a * wn - wp * one_minus_a), grad, i);
  }
}

/* From probabilities (PyTorch's BCELoss): each log clamped at -100 so a = 0 or 1 stays finite,
 * dL/da divided by max(a (1 - a), 1e-12). The clamps are comparisons, not fmax, because fmax
 * would swallow a NaN. */
__kernel void bce(BINARY_ARGS(probs)) {
  const ulong i = get_global_id(0);
  if (i >= count) return;
  const float a = LOAD(probs, i), y = LOAD(targets, i), pw = pos_weight_of(pos_weight, first + i, cols);
  float log_a = log(a), log_1ma = log1p(-a);
  if (log_a < -100.0f) log_a = -100.0f;
  if (log_1ma < -100.0f) log_1ma = -100.0f;
  loss[i] = -(pw * y * log_a + (1.0f - y) * log_1ma);
  if (grad) {
    float d = a * (1.0f - a);
    if (d < 1e-12f) d = 1e-12f;
    const float s = row_scale ? scale * row_scale[i] : scale;
    STORE(s * (pos_weight ? a * (1.0f - y) - pw * y * (1.0f - a) : a - y) / d, grad, i);
  }
}
