/*
 * The direct path (issue 14, small calls): a small float32 hard-label softmax call on a CPU device
 * computed on the calling thread, with the bits the kernels would give it.
 *
 * On PoCL a call's fixed cost is ~100 µs, most of it waking the device's worker threads and
 * waiting for them; a 1×10 call has well under a microsecond of arithmetic. Where the device is
 * the host's own CPU the host can do that arithmetic itself, and does, for calls of at most
 * ctx->direct_max values (the tuning table's, or $CLXENT_DIRECT_MAX; 0 turns it off), an eighth of
 * that for rows it computes lane by lane (direct_limit).
 *
 * The promise is the project's determinism guarantee: a row's loss, lse and gradient bits do not
 * depend on which path ran. So each row is computed with exactly the operations of the kernel the
 * call would have launched (kernels/softmax_xent.cl), in the same order:
 *   CLXENT_SHORT_ROWS    softmax_xent_hard_short: a lane per row, scalar in each lane;
 *   c ≤ CLXENT_ROW_CHUNK softmax_xent_hard (row per item): one chunk of pass 1, its max and its
 *                        sum of exponentials in CLXENT_VEC lanes (j ≡ lane mod VEC) plus a scalar
 *                        tail, the lanes folded by hsum/hmax's fixed halving tree (common.cl);
 *                        then pass 2 from the cached exponentials;
 * the batch sum in reduce_sum's order (clxent_host_reduce). The exponential and logarithm are the
 * kernels' own (kernels/clxent_math.h, the same source compiled as C); the kernels there and in
 * softmax_xent.cl are compiled without contraction and this file with -ffp-contract=off, so every
 * a*b + c is two roundings on both sides and every fused step is an explicit fma. Where the
 * kernel picks the narrow or the general exponential per chunk, the host takes the general one,
 * or the narrow one for a row whose values all lie in its range (narrow_row): they agree bit for
 * bit there (clxent_math.h). tests/test_math.c checks the host's
 * e^x and ln x against the device's on every input of their sweeps; tests/test_direct.c checks
 * whole calls, direct against kernels, byte for byte.
 *
 * What it takes: float32, classes innermost, hard labels, no softcap, no argmax/correct, no bias
 * gradient, c ≤ CLXENT_ROW_CHUNK; every reduction, ignore_index, class weights, label smoothing,
 * z-loss, mean_denominator, grad_output, lse, gradient in place. Anything else, and a context
 * whose kernels are not the ones mirrored here (group variant, the device's own math, extra build
 * options), or a calling thread that does not round to nearest with subnormals (the device's
 * threads do), goes to the kernels.
 */
#include <stdlib.h>
#include <string.h>

#include "clxent_math.h"
#include "internal.h"

#if defined(__GNUC__)
#define DIRECT_INLINE static inline __attribute__((always_inline))
#else
#define DIRECT_INLINE static inline
#endif

/* hsum / hmax of common.cl: lanes [0, w) folded in halves, lane i taking lane i + w/2 */
DIRECT_INLINE float fold_sum(float *v, unsigned w) {
  for (w /= 2; w > 0; w /= 2)
    for (unsigned i = 0; i < w; ++i) v[i] = v[i] + v[i + w];
  return v[0];
}
DIRECT_INLINE float fold_max(float *v, unsigned w) {
  for (w /= 2; w > 0; w /= 2)
    for (unsigned i = 0; i < w; ++i) v[i] = fmaxf(v[i], v[i + w]);
  return v[0];
}

/* What every row of the call shares. */
typedef struct direct_call {
  const clxent_plan *plan;
  unsigned vec;   /* CLXENT_VEC of the context's program */
  float *e;       /* c floats: the row's exponentials (the kernel's cache) */
} direct_call;

