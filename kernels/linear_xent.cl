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
 *             the same operands; the last few chunks' blocks are kept from the forward pass
 *             where memory allows, host/linear.c), linear_grad turns it into G in place, then
 *             grad_hidden[rows] += G · w[chunk] (linear_dhidden), grad_weight[chunk] += Gᵀ · h[rows]
 *             (linear_dweight), grad_bias[chunk] += Σ_i G (linear_dbias).
 * Each output element is owned by one work-item per launch, which starts from the value in memory
 * (or 0 on the first chunk) and adds the chunk's terms one by one in index order: so each element
 * is the sum of its terms in increasing j (grad_hidden) or i (grad_weight, grad_bias) whatever the
 * chunk sizes, with no atomics — the same bits run after run and for any chunking. Each logit is
 * one fma per k in increasing k (linear_logits), so it too has the same bits in both passes and
 * for any block shape.
 *
 * The matrix products are in kernels/linear_products.cl, once per storage type (hidden, weight,
 * bias and the gradients in float32, float16 or bfloat16; every sum in float32; 16-bit gradients
 * are accumulated in float32 scratch and rounded once, by linear_narrow).
 * Register tiles, all outer products (no horizontal sums): a work-item computes 4 classes × 2
 * vectors of rows of logits (the row block of h packed transposed once per row chunk,
 * linear_pack_t), 4 rows × 2 vectors of grad_hidden, 4 classes × 2 vectors of grad_weight: loops a
 * CPU compiler (PoCL) vectorises within a work-item, no barriers; every multiply-add is an fma.
 */

/* floats of per-row state kept across a row chunk's class chunks */
#define LIN_STATE 8
#define LIN_M 0
#define LIN_S 1
#define LIN_WDEV 2
#define LIN_WSUM 3
#define LIN_ZY 4
#define LIN_K 5

/* One class chunk [j0, j0 + V) of rows first_row.. folded into each row's state (one work-item per
 * row). first: the state starts empty; last: it becomes the row's loss (row_loss[first_row + i]),
 * its lse (row_lse, if given) and k_i. Ignored rows: loss 0, k 0 (and their lse if wanted). */
