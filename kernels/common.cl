/*
 * Shared definitions for every clxent kernel. The host prepends this file to the others and builds
 * them as one program with these defines, chosen per device (host/program.c):
 *
 *   CLXENT_ROW_PER_ITEM  1: one work-item owns a whole row and walks it with explicit vectors
 *                           (CPU devices: PoCL runs a work-item's loop as plain vectorised code);
 *                        0: one work-group of CLXENT_GROUP_SIZE work-items shares a row, with
 *                           strided (coalesced) loads and a tree reduction in local memory (GPUs).
 *   CLXENT_VEC           vector width of the per-item loops: 4, 8 or 16.
 *   CLXENT_GROUP_SIZE    work-items per row (group variant) and per reduction group; power of two.
 *
 * Math is float32 throughout; no -cl-fast-relaxed-math, because inf, -inf masks and NaN must keep
 * their IEEE meaning (a NaN anywhere in a row must reach that row's loss).
 */

#ifndef CLXENT_ROW_PER_ITEM
#define CLXENT_ROW_PER_ITEM 1
#endif
#ifndef CLXENT_VEC
#define CLXENT_VEC 8
#endif
#ifndef CLXENT_GROUP_SIZE
#define CLXENT_GROUP_SIZE 256
#endif

#define CLXENT_CAT_(a, b) a##b
#define CLXENT_CAT(a, b) CLXENT_CAT_(a, b)
#define floatv CLXENT_CAT(float, CLXENT_VEC)
#define vloadv CLXENT_CAT(vload, CLXENT_VEC)
#define vstorev CLXENT_CAT(vstore, CLXENT_VEC)

/* Every loss kernel takes the same arguments, so that one host routine streams any of them:
 *   rows, c      the block's shape; first_row  its first row within the batch
 *   in, aux      [rows][c] inputs (logits / probabilities; targets / q), aux may be unused
 *   labels       [batch] class indices, read at first_row + i (hard-label kernels only)
 *   iarg         ignore_index or a mode;  scale  the gradient's reduction scale
 *   grad         [rows][c] gradient or 0;  out  [batch] per-row results, written at first_row + i */
#define CLXENT_ROW_KERNEL_ARGS(in, aux, labels, iarg, grad, out)                                  \
  const ulong rows, const ulong c, const ulong first_row, __global const float *in,              \
      __global const float *aux, __global const int *labels, const int iarg, const float scale,   \
      __global float *grad, __global float *out

/* Horizontal reductions of one vector. fmax ignores NaN; callers rely on a later sum to carry it. */
#if CLXENT_VEC == 16
inline float hmax(float16 v) { v.lo = fmax(v.lo, v.hi); float4 a = fmax(v.lo.lo, v.lo.hi); float2 b = fmax(a.lo, a.hi); return fmax(b.x, b.y); }
inline float hsum(float16 v) { float8 h = v.lo + v.hi; float4 a = h.lo + h.hi; float2 b = a.lo + a.hi; return b.x + b.y; }
#elif CLXENT_VEC == 8
inline float hmax(float8 v) { float4 a = fmax(v.lo, v.hi); float2 b = fmax(a.lo, a.hi); return fmax(b.x, b.y); }
inline float hsum(float8 v) { float4 a = v.lo + v.hi; float2 b = a.lo + a.hi; return b.x + b.y; }
#elif CLXENT_VEC == 4
inline float hmax(float4 v) { float2 b = fmax(v.lo, v.hi); return fmax(b.x, b.y); }
inline float hsum(float4 v) { float2 b = v.lo + v.hi; return b.x + b.y; }
#else
#error "CLXENT_VEC must be 4, 8 or 16"
#endif

/* Tree reductions over a work-group of CLXENT_GROUP_SIZE items. Every item must call them (they
 * hold barriers); every item gets the result. The order of additions is fixed by the tree, so the
 * result is the same bits on every run. */