/* One row as softmax_xent_hard_short computes a lane: returns the row's loss. */
DIRECT_INLINE float short_row(const direct_call *d, size_t i) {
  const clxent_plan *pl = d->plan;
  const size_t c = pl->c;
  const float *z = (const float *)pl->in + i * c;
  const float *weight = pl->weight;
  const clxent_params p = pl->params;
  const int y = pl->labels[i], ignored = y == pl->ignore_index;
  const float eps = p.smoothing, zl = p.z_loss, W = p.weight_sum;
  const int smooth = eps > 0.0f;
  float m = -INFINITY;
  for (size_t j = 0; j < c; ++j) m = z[j] > m ? z[j] : m;
  float sv = 0.0f, wdev = 0.0f, uy = 0.0f, ey = 0.0f, wy = 0.0f;
  for (size_t j = 0; j < c; ++j) {
    const float u = z[j], e = clxent_exp_own(u - m);
    sv = sv + e;
    const float w = weight ? weight[j] : 1.0f;
    if (smooth && w != 0.0f) wdev = wdev + w * (m - u);
    if ((size_t)y == j && y >= 0) uy = u, ey = e, wy = w;
    d->e[j] = e;
  }
  const float log_s = clxent_log_own(sv), lse = m + log_s, inv_c = 1.0f / (float)c;
  float loss = (1.0f - eps) * wy * ((m - uy) + log_s);
  if (smooth) loss = loss + eps * inv_c * (wdev + W * log_s);
  if (zl != 0.0f) loss = loss + p.z_loss_row * zl * lse * lse;
  if (ignored) loss = 0.0f;
  if (pl->lse) pl->lse[i] = lse;
  float *g = pl->grad ? (float *)pl->grad + i * c : NULL;
  if (!g) return loss;
  const float g_up = pl->row_scale ? pl->row_scale[i] : 1.0f;
  const float S = p.scale * g_up, Sz = p.z_scale * g_up;
  const float k = (S * ((1.0f - eps) * wy + eps * W * inv_c) + 2.0f * zl * lse * Sz) / sv;
  const float K = S * (1.0f - eps) * wy;
  const float B = S * eps * inv_c;
  for (size_t j = 0; j < c; ++j) {
    const float w = weight ? weight[j] : 1.0f;
    const float gv = (size_t)y == j && y >= 0 ? (k * ey - B * wy - K) * 1.0f : (k * d->e[j] - B * w) * 1.0f;
    g[j] = ignored ? 0.0f : gv;
  }
  return loss;
}

/* Every u - ref of z[0, jv) in [-87, 0] (the narrow exponential's range, where it and the general
 * one agree bit for bit, clxent_math.h), or NaN, or u = -inf (a masked class, whose e^{-inf} the
 * vector loop takes from the general exponential): ref is the row's max, so only the low end needs
 * a look. A spread past 87 takes the general loop. */
DIRECT_INLINE int narrow_row(const float *z, size_t jv, float ref) {
  int ok = 1;
  for (size_t j = 0; j < jv; ++j) ok &= !(z[j] - ref < -CLXENT_EXP_FAST_LIMIT) | (z[j] == -INFINITY);
  return ok;
}
/* The lanes of W = 16 or 8 (the context's CLXENT_VEC), in GCC's vector types where the compiler
 * has them: a lane's adds (or compare-selects) one after the other in a register, the same order
 * as the kernel's lanes and as the scalar loops below, so the same bits. Loaded by memcpy (no
 * alignment assumed), and no vector in a signature: the default clone's ABI passes vectors
 * otherwise than the AVX-512 clone's (-Wpsabi). */
