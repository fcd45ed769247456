/*
 * Binary cross-entropy, elementwise: one work-item per value (the shape every device vectorises,
 * PoCL across work-items). The host launches them over the n·cols values of a batch with c = 1, so
 * a block of `rows` values starts at flat index first_row; value k is in column k mod cols.
 * loss receives the unscaled per-value loss; reduce.cl sums it. With pos_weight p (per column,
 * BCEWithLogitsLoss's rule) the positive term is weighted:
 *   loss = -[p·y ln a + (1-y) ln(1-a)],   dL/da = (a (1-y) - p·y (1-a)) / (a (1-a))
 * (the numerator is a - y for p = 1, written so that a = y = 1 gives exactly 0).
 */

inline float pos_weight_of(__global const float *pos_weight, ulong k, int cols) {
  return pos_weight ? pos_weight[k % (ulong)cols] : 1.0f;
}

/* From logits, sigmoid fused:  a = σ(z),  -ln a = softplus(-z),  -ln(1-a) = softplus(z), with
 *   softplus(±z) = max(±z, 0) + ln(1 + e^{-|z|})   (never overflows)
 *   dL/dz = S · (a (1-y) - p·y (1-a)),   a = σ(z) and 1-a = σ(-z) from e^{-|z|}: no overflow,
 *   and no 1 - a cancellation.
 * Comparisons instead of fmax, so that a NaN z reaches the loss. */
__kernel void sigmoid_xent(
    CLXENT_ROW_KERNEL_ARGS(store_t, logits, targets, unused_labels, pos_weight, cols, p, grad, loss, unused_lse)) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  const float8 p = call_params(p_host, dev_scales);
  const float z = LOAD(logits, i), y = LOAD(targets, i), pw = pos_weight_of(pos_weight, first_row + i, cols);
  const float e = exp(-fabs(z)), log1p_e = log1p(e); /* e in (0, 1]; NaN stays NaN */
  const float softplus_neg = (z < 0.0f ? -z : 0.0f) + log1p_e, softplus_pos = (z > 0.0f ? z : 0.0f) + log1p_e;
  loss[first_row + i] = pos_weight ? pw * y * softplus_neg + (1.0f - y) * softplus_pos
                                   : (z > 0.0f ? z : 0.0f) - z * y + log1p_e;
  if (grad) {
    const float a = z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    const float one_minus_a = z >= 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
    STORE(CLXENT_P_SCALE(p) * (pos_weight ? a * (1.0f - y) - pw * y * one_minus_a : a - y), grad, i);
  }
}

/* From probabilities (PyTorch's BCELoss): each log clamped at -100 so a = 0 or 1 stays finite,
 * dL/da divided by max(a (1 - a), 1e-12). The clamps are comparisons, not fmax, because fmax
 * would swallow a NaN. */
__kernel void bce(CLXENT_ROW_KERNEL_ARGS(store_t, probs, targets, unused_labels, pos_weight, cols, p, grad, loss,
                                         unused_lse)) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  const float8 p = call_params(p_host, dev_scales);
  const float a = LOAD(probs, i), y = LOAD(targets, i), pw = pos_weight_of(pos_weight, first_row + i, cols);
  float log_a = log(a), log_1ma = log1p(-a);
  if (log_a < -100.0f) log_a = -100.0f;
  if (log_1ma < -100.0f) log_1ma = -100.0f;
  loss[first_row + i] = -(pw * y * log_a + (1.0f - y) * log_1ma);
  if (grad) {
    float d = a * (1.0f - a);
    if (d < 1e-12f) d = 1e-12f;
    STORE(CLXENT_P_SCALE(p) * (pos_weight ? a * (1.0f - y) - pw * y * (1.0f - a) : a - y) / d, grad, i);
  }
}
