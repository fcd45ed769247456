/*
 * Softmax cross-entropy over a slice of the classes (experimental: clxent_softmax_slice_stats and
 * clxent_softmax_slice_grad, for a vocabulary split across processes). A block holds rows of the
 * columns [off, off + c) of c_total; labels are global class indices. With u = cap(z) (softcap,
 * math.cl) and w the slice's class weights (1 without):
 *
 *   stats, per row i, over the slice only:
 *     m_i  = max_j u_ij                                  (-inf if every u is -inf)
 *     s_i  = Σ_j e^{u_ij - m_i}                          (reference 0 when m_i = -inf)
 *     d_i  = Σ_{j: w_j ≠ 0} w_j (m_i - u_ij)             (label smoothing's term; only if asked)
 *     u_y, w_y  of the label y_i - off when it lies in the slice, else 0 and 0
 *   The caller combines the slices' stats (max, rescaled sums) into the row's global
 *   lse = m + ln s and loss, exactly as kernels/softmax_xent.cl's pass 1 does within one row:
 *   s = Σ_r s_r e^{m_r - m}, d = Σ_r d_r + W_r (m - m_r).
 *
 *   grad, given per row the global lse_i, the label's global weight w_{y_i} and the call's scales
 *   S, S_z (times the row's upstream gradient g_i if given), ε, λ, W = Σ_j w_j over all c_total
 *   classes, writes softmax_xent.cl's gradient restricted to the slice:
 *     dL/dz_ij = (A_i e^{u_ij - lse_i} - B w_j - K_i [off + j = y_i]) u'_ij
 *     A_i = S ((1-ε) w_{y_i} + ε W / c_total) + 2 λ S_z lse_i,   B = S ε / c_total,
 *     K_i = S (1-ε) w_{y_i}
 *   (ignored rows: 0). Every element is read before the same work-item writes it: grad may be
 *   the logits themselves.
 *
 * One work-item per row with CLXENT_VEC-wide loops (the row-per-item variant's shape; on GPUs the
 * same kernels serve, unoptimised). Two reads of the logits in all: one per kernel. Typed
 * (storage.cl): the logits and the gradient in the call's storage type, the math in float32, the
 * label's gradient element computed from scratch and rounded once.
 */

__kernel void softmax_slice_stats(const ulong rows, const ulong c, const long off, __global const store_t *logits,
                                  __global const int *labels, __global const float *weight, const int ignore_index,
                                  const float cap, const int smooth, __global float *stats) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  __global const store_t *z = logits + i * c;
  const ulong cv = c - c % CLXENT_VEC;
  /* the cap is increasing: m = cap(max z) */
  floatv hv = (floatv)(-INFINITY);
  for (ulong j = 0; j < cv; j += CLXENT_VEC) hv = fmax(hv, LOADV(z, j));
  float zmax = cv ? hmax(hv) : -INFINITY;
  for (ulong j = cv; j < c; ++j) zmax = fmax(zmax, LOAD(z, j));
  const float m = cap_logit(zmax, cap), ref = m == -INFINITY ? 0.0f : m;
  floatv sv = (floatv)(0.0f), dv = (floatv)(0.0f);
  for (ulong j = 0; j < cv; j += CLXENT_VEC) {
    floatv u = LOADV(z, j);
    if (cap != 0.0f) u = cap_logitv(u, cap);
    sv += clxent_expv(u - ref);
    if (smooth) {
      const floatv w = weight ? vloadv(0, weight + j) : (floatv)(1.0f);
      dv += select(w * (m - u), (floatv)(0.0f), w == (floatv)(0.0f));
    }
  }
  float s = hsum(sv), d = hsum(dv);
  for (ulong j = cv; j < c; ++j) {
    const float u = cap_logit(LOAD(z, j), cap), w = weight ? weight[j] : 1.0f;
    s += clxent_exp(u - ref);
    if (smooth && w != 0.0f) d += w * (m - u);
  }
  const int y = labels[i];
  const long yl = (long)y - off;
  const int owns = y != ignore_index && yl >= 0 && yl < (long)c;
  __global float *out = stats + i * CLXENT_SLICE_STRIDE;
  out[0] = m, out[1] = s, out[2] = d;
  out[3] = owns ? cap_logit(LOAD(z, yl), cap) : 0.0f;
  out[4] = owns ? (weight ? weight[yl] : 1.0f) : 0.0f;
}

/* row_scalars: per row 0 or [rows] floats each: lse, the label's global weight (NULL: 1) and the
 * upstream gradient (NULL: 1). */
__kernel void softmax_slice_grad(const ulong rows, const ulong c, const long off, const float inv_c_total,
                                 __global const store_t *logits, __global const int *labels,
                                 __global const float *weight, const int ignore_index, const clxent_params p,
                                 __global const float *row_lse, __global const float *row_wy,
                                 __global const float *row_scale, __global store_t *grad) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  __global const store_t *z = logits + i * c;
  __global store_t *g = grad + i * c;
  const ulong cv = c - c % CLXENT_VEC;
  const int y = labels[i];
  if (y == ignore_index) {
    for (ulong j = 0; j < cv; j += CLXENT_VEC) STOREV((floatv)(0.0f), g, j);
    for (ulong j = cv; j < c; ++j) STORE(0.0f, g, j);
    return;
  }
  const long yl = (long)y - off;
  const int owns = yl >= 0 && yl < (long)c;
  const float zy = owns ? LOAD(z, yl) : 0.0f; /* before an in-place pass overwrites it */
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss;
  const float g_up = row_scale ? row_scale[i] : 1.0f, wy = row_wy ? row_wy[i] : 1.0f, lse = row_lse[i];
  const float S = p.scale * g_up, Sz = p.z_scale * g_up;
  const float A = S * ((1.0f - eps) * wy + eps * p.weight_sum * inv_c_total) + 2.0f * zl * lse * Sz;
  const float B = S * eps * inv_c_total, K = S * (1.0f - eps) * wy;
  for (ulong j = 0; j < cv; j += CLXENT_VEC) {
    const floatv zj = LOADV(z, j);
    floatv slope = (floatv)(1.0f), u = cap != 0.0f ? cap_logit_slopev(zj, cap, &slope) : zj;
    floatv gv = A * clxent_expv(u - lse);
    if (B != 0.0f) gv -= B * (weight ? vloadv(0, weight + j) : (floatv)(1.0f));
    STOREV(cap != 0.0f ? gv * slope : gv, g, j);
  }
  for (ulong j = cv; j < c; ++j) {
    float slope;
    const float u = cap_logit_slope(LOAD(z, j), cap, &slope);
    STORE((A * clxent_exp(u - lse) - B * (weight ? weight[j] : 1.0f)) * slope, g, j);
  }
  if (owns) { /* the label's element, from scratch */
    float slope;
    const float u = cap_logit_slope(zy, cap, &slope);
    STORE((A * clxent_exp(u - lse) - B * (weight ? weight[yl] : 1.0f) - K) * slope, g, yl);
  }
}