inline float group_sum(float v, __local float *scratch) {
  const uint lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint step = CLXENT_GROUP_SIZE / 2; step > 0; step >>= 1) {
    if (lid < step) scratch[lid] += scratch[lid + step];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float total = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next reduction */
  return total;
}

/* Merges running log-sum-exp states (m, s), meaning s·e^m = Σ e^z: a state with s = 0 is empty
 * and contributes 0 (the guard keeps -inf - -inf from becoming NaN). A NaN logit leaves s = NaN,
 * possibly with m = -inf, so the guard tests s, not m: the NaN must reach the result. */
inline float2 lse_merge(float2 a, float2 b) {
  const float m = fmax(a.x, b.x);
  const float sa = a.y == 0.0f ? 0.0f : a.y * exp(a.x - m);
  const float sb = b.y == 0.0f ? 0.0f : b.y * exp(b.x - m);
  return (float2)(m, sa + sb);
}

inline float2 group_lse(float2 state, __local float2 *scratch) {
  const uint lid = get_local_id(0);
  scratch[lid] = state;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint step = CLXENT_GROUP_SIZE / 2; step > 0; step >>= 1) {
    if (lid < step) scratch[lid] = lse_merge(scratch[lid], scratch[lid + step]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float2 total = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return total;
}

/* Adds one logit to a running (m, s): s·e^m = Σ e^z. A -inf logit (a mask) adds nothing. */
inline float2 lse_push(float2 st, float z) {
  if (z > st.x) return (float2)(z, st.y * exp(st.x - z) + 1.0f);
  return (float2)(st.x, st.y + (z == -INFINITY ? 0.0f : exp(z - st.x)));
}

/* Row helpers for the one-item-per-row variant: explicit vectors, then a scalar tail. */
inline float row_max(__global const float *z, ulong c) {
  const ulong cv = c - c % CLXENT_VEC;
  floatv mv = (floatv)(-INFINITY);
  for (ulong j = 0; j < cv; j += CLXENT_VEC) { /* compare-select, not fmax: one maxps, no NaN dance */
    const floatv v = vloadv(0, z + j);
    mv = v > mv ? v : mv;
  }
  float m = hmax(mv);
  for (ulong j = cv; j < c; ++j) m = fmax(m, z[j]);
  return m;
}

/* Σ_j e^{z_j - m}; with out != 0 also stores each e^{z_j - m} in out (which may alias z: each
 * element is read before it is written). */
inline float row_exp_sum(__global const float *z, __global float *out, ulong c, float m) {
  const ulong cv = c - c % CLXENT_VEC;
  floatv sv = (floatv)(0.0f);
  float s = 0.0f;
  if (out) {
    for (ulong j = 0; j < cv; j += CLXENT_VEC) {
      const floatv e = exp(vloadv(0, z + j) - m);
      vstorev(e, 0, out + j);
      sv += e;
    }
    for (ulong j = cv; j < c; ++j) { const float e = exp(z[j] - m); out[j] = e; s += e; }
  } else {
    for (ulong j = 0; j < cv; j += CLXENT_VEC) sv += exp(vloadv(0, z + j) - m);
    for (ulong j = cv; j < c; ++j) s += exp(z[j] - m);
  }
  return hsum(sv) + s;
}

inline void row_scale(__global float *g, ulong c, float k) {
  const ulong cv = c - c % CLXENT_VEC;
  for (ulong j = 0; j < cv; j += CLXENT_VEC) vstorev(vloadv(0, g + j) * k, 0, g + j);
  for (ulong j = cv; j < c; ++j) g[j] *= k;
}

inline void row_fill(__global float *g, ulong c, float v) {
  const ulong cv = c - c % CLXENT_VEC;
  for (ulong j = 0; j < cv; j += CLXENT_VEC) vstorev((floatv)(v), 0, g + j);
  for (ulong j = cv; j < c; ++j) g[j] = v;
}