__kernel void linear_stats(const ulong R, const ulong V, const ulong v, const ulong j0, const ulong first_row,
                           __global const float *z, const ulong z_off, const ulong ldz, __global const int *labels,
                           __global const float *weight, const int ignore_index, const clxent_params p_host,
                           __global const float *dev_scales, __global float *state, const int first, const int last,
                           __global float *row_loss, __global float *row_lse) {
  const clxent_params p = call_params(p_host, dev_scales);
  const ulong i = get_global_id(0);
  if (i >= R) return;
  __global float *st = state + i * LIN_STATE;
  const int y = labels[first_row + i];
  /* a label out of range (only device-resident calls get here unchecked): NaN loss, lse, gradient */
  const int bad = y != ignore_index && (y < 0 || (ulong)y >= v);
  const int ignored = y == ignore_index || bad;
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss;
  const int smooth = eps > 0.0f;
  float m = -INFINITY, s = 0.0f, wdev = 0.0f, wsum = 0.0f, zy = 0.0f;
  if (!first) m = st[LIN_M], s = st[LIN_S], wdev = st[LIN_WDEV], wsum = st[LIN_WSUM], zy = st[LIN_ZY];
  if (!ignored || (row_lse && !bad)) { /* ignored rows: only for their lse */
    __global const float *zr = z + z_off + i * ldz;
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
    if (row_lse) row_lse[first_row + i] = bad ? NAN : m + clxent_log(s);
    if (bad) loss = k = NAN;
    if (!ignored) {
      const float log_s = clxent_log(s), lse = m + log_s, uy = cap_logit(zy, cap), inv_c = 1.0f / (float)v;
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

#if CLXENT_VEC == 4
#define LIN_LANES (intv)(0, 1, 2, 3)
#elif CLXENT_VEC == 8
#define LIN_LANES (intv)(0, 1, 2, 3, 4, 5, 6, 7)
#else
#define LIN_LANES (intv)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#endif

/* The block of z becomes G in place: item (c, r) does columns [c·VEC, c·VEC + VEC) of row r, as one
 * vector (the exponential's vector form gives the scalar form's bits), a block's last columns
 * scalar. */
__kernel void linear_grad(const ulong R, const ulong V, const ulong v, const ulong j0, const ulong first_row,
                          __global float *z, const ulong z_off, const ulong ldz, __global const int *labels,
                          __global const float *weight, const int ignore_index, const clxent_params p_host,
                          __global const float *dev_scales, __global const float *state) {
  const clxent_params p = call_params(p_host, dev_scales);
  const ulong c0 = get_global_id(0) * CLXENT_VEC, i = get_global_id(1);
  if (c0 >= V || i >= R) return;
  __global float *zr = z + z_off + i * ldz;
  const ulong c1 = min(V, c0 + CLXENT_VEC);
  const int y = labels[first_row + i];
  if (y == ignore_index || y < 0 || (ulong)y >= v) { /* ignored: 0; a bad label: NaN */
    const float fill = y == ignore_index ? 0.0f : NAN;
    for (ulong j = c0; j < c1; ++j) zr[j] = fill;
    return;
  }
  __global const float *st = state + i * LIN_STATE;
  const float m = st[LIN_M], k = st[LIN_K], eps = p.smoothing, cap = p.softcap, S = p.scale;
  const float B = S * eps / (float)v, K = S * (1.0f - eps) * (weight ? weight[y] : 1.0f);
  if (c1 - c0 == CLXENT_VEC) {
    const floatv zv = vloadv(0, zr + c0);
    floatv slope = (floatv)(1.0f), u = cap != 0.0f ? cap_logit_slopev(zv, cap, &slope) : zv;
    const floatv w = weight ? vloadv(0, weight + j0 + c0) : (floatv)(1.0f);
    floatv g = k * clxent_expv(u - m) - B * w;
    const long at = (long)y - (long)(j0 + c0); /* the label's lane, if in this vector */
    if (at >= 0 && at < CLXENT_VEC) g = select(g, g - K, LIN_LANES == (int)at);
    vstorev(cap != 0.0f ? g * slope : g, 0, zr + c0);
    return;
  }
  for (ulong j = c0; j < c1; ++j) {
    float slope;
    const float u = cap_logit_slope(zr[j], cap, &slope), w = weight ? weight[j0 + j] : 1.0f;
    zr[j] = (k * clxent_exp(u - m) - B * w - (j0 + j == (ulong)y ? K : 0.0f)) * slope;
  }
}

/* grad_bias[j] (+)= Σ_i g[i][j] over the chunk's R rows, in increasing i. Item: VEC classes, one
 * vector add per row (a lane's sum is its class's, in the same order as one add at a time); a
 * block's last classes scalar. One class per item read one float per row, a new cache line per
 * row: 0.3 s of a 10 s call at 2048 × 1024 × 32000. */
__kernel void linear_dbias(const ulong R, const ulong V, __global const float *g, const ulong g_off, const ulong ldg,
                           __global float *gb, const ulong gb_off, const int first) {
  const ulong j0 = get_global_id(0) * CLXENT_VEC;
  if (j0 >= V) return;
  g += g_off;
  if (j0 + CLXENT_VEC <= V) {
    floatv acc = first ? (floatv)(0.0f) : vloadv(0, gb + gb_off + j0);
    for (ulong i = 0; i < R; ++i) acc += vloadv(0, g + i * ldg + j0);
    vstorev(acc, 0, gb + gb_off + j0);
    return;
  }
  for (ulong j = j0; j < V; ++j) {
    float acc = first ? 0.0f : gb[gb_off + j];
    for (ulong i = 0; i < R; ++i) acc += g[i * ldg + j];
    gb[gb_off + j] = acc;
  }
}
