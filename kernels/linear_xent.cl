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
 * Register tiles: a work-item computes 4 × 2 logits (dot products of VEC-wide pieces of h and w
 * rows, lanes summed at the end), 4 rows × 2 vectors of grad_hidden, 4 classes × 2 vectors of
 * grad_weight (outer products, no horizontal sums): loops a CPU compiler (PoCL) vectorises within a
 * work-item, no barriers; every multiply-add is an fma.
 */

/* floats of per-row state kept across a row chunk's class chunks */
#define LIN_STATE 8
#define LIN_M 0
#define LIN_S 1
#define LIN_WDEV 2
#define LIN_WSUM 3
#define LIN_ZY 4
#define LIN_K 5

/* The register tiles are written out as named variables, not private arrays: PoCL kept the arrays
 * in memory (5 GFLOP/s against 30-60 here). A tile is 4 × 2 accumulators of VEC floats, with the
 * 4 + 2 operands 14 of AVX2's 16 vector registers. LIN_TILE(OP) applies OP to each of them. */
#define LIN_TILE(OP) OP(0, 0) OP(0, 1) OP(1, 0) OP(1, 1) OP(2, 0) OP(2, 1) OP(3, 0) OP(3, 1)
#define LIN_ZERO(r, q) floatv a##r##q = (floatv)(0.0f);

