/*
 * Fused linear + softmax cross-entropy (clxent_linear_xent): the loss of a language-model head
 * and its gradients, from the hidden states and the weight matrix, without the logits ever
 * stored whole.
 *
 *   z_ij = Σ_k h_ik w_jk + b_j          h [n][d] hidden, w [v][d] (row j: class j), b [v] or 0
 *   then the softmax cross-entropy of kernels/softmax_xent.cl on z, with every option:
 *   u_ij = cap(z_ij), lse_i = m_i + ln s_i, a_ij = e^{u_ij - lse_i},
 *   τ_ij = w_j ((1-ε)[j = y_i] + ε/c),  loss_i = Σ_j τ_ij (lse_i - u_ij) + λ lse_i²
 *   G_ij = dJ/dz_ij = (k_i e^{u_ij - m_i} - B w_j - [j = y_i] K_i) u'_ij      (the row kernel's)
 *        k_i = (S((1-ε) w_{y_i} + ε W / c) + 2 λ S_z lse_i) / s_i,  B = S ε / c,  K_i = S (1-ε) w_{y_i}
 *   dJ/dh_ik = Σ_j G_ij w_jk        dJ/dw_jk = Σ_i G_ij h_ik        dJ/db_j = Σ_i G_ij
 *
 * The host walks the batch in chunks of R rows and each row chunk in chunks of V classes
 * (host/linear.c). Per row chunk:
 *   forward   for each class chunk: linear_logits puts the R×V block of z in a scratch buffer;
 *             linear_stats folds it into each row's running (m, s) (the online softmax: s is
 *             rescaled by e^{m_old - m_new} when m grows), the smoothing sum Σ_j w_j (m - u_j)
 *             relative to the running m, and u_y; the last chunk turns the state into loss_i and
 *             the gradient's k_i;
 *   backward  for each class chunk: the same block of z again (the same bits: the same kernel on
 *             the same operands), linear_grad turns it into G in place, then
 *             grad_hidden[rows] += G · w[chunk] (linear_dhidden), grad_weight[chunk] += Gᵀ · h[rows]
 *             (linear_dweight), grad_bias[chunk] += Σ_i G (linear_dbias).
 * Each output element is owned by one work-item per launch, which starts from the value in memory
 * (or 0 on the first chunk) and adds the chunk's terms one by one in index order: so each element
 * is the sum of its terms in increasing j (grad_hidden) or i (grad_weight, grad_bias) whatever the
 * chunk sizes, with no atomics — the same bits run after run and for any chunking. The logits'
 * sums over k run in a fixed order too (VEC-wide partial sums, then hsum, then the tail).
 *
 * Register tiles: a work-item computes LIN_TR × LIN_TC logits (dot products of VEC-wide pieces of
 * h and w rows), LIN_HR rows × LIN_HK vectors of grad_hidden, LIN_WC classes × LIN_HK vectors of
 * grad_weight: loops a CPU compiler (PoCL) vectorises within a work-item, no barriers.
 */

#define LIN_TR 4
#define LIN_TC 2
#define LIN_HR 4
#define LIN_HK 2
#define LIN_WC 4
/* floats of per-row state kept across a row chunk's class chunks */
#define LIN_STATE 8
#define LIN_M 0
#define LIN_S 1
#define LIN_WDEV 2
#define LIN_WSUM 3
#define LIN_ZY 4
#define LIN_K 5