#if defined(__GNUC__)
#define DIRECT_VECTORS 1
#define DIRECT_LANES_FNS(W)                                                                         \
  typedef float direct_v##W##f __attribute__((vector_size(4 * (W))));                             \
  typedef int direct_v##W##i __attribute__((vector_size(4 * (W))));                               \
  /* the exponentials (narrow_row's: in [-87, 0], NaN or -inf) into e, their sums into the lanes */\
  DIRECT_INLINE void exp_lanes##W##_narrow(const float *z, size_t jv, float ref, float *e, float *lanes) { \
    const float e_masked = clxent_exp_own(-INFINITY - ref); /* the general loop's, for u = -inf */ \
    for (size_t j = 0; j < jv; ++j) e[j] = z[j] == -INFINITY ? e_masked : clxent_exp1_narrow(z[j] - ref); \
    direct_v##W##f acc, v;                                                                         \
    memcpy(&acc, lanes, sizeof acc);                                                               \
    for (size_t j = 0; j < jv; j += (W)) memcpy(&v, e + j, sizeof v), acc = acc + v;               \
    memcpy(lanes, &acc, sizeof acc);                                                               \
  }                                                                                                \
  /* range_max's lanes: compare-select, a NaN never replaces the lane */                         \
  DIRECT_INLINE void max_lanes##W(const float *z, size_t jv, float *lanes) {                      \
    direct_v##W##f acc, v;                                                                         \
    memcpy(&acc, lanes, sizeof acc);                                                               \
    for (size_t j = 0; j < jv; j += (W)) {                                                         \
      memcpy(&v, z + j, sizeof v);                                                                 \
      const direct_v##W##i take = v > acc;                                                         \
      acc = (direct_v##W##f)(((direct_v##W##i)v & take) | ((direct_v##W##i)acc & ~take));          \
    }                                                                                              \
    memcpy(lanes, &acc, sizeof acc);                                                               \
  }                                                                                                \
  /* label smoothing's lanes: w (ref - u), 0 where w = 0 (w = 1 without weights: 1·x is x) */     \
  DIRECT_INLINE void smooth_lanes##W(const float *z, const float *weight, size_t jv, float ref, float *wl) { \
    direct_v##W##f acc, v, w;                                                                      \
    memcpy(&acc, wl, sizeof acc);                                                                  \
    for (size_t j = 0; j < jv; j += (W)) {                                                         \
      memcpy(&v, z + j, sizeof v);                                                                 \
      const direct_v##W##f dev = ref - v;                                                          \
      if (!weight) {                                                                               \
        acc = acc + dev;                                                                           \
        continue;                                                                                  \
      }                                                                                            \
      memcpy(&w, weight + j, sizeof w);                                                            \
      const direct_v##W##i zero = w == 0.0f;                                                       \
      acc = acc + (direct_v##W##f)((direct_v##W##i)(w * dev) & ~zero);                            \
    }                                                                                              \
    memcpy(wl, &acc, sizeof acc);                                                                  \
  }
DIRECT_LANES_FNS(16)
DIRECT_LANES_FNS(8)
#else
#define DIRECT_VECTORS 0
#endif

/* One row as softmax_xent_hard (row per item) computes it, for c ≤ CLXENT_ROW_CHUNK: one chunk.
 * Returns the row's loss. */
