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
/* the columns of a packed panel: two vectors */
#define LIN_KT (2 * CLXENT_VEC)
#endif

/* z[r][c] = Σ_k h[r][k] w[c][k] + b[c] for the R×V block, as outer products over k: item (ct, rt)
 * holds 4 classes × LIN_KT rows (2 vectors of rows), and per k multiplies each class's w[c][k]
 * (one scalar, broadcast) by the LIN_KT values h[r0..][k], which linear_pack_t laid out contiguous
 * (hq). Each logit is then one fma per k in increasing k, no horizontal sum, so its bits depend on
 * its h and w rows alone, not on the block. The dot-product form this replaces (4 rows × 2
 * classes, VEC-wide partial sums added at the end) loaded 6 vectors from 6 rows d floats apart per
 * 8 fma and re-read a weight row per 4 logits; here a weight row serves LIN_KT logits and the
 * packed hidden panel (LIN_KT·d floats) stays in L2 across the group's classes. */
__kernel void linear_logits(const ulong R, const ulong V, const ulong d, __global const float *hq,
                            __global const store_t *weight, const ulong w_off, __global const store_t *bias,
                            const ulong b_off, __global float *z, const ulong z_off, const ulong ldz) {
  const ulong c0 = get_global_id(0) * 4, r0 = get_global_id(1) * LIN_KT;
  if (c0 >= V || r0 >= R) return;
  z += z_off;
  /* classes past the block read the last class's row and write nothing */
  __global const store_t *w0 = weight + w_off + c0 * d, *w1 = weight + w_off + min(c0 + 1, V - 1) * d;
  __global const store_t *w2 = weight + w_off + min(c0 + 2, V - 1) * d, *w3 = weight + w_off + min(c0 + 3, V - 1) * d;
  __global const float *q = hq + (r0 / LIN_KT) * d * LIN_KT;
  LIN_TILE(LIN_ZERO)
  for (ulong k = 0; k < d; ++k) {
    const floatv y0 = vloadv(0, q + k * LIN_KT), y1 = vloadv(1, q + k * LIN_KT);
    const float x0 = LOAD(w0, k), x1 = LOAD(w1, k), x2 = LOAD(w2, k), x3 = LOAD(w3, k);
#define LIN_AXPY(c, h) a##c##h = fma((floatv)(x##c), y##h, a##c##h);
    LIN_TILE(LIN_AXPY)
#undef LIN_AXPY
  }
  /* the tile is class-major (a vector of rows per class): written out element by element, the
   * bias added last */
#define LIN_OUT(c, h)                                                          \
  if (c0 + c < V) {                                                            \
    float t[CLXENT_VEC];                                                       \
    vstorev(bias ? a##c##h + LOAD(bias, b_off + c0 + c) : a##c##h, 0, t);      \
    for (uint l = 0; l < CLXENT_VEC; ++l)                                      \
      if (r0 + h * CLXENT_VEC + l < R) z[(r0 + h * CLXENT_VEC + l) * ldz + c0 + c] = t[l]; \
  }
  LIN_TILE(LIN_OUT)
#undef LIN_OUT
}

/* The gradient products' operand, packed: the T rows of M (d floats apart) that a product walks,
 * as panels of LIN_KT = 2·VEC columns, each panel's T pieces contiguous (zeros past d):
 *   P[(k / LIN_KT)·T·LIN_KT + t·LIN_KT + k % LIN_KT] = M[m_off + t·d + k].
 * Walking M itself read one 64-byte piece of a new row d floats away per step, a stride that maps
 * every row to the same few cache sets when d is a multiple of 1024 floats: the products ran at
 * half the logits' speed. */
__kernel void linear_pack(const ulong T, const ulong d, const ulong dp, __global const store_t *M, const ulong m_off,
                          __global float *P) {
  /* item (panel, t): the panel's LIN_KT columns of row t, two vectors */
  const ulong k0 = get_global_id(0) * LIN_KT, t = get_global_id(1);
  if (k0 >= dp || t >= T) return;
  __global const store_t *m = M + m_off + t * d;
  __global float *p = P + (k0 / LIN_KT) * T * LIN_KT + t * LIN_KT;
  if (k0 + LIN_KT <= d) {
    vstorev(LOADV(m, k0), 0, p);
    vstorev(LOADV(m, k0 + CLXENT_VEC), 1, p);
    return;
  }
  for (ulong k = 0; k < LIN_KT; ++k) p[k] = k0 + k < d ? LOAD(m, k0 + k) : 0.0f;
}

/* The logits' operand: the T rows of M (d floats apart) packed transposed, as panels of LIN_KT rows,
 * each panel's d columns contiguous (zeros past T):
 *   Q[(t / LIN_KT)·d·LIN_KT + k·LIN_KT + t % LIN_KT] = M[m_off + t·d + k].
 * Item (k, panel): one column of the panel. R·d copies per row block, against 2·R·v·d flops. */
__kernel void linear_pack_t(const ulong T, const ulong d, __global const store_t *M, const ulong m_off,
                            __global float *Q) {
  const ulong k = get_global_id(0), t0 = get_global_id(1) * LIN_KT;
  if (k >= d || t0 >= T) return;
  __global float *q = Q + t0 * d + k * LIN_KT;
  for (uint l = 0; l < LIN_KT; ++l) q[l] = t0 + l < T ? LOAD(M, m_off + (t0 + l) * d + k) : 0.0f;
}

/* The VEC floats q·VEC.. of a tile of `left` (< LIN_KT) columns at p, zeros past them. */
inline floatv lin_load_part(__global const float *p, ulong left, uint q) {
  float tmp[CLXENT_VEC];
  for (uint l = 0; l < CLXENT_VEC; ++l) tmp[l] = q * CLXENT_VEC + l < left ? p[q * CLXENT_VEC + l] : 0.0f;
  return vloadv(0, tmp);
}
inline void lin_store_part(floatv x, __global float *p, ulong left, uint q) {
  float tmp[CLXENT_VEC];
  vstorev(x, 0, tmp);
  for (uint l = 0; l < CLXENT_VEC; ++l)
    if (q * CLXENT_VEC + l < left) p[q * CLXENT_VEC + l] = tmp[l];
}

/* The two gradient products, out[r][k] (+)= Σ_t a[t][r] · m[t][k] over t = 0..T-1 in increasing t,
 * r one of 4 output rows, k the LIN_KT columns of the item's panel P (linear_pack): a[t][r] =
 * A[t·a_t + r·a_r]. Each accumulator starts from the output (or 0 on the first chunk), so an
 * element's sum runs in the same order, one fma per term, whatever the chunks. */
inline void lin_product(const ulong T, const ulong rows, const ulong d, const ulong k0, __global const float *A,
                        const ulong a_t, const ulong a_r, __global const float *P, __global float *out, const int first) {
  /* rows past the block read the last row's operands and write nothing */
  __global const float *A0 = A, *A1 = A + min(1ul, rows - 1) * a_r, *A2 = A + min(2ul, rows - 1) * a_r;
  __global const float *A3 = A + min(3ul, rows - 1) * a_r;
  __global float *o0 = out + k0, *o1 = out + min(1ul, rows - 1) * d + k0, *o2 = out + min(2ul, rows - 1) * d + k0;
  __global float *o3 = out + min(3ul, rows - 1) * d + k0;
  const ulong left = d - k0; /* columns of this tile within d */
  const int full = left >= LIN_KT;
#define LIN_INIT(r, q) \
  floatv a##r##q = first ? (floatv)(0.0f) : full ? vloadv(q, o##r) : lin_load_part(o##r, left, q);
  LIN_TILE(LIN_INIT)
#undef LIN_INIT
  for (ulong t = 0; t < T; ++t) {
    const floatv y0 = vloadv(0, P + t * LIN_KT), y1 = vloadv(1, P + t * LIN_KT);
    const float x0 = A0[t * a_t], x1 = A1[t * a_t], x2 = A2[t * a_t], x3 = A3[t * a_t];
#define LIN_AXPY(r, q) a##r##q = fma((floatv)(x##r), y##q, a##r##q);
    LIN_TILE(LIN_AXPY)
#undef LIN_AXPY
  }
#define LIN_STORE(r, q) \
  if (r < rows) { if (full) vstorev(a##r##q, q, o##r); else lin_store_part(a##r##q, o##r, left, q); }
  LIN_TILE(LIN_STORE)
#undef LIN_STORE
}

/* grad_hidden[r][k] (+)= Σ_j g[r][j] w[j][k] over the chunk's V classes, in increasing j, w packed
 * (V rows). Item (kt, rt): 4 rows × LIN_KT of k. */
__kernel void linear_dhidden(const ulong R, const ulong V, const ulong d, __global const float *g, const ulong g_off,
                             const ulong ldg, __global const float *wp, __global float *gh, const ulong gh_off,
                             const int first) {
  const ulong k0 = get_global_id(0) * LIN_KT, r0 = get_global_id(1) * 4;
  if (k0 >= d || r0 >= R) return;
  lin_product(V, min(4ul, R - r0), d, k0, g + g_off + r0 * ldg, 1, ldg, wp + (k0 / LIN_KT) * V * LIN_KT,
              gh + gh_off + r0 * d, first);
}

/* grad_weight[j][k] (+)= Σ_i g[i][j] h[i][k] over the chunk's R rows, in increasing i, h packed
 * (R rows). Item (kt, ct): 4 classes × LIN_KT of k. */
__kernel void linear_dweight(const ulong R, const ulong V, const ulong d, __global const float *g, const ulong g_off,
                             const ulong ldg, __global const float *hp, __global float *gw, const ulong gw_off,
                             const int first) {
  const ulong k0 = get_global_id(0) * LIN_KT, c0 = get_global_id(1) * 4;
  if (k0 >= d || c0 >= V) return;
  lin_product(R, min(4ul, V - c0), d, k0, g + g_off + c0, ldg, 1, hp + (k0 / LIN_KT) * R * LIN_KT, gw + gw_off + c0 * d,
              first);
}

/* out[off + e] = x[e] in the storage type, rounded once (16-bit gradients from their float32
 * accumulators). */
__kernel void linear_narrow(const ulong count, __global const float *x, __global store_t *out, const ulong off) {
  const ulong e = get_global_id(0);
  if (e < count) STORE(x[e], out, off + e);
}