/* z[r][c] = h[r]·w[c] + b[c] for the R×V block; h, w rows of d floats. */
__kernel void linear_logits(const ulong R, const ulong V, const ulong d, __global const float *hidden,
                            const ulong h_off, __global const float *weight, const ulong w_off,
                            __global const float *bias, const ulong b_off, __global float *z, const ulong ldz) {
  const ulong c0 = get_global_id(0) * LIN_TC, r0 = get_global_id(1) * LIN_TR;
  if (c0 >= V || r0 >= R) return;
  __global const float *h[LIN_TR];
  __global const float *w[LIN_TC];
  for (uint t = 0; t < LIN_TR; ++t) h[t] = hidden + h_off + min(r0 + t, R - 1) * d;
  for (uint t = 0; t < LIN_TC; ++t) w[t] = weight + w_off + min(c0 + t, V - 1) * d;
  floatv acc[LIN_TR][LIN_TC];
  for (uint r = 0; r < LIN_TR; ++r)
    for (uint c = 0; c < LIN_TC; ++c) acc[r][c] = (floatv)(0.0f);
  const ulong dv = d - d % CLXENT_VEC;
  for (ulong k = 0; k < dv; k += CLXENT_VEC) {
    floatv a[LIN_TR], b[LIN_TC];
    for (uint r = 0; r < LIN_TR; ++r) a[r] = vloadv(0, h[r] + k);
    for (uint c = 0; c < LIN_TC; ++c) b[c] = vloadv(0, w[c] + k);
    for (uint r = 0; r < LIN_TR; ++r)
      for (uint c = 0; c < LIN_TC; ++c) acc[r][c] = a[r] * b[c] + acc[r][c];
  }
  for (uint r = 0; r < LIN_TR; ++r)
    for (uint c = 0; c < LIN_TC; ++c) {
      float t = hsum(acc[r][c]);
      for (ulong k = dv; k < d; ++k) t = h[r][k] * w[c][k] + t;
      if (r0 + r < R && c0 + c < V) z[(r0 + r) * ldz + c0 + c] = bias ? t + bias[b_off + c0 + c] : t;
    }
}

/* One class chunk [j0, j0 + V) of rows first_row.. folded into each row's state (one work-item per
 * row). first: the state starts empty; last: it becomes the row's loss (row_loss[first_row + i])
 * and k_i. Ignored rows: loss 0, k 0. */
__kernel void linear_stats(const ulong R, const ulong V, const ulong v, const ulong j0, const ulong first_row,
                           __global const float *z, const ulong ldz, __global const int *labels,
                           __global const float *weight, const int ignore_index, const clxent_params p,
                           __global float *state, const int first, const int last, __global float *row_loss) {
  const ulong i = get_global_id(0);
  if (i >= R) return;
  __global float *st = state + i * LIN_STATE;
  const int y = labels[first_row + i];
  const int ignored = y == ignore_index;
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss;
  const int smooth = eps > 0.0f;
  float m = -INFINITY, s = 0.0f, wdev = 0.0f, wsum = 0.0f, zy = 0.0f;
  if (!first) m = st[LIN_M], s = st[LIN_S], wdev = st[LIN_WDEV], wsum = st[LIN_WSUM], zy = st[LIN_ZY];
  if (!ignored) {
    __global const float *zr = z + i * ldz;
    const ulong vv = V - V % CLXENT_VEC;
    /* the chunk's max of u (the cap is increasing: cap of the max of z); NaN skipped here, it
     * reaches the loss through the sum */
    floatv mv = (floatv)(-INFINITY);
    for (ulong j = 0; j < vv; j += CLXENT_VEC) {
      const floatv x = vloadv(0, zr + j);
      mv = x > mv ? x : mv;
    }
    float hi = hmax(mv);
    for (ulong j = vv; j < V; ++j) hi = fmax(hi, zr[j]);
    const float mc = cap_logit(hi, cap);
    if (mc > m) {
      if (s != 0.0f) s *= clxent_exp(m - mc);
      if (wsum != 0.0f) wdev += wsum * (mc - m);
      m = mc;
    }
    const float ref = m == -INFINITY ? 0.0f : m;
    floatv sv = (floatv)(0.0f), wv = (floatv)(0.0f), wsv = (floatv)(0.0f);
    for (ulong j = 0; j < vv; j += CLXENT_VEC) {
      floatv u = vloadv(0, zr + j);
      if (cap != 0.0f) u = cap_logitv(u, cap);
      sv += clxent_expv(u - ref);
      if (smooth) {
        const floatv w = weight ? vloadv(0, weight + j0 + j) : (floatv)(1.0f);
        wv += select(w * (ref - u), (floatv)(0.0f), w == (floatv)(0.0f));
        wsv += w;
      }
    }
    float sc = hsum(sv), wd = hsum(wv), ws = hsum(wsv);
    for (ulong j = vv; j < V; ++j) {
      const float u = cap_logit(zr[j], cap);
      sc += clxent_exp(u - ref);
      if (smooth) {
        const float w = weight ? weight[j0 + j] : 1.0f;
        if (w != 0.0f) wd += w * (ref - u);
        ws += w;
      }
    }
    s += sc, wdev += wd, wsum += ws;
    if ((ulong)y >= j0 && (ulong)y < j0 + V) zy = zr[y - j0];
  }
  if (last) {
    float loss = 0.0f, k = 0.0f;
    if (!ignored) {
      const float log_s = log(s), lse = m + log_s, uy = cap_logit(zy, cap), inv_c = 1.0f / (float)v;
      const float wy = weight ? weight[y] : 1.0f, W = p.weight_sum, S = p.scale;
      loss = (1.0f - eps) * wy * ((m - uy) + log_s);
      if (smooth) loss += eps * inv_c * (wdev + W * log_s);
      if (zl != 0.0f) loss += p.z_loss_row * zl * lse * lse;
      k = (S * ((1.0f - eps) * wy + eps * W * inv_c) + 2.0f * zl * lse * p.z_scale) / s;
    }
    row_loss[first_row + i] = loss;
    st[LIN_K] = k;
  }
  st[LIN_M] = m, st[LIN_S] = s, st[LIN_WDEV] = wdev, st[LIN_WSUM] = wsum, st[LIN_ZY] = zy;
}

