/*
 * Binary cross-entropy, elementwise: one work-item per value (the shape every device vectorises,
 * PoCL across work-items); the host launches them with c = 1, so a block of `rows` values starts
 * at batch index first_row. loss receives the unscaled per-value loss; reduce.cl sums it.
 */

/* From logits, sigmoid fused:  a = σ(z),  loss = -[y ln a + (1-y) ln(1-a)]
 *                                        = max(z, 0) - z·y + ln(1 + e^{-|z|})   (no overflow)
 *                              dL/dz = scale · (a - y), σ(z) from e^{-|z|} so it never overflows. */
__kernel void sigmoid_xent(CLXENT_ROW_KERNEL_ARGS(logits, targets, unused_labels, unused_int, grad, loss)) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  const float z = logits[i], y = targets[i];
  const float e = exp(-fabs(z)); /* in (0, 1]; NaN stays NaN */
  loss[first_row + i] = (z > 0.0f ? z : 0.0f) - z * y + log1p(e);
  if (grad) {
    const float a = z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    grad[i] = scale * (a - y);
  }
}

/* From probabilities (PyTorch's BCELoss): each log clamped at -100 so a = 0 or 1 stays finite,
 * dL/da = scale · (a - y) / max(a (1 - a), 1e-12). The clamps are written as comparisons, not fmax,
 * because fmax would swallow a NaN. */
__kernel void bce(CLXENT_ROW_KERNEL_ARGS(probs, targets, unused_labels, unused_int, grad, loss)) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  const float a = probs[i], y = targets[i];
  float log_a = log(a), log_1ma = log1p(-a);
  if (log_a < -100.0f) log_a = -100.0f;
  if (log_1ma < -100.0f) log_1ma = -100.0f;
  loss[first_row + i] = -(y * log_a + (1.0f - y) * log_1ma);
  if (grad) {
    float d = a * (1.0f - a);
    if (d < 1e-12f) d = 1e-12f;
    grad[i] = scale * (a - y) / d;
  }
}
