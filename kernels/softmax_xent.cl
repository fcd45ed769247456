/*
 * Fused softmax cross-entropy: loss and gradient for a block of `rows` rows of `c` logits.
 *
 *   lse_i    = m_i + ln Σ_j e^{z_ij - m_i},   m_i = max_j z_ij        (log-sum-exp, overflow-free)
 *   a_ij     = e^{z_ij - lse_i}                                       (softmax)
 *   loss_i   = -Σ_j t_ij ln a_ij = Σ_j t_ij (lse_i - z_ij)            (hard label y: lse_i - z_iy)
 *   grad_ij  = scale · (a_ij · Σ_k t_ik - t_ij)                       (hard label: a_ij - [j == y])
 *
 * The block's rows are rows first_row.. of the batch: labels and row_loss are indexed by batch row,
 * logits, targets and grad by block row (the host may stream a batch through in blocks). row_loss
 * receives the unscaled per-row loss; the batch reduction is a separate fixed-order pass (reduce.cl).
 * grad may be 0 (loss only) or the logits buffer itself (in place): every element is read before
 * the same work-item overwrites it.
 */

#if CLXENT_ROW_PER_ITEM

/* One work-item per row. Three passes over the row, the last two over the gradient while it is
 * still in cache: max; e = exp(z - m) stored in grad and summed; grad *= scale / Σe. */
__kernel void softmax_xent_hard(CLXENT_ROW_KERNEL_ARGS(logits, unused_targets, labels, ignore_index, grad, row_loss)) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  __global const float *z = logits + i * c;
  __global float *g = grad ? grad + i * c : 0;
  const int y = labels[first_row + i];
  if (y == ignore_index) {
    row_loss[first_row + i] = 0.0f;
    if (g) row_fill(g, c, 0.0f);
    return;
  }
  const float m = row_max(z, c);
  const float zy = z[y];
  const float s = row_exp_sum(z, g, c, m);
  row_loss[first_row + i] = (m - zy) + log(s); /* lse - z_y without cancelling large m */
  if (g) {
    row_scale(g, c, scale / s);
    g[y] -= scale;
  }
}

__kernel void softmax_xent_soft(CLXENT_ROW_KERNEL_ARGS(logits, targets, unused_labels, unused_int, grad, row_loss)) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  __global const float *z = logits + i * c;
  __global const float *t = targets + i * c;
  __global float *g = grad ? grad + i * c : 0;
  const float m = row_max(z, c);
  /* Σ t (m - z) and Σ t, skipping t = 0 so that a -inf mask with no target mass adds 0. These
   * read z before row_exp_sum may overwrite it in place. */
  const ulong cv = c - c % CLXENT_VEC;
  floatv tdv = (floatv)(0.0f), tv = (floatv)(0.0f);
  for (ulong j = 0; j < cv; j += CLXENT_VEC) {
    const floatv tj = vloadv(0, t + j);
    tdv += select(tj * (m - vloadv(0, z + j)), (floatv)(0.0f), tj == (floatv)(0.0f));
    tv += tj;
  }
  float td = hsum(tdv), tsum = hsum(tv);
  for (ulong j = cv; j < c; ++j) {
    if (t[j] != 0.0f) td += t[j] * (m - z[j]);
    tsum += t[j];
  }
  const float s = row_exp_sum(z, g, c, m);
  const float log_s = log(s);
  row_loss[first_row + i] = td + tsum * log_s;
  if (g) {
    const float k = scale * tsum / s;
    for (ulong j = 0; j < cv; j += CLXENT_VEC)
      vstorev(vloadv(0, g + j) * k - scale * vloadv(0, t + j), 0, g + j);
    for (ulong j = cv; j < c; ++j) g[j] = g[j] * k - scale * t[j];
  }
}

#else /* one work-group per row */

/* One work-group per row: each item keeps a running log-sum-exp over a strided slice (coalesced
 * loads), the group merges them in a fixed tree, then a second pass writes the gradient. */
__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1)))
void softmax_xent_hard(CLXENT_ROW_KERNEL_ARGS(logits, unused_targets, labels, ignore_index, grad, row_loss)) {
  __local float2 scratch[CLXENT_GROUP_SIZE];
  const ulong i = get_group_id(0);
  const uint lid = get_local_id(0);
  if (i >= rows) return; /* uniform across the group */
  __global const float *z = logits + i * c;
  __global float *g = grad ? grad + i * c : 0;
  const int y = labels[first_row + i];
  if (y == ignore_index) {
    if (g) for (ulong j = lid; j < c; j += CLXENT_GROUP_SIZE) g[j] = 0.0f;
    if (lid == 0) row_loss[first_row + i] = 0.0f;
    return;
  }
  float2 st = (float2)(-INFINITY, 0.0f);
  for (ulong j = lid; j < c; j += CLXENT_GROUP_SIZE) st = lse_push(st, z[j]);
  st = group_lse(st, scratch);
  const float zy = z[y];
  if (lid == 0) row_loss[first_row + i] = (st.x - zy) + log(st.y);
  if (g) {
    const float m = st.x, log_s = log(st.y); /* a = e^{(z - m) - ln s}: z - m is exact near m */
    barrier(CLK_GLOBAL_MEM_FENCE); /* z[y] is read by all before anyone overwrites it in place */
    for (ulong j = lid; j < c; j += CLXENT_GROUP_SIZE)
      g[j] = scale * (exp((z[j] - m) - log_s) - (j == (ulong)y ? 1.0f : 0.0f));
  }
}

__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1)))
void softmax_xent_soft(CLXENT_ROW_KERNEL_ARGS(logits, targets, unused_labels, unused_int, grad, row_loss)) {
  __local float2 scratch[CLXENT_GROUP_SIZE];
  const ulong i = get_group_id(0);
  const uint lid = get_local_id(0);
  if (i >= rows) return;
  __global const float *z = logits + i * c;
  __global const float *t = targets + i * c;
  __global float *g = grad ? grad + i * c : 0;
  float2 st = (float2)(-INFINITY, 0.0f);
  float tsum = 0.0f;
  for (ulong j = lid; j < c; j += CLXENT_GROUP_SIZE) {
    st = lse_push(st, z[j]);
    tsum += t[j];
  }
  st = group_lse(st, scratch);
  tsum = group_sum(tsum, (__local float *)scratch);
  const float m = st.x, log_s = log(st.y);
  /* loss = Σ t (m - z) + Σt · ln s, accumulated in the gradient pass: one read of z and t serves
   * both, and m - z keeps its precision where lse - z would cancel. */
  float td = 0.0f;
  for (ulong j = lid; j < c; j += CLXENT_GROUP_SIZE) {
    const float zj = z[j], tj = t[j];
    if (tj != 0.0f) td += tj * (m - zj);
    if (g) g[j] = scale * (exp((zj - m) - log_s) * tsum - tj);
  }
  td = group_sum(td, (__local float *)scratch);
  if (lid == 0) row_loss[first_row + i] = td + tsum * log_s;
}

#endif