/* The block of z becomes G in place: item (c, r) does columns [c·VEC, c·VEC + VEC) of row r. */
__kernel void linear_grad(const ulong R, const ulong V, const ulong v, const ulong j0, const ulong first_row,
                          __global float *z, const ulong ldz, __global const int *labels,
                          __global const float *weight, const int ignore_index, const clxent_params p,
                          __global const float *state) {
  const ulong c0 = get_global_id(0) * CLXENT_VEC, i = get_global_id(1);
  if (c0 >= V || i >= R) return;
  __global float *zr = z + i * ldz;
  const ulong c1 = min(V, c0 + CLXENT_VEC);
  const int y = labels[first_row + i];
  if (y == ignore_index) {
    for (ulong j = c0; j < c1; ++j) zr[j] = 0.0f;
    return;
  }
  __global const float *st = state + i * LIN_STATE;
  const float m = st[LIN_M], k = st[LIN_K], eps = p.smoothing, cap = p.softcap, S = p.scale;
  const float B = S * eps / (float)v, K = S * (1.0f - eps) * (weight ? weight[y] : 1.0f);
  for (ulong j = c0; j < c1; ++j) {
    float slope;
    const float u = cap_logit_slope(zr[j], cap, &slope), w = weight ? weight[j0 + j] : 1.0f;
    zr[j] = (k * clxent_exp(u - m) - B * w - (j0 + j == (ulong)y ? K : 0.0f)) * slope;
  }
}

/* grad_hidden[r][k] (+)= Σ_j g[r][j] w[j][k] over the chunk's V classes, in increasing j.
 * Item (kt, rt): LIN_HR rows × LIN_HK vectors of k; the last k tile of a d that is not a multiple
 * of its width is done scalar (the same elements on every call of a given d). */