/* z[r][c] = h[r]·w[c] + b[c] for the R×V block (item: 4 rows × 2 classes); h, w rows of d floats. */
__kernel void linear_logits(const ulong R, const ulong V, const ulong d, __global const float *hidden,
                            const ulong h_off, __global const float *weight, const ulong w_off,
                            __global const float *bias, const ulong b_off, __global float *z, const ulong ldz) {
  const ulong c0 = get_global_id(0) * 2, r0 = get_global_id(1) * 4;
  if (c0 >= V || r0 >= R) return;
  __global const float *h0 = hidden + h_off + min(r0 + 0, R - 1) * d, *h1 = hidden + h_off + min(r0 + 1, R - 1) * d;
  __global const float *h2 = hidden + h_off + min(r0 + 2, R - 1) * d, *h3 = hidden + h_off + min(r0 + 3, R - 1) * d;
  __global const float *w0 = weight + w_off + min(c0 + 0, V - 1) * d, *w1 = weight + w_off + min(c0 + 1, V - 1) * d;
  LIN_TILE(LIN_ZERO)
  const ulong dv = d - d % CLXENT_VEC;
  for (ulong k = 0; k < dv; k += CLXENT_VEC) {
    const floatv x0 = vloadv(0, h0 + k), x1 = vloadv(0, h1 + k), x2 = vloadv(0, h2 + k), x3 = vloadv(0, h3 + k);
    const floatv y0 = vloadv(0, w0 + k), y1 = vloadv(0, w1 + k);
#define LIN_DOT(r, q) a##r##q = fma(x##r, y##q, a##r##q);
    LIN_TILE(LIN_DOT)
#undef LIN_DOT
  }
  /* each logit: its vector's lanes summed (hsum), then the tail of d, then the bias */
#define LIN_OUT(r, q)                                                                    \
  if (r0 + r < R && c0 + q < V) {                                                        \
    float t = hsum(a##r##q);                                                             \
    for (ulong k = dv; k < d; ++k) t = fma(h##r[k], w##q[k], t);                         \
    z[(r0 + r) * ldz + c0 + q] = bias ? t + bias[b_off + c0 + q] : t;                    \
  }
  LIN_TILE(LIN_OUT)
#undef LIN_OUT
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

/* The two gradient products, out[r][k] (+)= Σ_t a[t][r] · m[t][k] over t = 0..T-1 in increasing t,
 * r one of 4 outputs rows, k 2·VEC columns per item: a[t][r] = A[t·a_t + r·a_r] (scalars),
 * m[t] = M + t·d (rows of d floats). Each accumulator starts from the output (or 0 on the first
 * chunk), so an element's sum runs in the same order whatever the chunks. The last k tile of a d
 * that is not a multiple of 2·VEC is done scalar, with fma as well. */
inline void lin_product(const ulong T, const ulong rows, const ulong d, const ulong k0, __global const float *A,
                        const ulong a_t, const ulong a_r, __global const float *M, __global float *out, const int first) {
  /* rows past the block read the last row's operands and write nothing */
  __global const float *A0 = A, *A1 = A + min(1ul, rows - 1) * a_r, *A2 = A + min(2ul, rows - 1) * a_r;
  __global const float *A3 = A + min(3ul, rows - 1) * a_r;
  __global float *o0 = out, *o1 = out + min(1ul, rows - 1) * d, *o2 = out + min(2ul, rows - 1) * d;
  __global float *o3 = out + min(3ul, rows - 1) * d;
  if (k0 + 2 * CLXENT_VEC <= d) {
#define LIN_INIT(r, q) floatv a##r##q = first ? (floatv)(0.0f) : vloadv(q, o##r + k0);
    LIN_TILE(LIN_INIT)
#undef LIN_INIT
    for (ulong t = 0; t < T; ++t) {
      const floatv y0 = vloadv(0, M + t * d + k0), y1 = vloadv(1, M + t * d + k0);
      const float x0 = A0[t * a_t], x1 = A1[t * a_t], x2 = A2[t * a_t], x3 = A3[t * a_t];
#define LIN_AXPY(r, q) a##r##q = fma((floatv)(x##r), y##q, a##r##q);
      LIN_TILE(LIN_AXPY)
#undef LIN_AXPY
    }
#define LIN_STORE(r, q) if (r < rows) vstorev(a##r##q, q, o##r + k0);
    LIN_TILE(LIN_STORE)
#undef LIN_STORE
    return;
  }
  for (ulong k = k0; k < d; ++k) {
#define LIN_SCALAR(r)                                                       \
    if (r < rows) {                                                         \
      float acc = first ? 0.0f : o##r[k];                                   \
      for (ulong t = 0; t < T; ++t) acc = fma(A##r[t * a_t], M[t * d + k], acc); \
      o##r[k] = acc;                                                        \
    }
    LIN_SCALAR(0) LIN_SCALAR(1) LIN_SCALAR(2) LIN_SCALAR(3)
#undef LIN_SCALAR
  }
}

/* grad_hidden[r][k] (+)= Σ_j g[r][j] w[j][k] over the chunk's V classes, in increasing j. Item
 * (kt, rt): 4 rows × 2·VEC of k. */
__kernel void linear_dhidden(const ulong R, const ulong V, const ulong d, __global const float *g, const ulong ldg,
                             __global const float *weight, const ulong w_off, __global float *gh, const ulong gh_off,
                             const int first) {
  const ulong k0 = get_global_id(0) * (2 * CLXENT_VEC), r0 = get_global_id(1) * 4;
  if (k0 >= d || r0 >= R) return;
  lin_product(V, min(4ul, R - r0), d, k0, g + r0 * ldg, 1, ldg, weight + w_off, gh + gh_off + r0 * d, first);
}

/* grad_weight[j][k] (+)= Σ_i g[i][j] h[i][k] over the chunk's R rows, in increasing i. Item
 * (kt, ct): 4 classes × 2·VEC of k. */
__kernel void linear_dweight(const ulong R, const ulong V, const ulong d, __global const float *g, const ulong ldg,
                             __global const float *hidden, const ulong h_off, __global float *gw, const ulong gw_off,
                             const int first) {
  const ulong k0 = get_global_id(0) * (2 * CLXENT_VEC), c0 = get_global_id(1) * 4;
  if (k0 >= d || c0 >= V) return;
  lin_product(R, min(4ul, V - c0), d, k0, g + c0, ldg, 1, hidden + h_off, gw + gw_off + c0 * d, first);
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