DIRECT_INLINE float item_row(const direct_call *d, size_t i) {
  const clxent_plan *pl = d->plan;
  const size_t c = pl->c, V = d->vec, jv = c - c % V;
  const float *z = (const float *)pl->in + i * c;
  const float *weight = pl->weight;
  float *g = pl->grad ? (float *)pl->grad + i * c : NULL;
  const clxent_params p = pl->params;
  const int y = pl->labels[i], ignored = y == pl->ignore_index;
  if (ignored && !pl->lse) {
    if (g) memset(g, 0, c * sizeof *g);
    return 0.0f;
  }
  const float eps = p.smoothing, zl = p.z_loss;
  const int smooth = eps > 0.0f && !ignored;
  const float zy = ignored ? 0.0f : z[y];
  float lanes[16], wl[16];

  /* range_max over the chunk: compare-select per lane (NaN skipped), hmax, fmax over the tail */
  for (size_t l = 0; l < 16; ++l) lanes[l] = -INFINITY; /* all 16: fold_max reads [0, V) */
#if DIRECT_VECTORS
  if (V == 16)
    max_lanes16(z, jv, lanes);
  else if (V == 8)
    max_lanes8(z, jv, lanes);
  else
#endif
    for (size_t j = 0; j < jv; j += V)
      for (size_t l = 0; l < V; ++l) lanes[l] = z[j + l] > lanes[l] ? z[j + l] : lanes[l];
  float hi = fold_max(lanes, (unsigned)V);
  for (size_t j = jv; j < c; ++j) hi = fmaxf(hi, z[j]);
  const float m = hi; /* the kernel's m: -inf, raised to the chunk's max (never NaN) */
  const float ref = m == -INFINITY ? 0.0f : m;

  /* range_exp_sum against ref: lanes, then the tail from 0, then the folded lanes */
  float wdev = 0.0f;
  for (size_t l = 0; l < V; ++l) lanes[l] = 0.0f, wl[l] = 0.0f;
#if DIRECT_VECTORS
  if ((V == 16 || V == 8) && narrow_row(z, jv, ref)) {
    if (V == 16)
      exp_lanes16_narrow(z, jv, ref, d->e, lanes);
    else
      exp_lanes8_narrow(z, jv, ref, d->e, lanes);
    if (smooth && V == 16)
      smooth_lanes16(z, weight, jv, ref, wl);
    else if (smooth)
      smooth_lanes8(z, weight, jv, ref, wl);
  } else
#endif
    for (size_t j = 0; j < jv; j += V)
      for (size_t l = 0; l < V; ++l) {
        const float u = z[j + l], e = clxent_exp_own(u - ref);
        d->e[j + l] = e;
        lanes[l] = lanes[l] + e;
        if (smooth) {
          const float w = weight ? weight[j + l] : 1.0f;
          wl[l] = wl[l] + (w == 0.0f ? 0.0f : w * (ref - u));
        }
      }
  float tail = 0.0f;
  for (size_t j = jv; j < c; ++j) {
    const float u = z[j], w = weight ? weight[j] : 1.0f, e = clxent_exp_own(u - ref);
    d->e[j] = e;
    tail = tail + e;
    if (smooth && w != 0.0f) wdev = wdev + w * (ref - u);
  }
  if (smooth) wdev = wdev + fold_sum(wl, (unsigned)V);
  const float s = 0.0f + (fold_sum(lanes, (unsigned)V) + tail);

  const float log_s = clxent_log_own(s), lse = m + log_s;
  if (pl->lse) pl->lse[i] = lse;
  if (ignored) {
    if (g) memset(g, 0, c * sizeof *g);
    return 0.0f;
  }
  const float wy = weight ? weight[y] : 1.0f, uy = zy, inv_c = 1.0f / (float)c;
  const float W = p.weight_sum;
  float loss = (1.0f - eps) * wy * ((m - uy) + log_s);
  if (smooth) loss = loss + eps * inv_c * (wdev + W * log_s);
  if (zl != 0.0f) loss = loss + p.z_loss_row * zl * lse * lse;
  if (!g) return loss;

  const float g_up = pl->row_scale ? pl->row_scale[i] : 1.0f;
  const float S = p.scale * g_up, Sz = p.z_scale * g_up;
  const float k = (S * ((1.0f - eps) * wy + eps * W * inv_c) + 2.0f * zl * lse * Sz) / s;
  const float B = S * eps * inv_c, K = S * (1.0f - eps) * wy;
  /* the cache holds e^{u - m} of one segment: f = k */
  const float f = k;
  if (B == 0.0f) {
    for (size_t j = 0; j < jv; ++j) g[j] = d->e[j] * f;
  } else {
    for (size_t j = 0; j < jv; ++j) g[j] = d->e[j] * f - B * (weight ? weight[j] : 1.0f);
  }
  for (size_t j = jv; j < c; ++j) g[j] = d->e[j] * f - B * (weight ? weight[j] : 1.0f);
  g[y] = (k * clxent_exp_own(uy - m) - B * wy - K) * 1.0f;
  return loss;
}

