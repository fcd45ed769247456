/*
 * The matrix products of clxent_linear_xent (the mathematics: kernels/linear_xent.cl), once per
 * storage type of hidden, weight and bias (storage.cl's LOAD/LOADV); every sum is float32 and
 * every output here float32 (16-bit gradients are rounded once at the end, by linear_narrow).
 */

#ifndef LIN_TILE
/* The register tiles are written out as named variables, not private arrays: PoCL kept the arrays
 * in memory (5 GFLOP/s against 30-60 here). A tile is 4 × 2 accumulators of VEC floats, with the
 * 4 + 2 operands 14 of AVX2's 16 vector registers. LIN_TILE(OP) applies OP to each of them. */
#define LIN_TILE(OP) OP(0, 0) OP(0, 1) OP(1, 0) OP(1, 1) OP(2, 0) OP(2, 1) OP(3, 0) OP(3, 1)
#define LIN_ZERO(r, q) floatv a##r##q = (floatv)(0.0f);
#endif

/* z[r][c] = h[r]·w[c] + b[c] for the R×V block (item: 4 rows × 2 classes); h, w rows of d floats. */
__kernel void linear_logits(const ulong R, const ulong V, const ulong d, __global const store_t *hidden,
                            const ulong h_off, __global const store_t *weight, const ulong w_off,
                            __global const store_t *bias, const ulong b_off, __global float *z, const ulong ldz) {
  const ulong c0 = get_global_id(0) * 2, r0 = get_global_id(1) * 4;
  if (c0 >= V || r0 >= R) return;
  __global const store_t *h0 = hidden + h_off + min(r0 + 0, R - 1) * d, *h1 = hidden + h_off + min(r0 + 1, R - 1) * d;
  __global const store_t *h2 = hidden + h_off + min(r0 + 2, R - 1) * d, *h3 = hidden + h_off + min(r0 + 3, R - 1) * d;
  __global const store_t *w0 = weight + w_off + min(c0 + 0, V - 1) * d, *w1 = weight + w_off + min(c0 + 1, V - 1) * d;
  LIN_TILE(LIN_ZERO)
  const ulong dv = d - d % CLXENT_VEC;
  for (ulong k = 0; k < dv; k += CLXENT_VEC) {
    const floatv x0 = LOADV(h0, k), x1 = LOADV(h1, k), x2 = LOADV(h2, k), x3 = LOADV(h3, k);
    const floatv y0 = LOADV(w0, k), y1 = LOADV(w1, k);
#define LIN_DOT(r, q) a##r##q = fma(x##r, y##q, a##r##q);
    LIN_TILE(LIN_DOT)
#undef LIN_DOT
  }
  /* each logit: its vector's lanes summed (hsum), then the tail of d, then the bias */
#define LIN_OUT(r, q)                                                                    \
  if (r0 + r < R && c0 + q < V) {                                                        \
    float t = hsum(a##r##q);                                                             \
    for (ulong k = dv; k < d; ++k) t = fma(LOAD(h##r, k), LOAD(w##q, k), t);                         \
    z[(r0 + r) * ldz + c0 + q] = bias ? t + LOAD(bias, b_off + c0 + q) : t;                    \
  }
  LIN_TILE(LIN_OUT)
#undef LIN_OUT
}

/* The two gradient products, out[r][k] (+)= Σ_t a[t][r] · m[t][k] over t = 0..T-1 in increasing t,
 * r one of 4 outputs rows, k 2·VEC columns per item: a[t][r] = A[t·a_t + r·a_r] (scalars),
 * m[t] = M + t·d (rows of d floats). Each accumulator starts from the output (or 0 on the first
 * chunk), so an element's sum runs in the same order whatever the chunks. The last k tile of a d
 * that is not a multiple of 2·VEC is done scalar, with fma as well. */
inline void lin_product(const ulong T, const ulong rows, const ulong d, const ulong k0, __global const float *A,
                        const ulong a_t, const ulong a_r, __global const store_t *M, __global float *out, const int first) {
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
      const floatv y0 = LOADV(M, t * d + k0), y1 = LOADV(M, t * d + k0 + CLXENT_VEC);
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
      for (ulong t = 0; t < T; ++t) acc = fma(A##r[t * a_t], LOAD(M, t * d + k), acc); \
      o##r[k] = acc;                                                        \
    }
    LIN_SCALAR(0) LIN_SCALAR(1) LIN_SCALAR(2) LIN_SCALAR(3)
#undef LIN_SCALAR
  }
}

/* grad_hidden[r][k] (+)= Σ_j g[r][j] w[j][k] over the chunk's V classes, in increasing j. Item
 * (kt, rt): 4 rows × 2·VEC of k. */
__kernel void linear_dhidden(const ulong R, const ulong V, const ulong d, __global const float *g, const ulong ldg,
                             __global const store_t *weight, const ulong w_off, __global float *gh, const ulong gh_off,
                             const int first) {
  const ulong k0 = get_global_id(0) * (2 * CLXENT_VEC), r0 = get_global_id(1) * 4;
  if (k0 >= d || r0 >= R) return;
  lin_product(V, min(4ul, R - r0), d, k0, g + r0 * ldg, 1, ldg, weight + w_off, gh + gh_off + r0 * d, first);
}

/* grad_weight[j][k] (+)= Σ_i g[i][j] h[i][k] over the chunk's R rows, in increasing i. Item
 * (kt, ct): 4 classes × 2·VEC of k. */
__kernel void linear_dweight(const ulong R, const ulong V, const ulong d, __global const float *g, const ulong ldg,
                             __global const store_t *hidden, const ulong h_off, __global float *gw, const ulong gw_off,
                             const int first) {
  const ulong k0 = get_global_id(0) * (2 * CLXENT_VEC), c0 = get_global_id(1) * 4;
  if (k0 >= d || c0 >= V) return;
  lin_product(R, min(4ul, V - c0), d, k0, g + c0, ldg, 1, hidden + h_off, gw + gw_off + c0 * d, first);
}

/* out[off + e] = x[e] in the storage type, rounded once (16-bit gradients from their float32
 * accumulators). */
__kernel void linear_narrow(const ulong count, __global const float *x, __global store_t *out, const ulong off) {
  const ulong e = get_global_id(0);
  if (e < count) STORE(x[e], out, off + e);
}