__kernel void linear_dhidden(const ulong R, const ulong V, const ulong d, __global const float *g, const ulong ldg,
                             __global const float *weight, const ulong w_off, __global float *gh, const ulong gh_off,
                             const int first) {
  const ulong k0 = get_global_id(0) * (LIN_HK * CLXENT_VEC), r0 = get_global_id(1) * LIN_HR;
  if (k0 >= d || r0 >= R) return;
  __global const float *gr[LIN_HR];
  for (uint r = 0; r < LIN_HR; ++r) gr[r] = g + min(r0 + r, R - 1) * ldg;
  __global const float *w = weight + w_off;
  if (k0 + LIN_HK * CLXENT_VEC <= d) {
    floatv acc[LIN_HR][LIN_HK];
    for (uint r = 0; r < LIN_HR; ++r)
      for (uint q = 0; q < LIN_HK; ++q)
        acc[r][q] = first ? (floatv)(0.0f) : vloadv(0, gh + gh_off + min(r0 + r, R - 1) * d + k0 + q * CLXENT_VEC);
    for (ulong j = 0; j < V; ++j) {
      floatv b[LIN_HK];
      for (uint q = 0; q < LIN_HK; ++q) b[q] = vloadv(0, w + j * d + k0 + q * CLXENT_VEC);
      for (uint r = 0; r < LIN_HR; ++r) {
        const float a = gr[r][j];
        for (uint q = 0; q < LIN_HK; ++q) acc[r][q] = a * b[q] + acc[r][q];
      }
    }
    for (uint r = 0; r < LIN_HR; ++r)
      if (r0 + r < R)
        for (uint q = 0; q < LIN_HK; ++q) vstorev(acc[r][q], 0, gh + gh_off + (r0 + r) * d + k0 + q * CLXENT_VEC);
    return;
  }
  for (ulong k = k0; k < d; ++k)
    for (uint r = 0; r < LIN_HR && r0 + r < R; ++r) {
      __global float *o = gh + gh_off + (r0 + r) * d + k;
      float acc = first ? 0.0f : *o;
      for (ulong j = 0; j < V; ++j) acc = gr[r][j] * w[j * d + k] + acc;
      *o = acc;
    }
}

/* grad_weight[j][k] (+)= Σ_i g[i][j] h[i][k] over the chunk's R rows, in increasing i. Item (kt, ct):
 * LIN_WC classes × LIN_HK vectors of k. */
__kernel void linear_dweight(const ulong R, const ulong V, const ulong d, __global const float *g, const ulong ldg,
                             __global const float *hidden, const ulong h_off, __global float *gw, const ulong gw_off,
                             const int first) {
  const ulong k0 = get_global_id(0) * (LIN_HK * CLXENT_VEC), c0 = get_global_id(1) * LIN_WC;
  if (k0 >= d || c0 >= V) return;
  __global const float *h = hidden + h_off;
  ulong col[LIN_WC];
  for (uint c = 0; c < LIN_WC; ++c) col[c] = min(c0 + c, V - 1);
  if (k0 + LIN_HK * CLXENT_VEC <= d) {
    floatv acc[LIN_WC][LIN_HK];
    for (uint c = 0; c < LIN_WC; ++c)
      for (uint q = 0; q < LIN_HK; ++q)
        acc[c][q] = first ? (floatv)(0.0f) : vloadv(0, gw + gw_off + col[c] * d + k0 + q * CLXENT_VEC);
    for (ulong i = 0; i < R; ++i) {
      floatv b[LIN_HK];
      for (uint q = 0; q < LIN_HK; ++q) b[q] = vloadv(0, h + i * d + k0 + q * CLXENT_VEC);
      for (uint c = 0; c < LIN_WC; ++c) {
        const float a = g[i * ldg + col[c]];
        for (uint q = 0; q < LIN_HK; ++q) acc[c][q] = a * b[q] + acc[c][q];
      }
    }
    for (uint c = 0; c < LIN_WC; ++c)
      if (c0 + c < V)
        for (uint q = 0; q < LIN_HK; ++q) vstorev(acc[c][q], 0, gw + gw_off + (c0 + c) * d + k0 + q * CLXENT_VEC);
    return;
  }
  for (ulong k = k0; k < d; ++k)
    for (uint c = 0; c < LIN_WC && c0 + c < V; ++c) {
      __global float *o = gw + gw_off + (c0 + c) * d + k;
      float acc = first ? 0.0f : *o;
      for (ulong i = 0; i < R; ++i) acc = g[i * ldg + c0 + c] * h[i * d + k] + acc;
      *o = acc;
    }
}

/* grad_bias[j] (+)= Σ_i g[i][j] over the chunk's R rows, in increasing i. */
__kernel void linear_dbias(const ulong R, const ulong V, __global const float *g, const ulong ldg, __global float *gb,
                           const ulong gb_off, const int first) {
  const ulong j = get_global_id(0);
  if (j >= V) return;
  float acc = first ? 0.0f : gb[gb_off + j];
  for (ulong i = 0; i < R; ++i) acc += g[i * ldg + j];
  gb[gb_off + j] = acc;
}