/* Every row: the row losses into out (n floats). Compiled more than once where the compiler can
 * (GCC, clang on x86-64 ELF): with FMA instructions for the fmaf of clxent_math.h, without (fmaf
 * from libm, the same bits, slower) and, where the compiler can, with AVX-512 (DIRECT_CLONES);
 * the loader picks one. Not under ThreadSanitizer: the loader runs the clones' ifunc resolver
 * while relocating the library, before TSan's runtime is up, and every program linking the
 * library then crashes before main. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CLXENT_NO_CLONES 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CLXENT_NO_CLONES 1
#endif
/* An AVX-512 clone (x86-64-v4: the 16-lane vectors in one register) where the compiler handles an
 * arch in target_clones: GCC 12 and later, Clang 18 and later (Clang before 18 builds a resolver
 * that never picks it, LLVM issue 55830; GCC 11 refuses the attribute). */
#if defined(__clang__) ? __clang_major__ >= 18 : (defined(__GNUC__) && __GNUC__ >= 12)
#define DIRECT_CLONES "arch=x86-64-v4", "fma", "default"
#else
#define DIRECT_CLONES "fma", "default"
#endif
#if defined(__x86_64__) && defined(__ELF__) && defined(__has_attribute) && !defined(CLXENT_NO_CLONES)
#if __has_attribute(target_clones)
__attribute__((target_clones(DIRECT_CLONES)))
#endif
#endif
static void direct_rows(const direct_call *d, float *out) {
  const clxent_plan *pl = d->plan;
  if (CLXENT_SHORT_ROWS(pl->c, pl->params.softcap))
    for (size_t i = 0; i < pl->n; ++i) out[i] = short_row(d, i);
  else
    for (size_t i = 0; i < pl->n; ++i) out[i] = item_row(d, i);
}

/* The most values a call the host takes may have: direct_max where item_row's loops are vectors
 * (8 or 16 lanes), an eighth of it where the rows go lane by lane (short rows, 4 lanes, a compiler
 * without vector types), ~8 times slower a value (docs/PERFORMANCE.md, "Small calls: the direct
 * path in vectors"). */
#define DIRECT_SCALAR_SHARE 8
static size_t direct_limit(const clxent_ctx *ctx, const clxent_plan *plan) {
  const int vectors = DIRECT_VECTORS && (ctx->vector_width == 8 || ctx->vector_width == 16) &&
                      !CLXENT_SHORT_ROWS(plan->c, plan->params.softcap);
  return vectors ? ctx->direct_max : ctx->direct_max / DIRECT_SCALAR_SHARE;
}

/* Besides the options: a call the kernels' path would refuse for its buffers (a row longer than a
 * streaming block, per-row results past the largest allocation: settings that cap them) goes to
 * it and is refused there, so that no call's status depends on the path either. */
int clxent_direct_takes(const clxent_ctx *ctx, const clxent_plan *plan) {
  return ctx->direct_max && !ctx->group && plan->kernel == KERNEL_SOFTMAX_HARD && plan->dtype == CLXENT_FLOAT32 &&
         plan->inner <= 1 && !plan->elementwise && !plan->argmax && !plan->bias_grad &&
         plan->params.softcap == 0.0f && plan->c <= CLXENT_ROW_CHUNK && plan->n <= direct_limit(ctx, plan) / plan->c &&
         (cl_ulong)(plan->c * sizeof(float)) <= ctx->block_bytes &&
         (cl_ulong)(plan->n * sizeof(float)) <= ctx->max_alloc && clxent_host_float_is_devices();
}

clxent_status clxent_direct(clxent_ctx *ctx, const clxent_plan *plan, int *done) {
  *done = 0;
  const size_t n = plan->n, c = plan->c, G = ctx->group_size;
  /* row losses, the reduction's G lanes, the row's exponentials */
  float *scratch = clxent_host_scratch(ctx, (n + G + c) * sizeof(float));
  if (!scratch) return CLXENT_OK; /* the kernels then */
  const direct_call d = {plan, ctx->vector_width, scratch + n + G};
  direct_rows(&d, scratch);
  if (plan->loss) {
    if (plan->reduction == CLXENT_NONE)
      memcpy(plan->loss, scratch, n * sizeof(float));
    else
      *plan->loss = clxent_host_reduce(scratch, n, G, plan->divisor, scratch + n);
  }
  *done = 1;
  PIECE(ctx, "direct: rows and reduction on the host", NULL);
  return CLXENT_OK;
}
