/*
 * Binary cross-entropy, elementwise: CLXENT_VEC values per work-item (below). A launch covers
 * `count` values of the batch's n·cols, starting at flat index `first` (the batch's value k is in
 * column k mod cols); loss[i] receives the unscaled loss of the launch's value i, which the host streams out or folds into chunk sums (reduce.cl), and
 * grad[i] its gradient times `scale` (the reduction's). With pos_weight p (per column,
 * BCEWithLogitsLoss's rule) the positive term is weighted:
 *   loss = -[p·y ln a + (1-y) ln(1-a)],   dL/da = (a (1-y) - p·y (1-a)) / (a (1-a))
 * (the numerator is a - y for p = 1, written so that a = y = 1 gives exactly 0).
 * row_scale, if given, holds the launch's upstream gradients (opts->grad_output under NONE), one per
 * value like loss[i]: value i's gradient is multiplied by it (the loss is not).
 */

#define BINARY_ARGS(input)                                                                          \
  const ulong count, const ulong first, __global const store_t *input, __global const store_t *targets, \
      __global const float *pos_weight, const int cols, const float scale, __global store_t *grad,   \
      __global float *loss, __global const float *row_scale

/* A work-item takes CLXENT_VEC consecutive values as one vector (the row kernels' explicit vector
 * loops), the last item's remainder one by one with the same operations, so that a value's bits do
 * not depend on where a launch's blocks begin (a NaN's payload may: IEEE 754 leaves it open).
 * Before, one value per item with the device's exp and log1p: PoCL's vectorisation across
 * work-items stopped at the scalar log1p calls, 32-36 ns a value, 1-2% of the copy's speed
 * (docs/PERFORMANCE.md, "Ninth round: the binary losses"). Contraction off, so that the vector and scalar
 * forms round alike. */
#pragma OPENCL FP_CONTRACT OFF

/* From logits, sigmoid fused:  a = σ(z),  -ln a = softplus(-z),  -ln(1-a) = softplus(z), with
 *   softplus(±z) = max(±z, 0) + ln(1 + e^{-|z|})   (never overflows)
 *   dL/dz = S · (a (1-y) - p·y (1-a)),   a = σ(z) and 1-a = σ(-z) from e^{-|z|}: no overflow,
 *   and no 1 - a cancellation; at z = ±inf both are exact (a = 1 or 0).
 * Selects on comparisons instead of fmax, so that a NaN z reaches the loss. A term whose weight is
 * 0 adds 0, also where its softplus is +inf (z = ±inf): the limits z → +inf, y = 1 and z → -inf,
 * y = 0 are 0, not inf - inf. One formula with and without pos_weight (p = 1), so that pos_weight
 * all ones gives the same bits as none. T: float or floatv; EXP, LOG1P its forms (ln(1 + x) given
 * 1 / (1 + x), which σ needs anyway); dz the gradient before the scale. */
#define SIGMOID_TERM(T, EXP, LOG1P, z, y, pw, loss, dz)                                                    \
  do {                                                                                                     \
    const T e_ = EXP(-fabs(z)), inv_ = (T)(1.0f) / ((T)(1.0f) + e_);                                       \
    const T log1p_e_ = LOG1P(e_, inv_); /* e in [0, 1]; NaN stays NaN */                                   \
    const T sp_neg_ = select((T)(0.0f), -(z), (z) < (T)(0.0f)) + log1p_e_;                                 \
    const T sp_pos_ = select((T)(0.0f), (z), (z) > (T)(0.0f)) + log1p_e_;                                  \
    const T wp_ = (pw) * (y), wn_ = (T)(1.0f) - (y);                                                       \
    (loss) = select(wp_ * sp_neg_, (T)(0.0f), wp_ == (T)(0.0f)) + select(wn_ * sp_pos_, (T)(0.0f), wn_ == (T)(0.0f)); \
    const T e_inv_ = e_ * inv_;                                                                            \
    const T a_ = select(e_inv_, inv_, (z) >= (T)(0.0f)), one_minus_a_ = select(inv_, e_inv_, (z) >= (T)(0.0f)); \
    (dz) = a_ * wn_ - wp_ * one_minus_a_;                                                                  \
  } while (0)

/* pos_weight of the launch's values i .. i + CLXENT_VEC (column (first + i) mod cols), or 1 */
inline float pos_weight_of(__global const float *pos_weight, ulong k, int cols) {
  return pos_weight ? pos_weight[k % (ulong)cols] : 1.0f;
}
inline floatv pos_weights_of(__global const float *pos_weight, ulong k, int cols) {
  floatv w = (floatv)(1.0f);
  if (pos_weight)
    for (int l = 0; l < CLXENT_VEC; ++l) ((float *)&w)[l] = pos_weight[(k + (ulong)l) % (ulong)cols];
  return w;
}

/* The launch's values i .. i + CLXENT_VEC (SIGMOID_V) or value i alone (SIGMOID_1): loss into l, the
 * gradient stored. The vector and scalar forms round alike (contraction off). */
#define SIGMOID_V(i, l)                                                                                   \
  {                                                                                                       \
    const floatv z_ = LOADV(logits, i), y_ = LOADV(targets, i), pw_ = pos_weights_of(pos_weight, first + (i), cols); \
    floatv dz_;                                                                                           \
    SIGMOID_TERM(floatv, clxent_expv, clxent_log1pv_inv, z_, y_, pw_, l, dz_);                             \
    if (grad) STOREV((row_scale ? scale * vloadv(0, row_scale + (i)) : (floatv)(scale)) * dz_, grad, i);  \
  }
#define SIGMOID_1(i, l)                                                                                   \
  {                                                                                                       \
    const float z_ = LOAD(logits, i), y_ = LOAD(targets, i), pw_ = pos_weight_of(pos_weight, first + (i), cols); \
    float dz_;                                                                                            \
    SIGMOID_TERM(float, clxent_exp, clxent_log1p_inv, z_, y_, pw_, l, dz_);                                \
    if (grad) STORE((row_scale ? scale * row_scale[i] : scale) * dz_, grad, i);                           \
  }

__kernel void sigmoid_xent(BINARY_ARGS(logits)) {
  const ulong i0 = get_global_id(0) * CLXENT_VEC;
  if (i0 >= count) return;
  if (i0 + CLXENT_VEC <= count) {
    floatv l;
    SIGMOID_V(i0, l);
    vstorev_g(l, loss + i0);
    return;
  }
  for (ulong i = i0; i < count; ++i) {
    float l;
    SIGMOID_1(i, l);
    loss[i] = l;
  }
}

/* From probabilities (PyTorch's BCELoss): each log clamped at -100 so a = 0 or 1 stays finite,
 * dL/da divided by max(a (1 - a), 1e-12). The clamps are selects on comparisons, not fmax, because
 * fmax would swallow a NaN. ln(1 - a) is log1p(-a): exact near a = 0, where 1 - a rounds. num / d
 * is the gradient before the scale (num = a - y without pos_weight, weighted: which one, `weighted`). */
#define BCE_TERM(T, LOG, LOG1P, a, y, pw, weighted, loss, num, d)                                           \
  do {                                                                                                     \
    const T log_a_ = LOG(a), log_1ma_ = LOG1P(-(a));                                                       \
    const T la_ = select(log_a_, (T)(-100.0f), log_a_ < (T)(-100.0f));                                     \
    const T l1a_ = select(log_1ma_, (T)(-100.0f), log_1ma_ < (T)(-100.0f));                                \
    (loss) = -((pw) * (y) * la_ + ((T)(1.0f) - (y)) * l1a_);                                               \
    const T d_ = (a) * ((T)(1.0f) - (a));                                                                  \
    (d) = select(d_, (T)(1e-12f), d_ < (T)(1e-12f));                                                       \
    (num) = (weighted) ? (a) * ((T)(1.0f) - (y)) - (pw) * (y) * ((T)(1.0f) - (a)) : (a) - (y);             \
  } while (0)

#define BCE_V(i, l)                                                                                       \
  {                                                                                                       \
    const floatv a_ = LOADV(probs, i), y_ = LOADV(targets, i), pw_ = pos_weights_of(pos_weight, first + (i), cols); \
    floatv bnum_, bden_;                                                                                      \
    BCE_TERM(floatv, clxent_logv, clxent_log1pv, a_, y_, pw_, pos_weight, l, bnum_, bden_);                   \
    if (grad) STOREV((row_scale ? scale * vloadv(0, row_scale + (i)) : (floatv)(scale)) * bnum_ / bden_, grad, i); \
  }
#define BCE_1(i, l)                                                                                       \
  {                                                                                                       \
    const float a_ = LOAD(probs, i), y_ = LOAD(targets, i), pw_ = pos_weight_of(pos_weight, first + (i), cols); \
    float bnum_, bden_;                                                                                       \
    BCE_TERM(float, clxent_log, clxent_log1p, a_, y_, pw_, pos_weight, l, bnum_, bden_);                      \
    if (grad) STORE((row_scale ? scale * row_scale[i] : scale) * bnum_ / bden_, grad, i);                     \
  }

__kernel void bce(BINARY_ARGS(probs)) {
  const ulong i0 = get_global_id(0) * CLXENT_VEC;
  if (i0 >= count) return;
  if (i0 + CLXENT_VEC <= count) {
    floatv l;
    BCE_V(i0, l);
    vstorev_g(l, loss + i0);
    return;
  }
  for (ulong i = i0; i < count; ++i) {
    float l;
    BCE_1(i, l);
    loss[i] = l;
  }
}

/* The batch sum's chunk sums computed in the loss kernel itself (CLXENT_HAS_TRANSPOSE_16: Clang, 16
 * lanes). The batch loss of the binary losses is the sum of chunk sums, chunk k being the batch's
 * values [64k, 64k + 64) added one after the other from 0 (reduce.cl's chunk_sum, whose order is
 * the documented one). Through chunk_sum every value's loss went out to memory and back: 20 bytes a
 * value moved where 12 must, and chunk_sum's 64 sequential additions per chunk took 15% of the
 * call (perf, docs/PERFORMANCE.md "Ninth round"). Here a work-item owns 16 chunks, one per lane:
 * it computes its 1024 values' losses front to back (the vector form above, or value by value
 * at the launch's edges, the same bits) into a private array, then for each quarter b of a chunk
 * transposes the 16 chunks' b-th vectors (row j = chunk j's 16 values -> vector t = every chunk's
 * value t) and adds vector after vector: lane j adds chunk j's values one after the other,
 * chunk_sum's order exactly. (Computed quarter by quarter, the 16 chunks 256 bytes apart, the
 * loads were 16 streams: 1.06x chunk_sum's time at 4096 x 32000.) A chunk cut by the launch's first
 * value starts from the sum the previous launch left in partial[k] (as chunk_sum does); values
 * outside the launch add +0, which changes no sum (a sum started from +0 is never -0). partial is
 * the `loss` argument: partial[k] for every chunk k the launch touches. */
#if CLXENT_HAS_TRANSPOSE_16
#define BINARY_SUMS_KERNEL(NAME, INPUT, TERM_V, TERM_1)                                                   \
  __kernel void NAME(BINARY_ARGS(INPUT)) {                                                                \
    const ulong k0 = first / CLXENT_SUM_CHUNK + get_global_id(0) * 16, end = first + count;                \
    if (k0 * CLXENT_SUM_CHUNK >= end) return;                                                             \
    floatv acc = (floatv)(0.0f), L[CLXENT_SUM_CHUNK];                                                    \
    if (k0 * CLXENT_SUM_CHUNK < first) acc.s0 = loss[k0]; /* the launch's first chunk, cut */            \
    /* the item's 1024 values front to back (one stream from memory), their losses into L */             \
    const long i0 = (long)(k0 * CLXENT_SUM_CHUNK) - (long)first; /* in the launch */                      \
    for (uint q = 0; q < CLXENT_SUM_CHUNK; ++q) {                                                         \
      const long i = i0 + 16 * (long)q;                                                                   \
      if (i >= 0 && (ulong)i + 16 <= count) {                                                             \
        TERM_V((ulong)i, L[q]);                                                                           \
      } else {                                                                                            \
        float lanes[16];                                                                                  \
        for (int l = 0; l < 16; ++l) {                                                                    \
          lanes[l] = 0.0f;                                                                                \
          if (i + l >= 0 && (ulong)(i + l) < count) TERM_1((ulong)(i + l), lanes[l]);                     \
        }                                                                                                 \
        L[q] = vload16(0, lanes);                                                                         \
      }                                                                                                   \
    }                                                                                                     \
    /* quarter b of every chunk: L[4j + b] is chunk j's values 16b .. 16b + 15 */                         \
    for (uint b = 0; b < 4; ++b) {                                                                        \
      floatv R[16];                                                                                       \
      for (uint j = 0; j < 16; ++j) R[j] = L[4 * j + b];                                                  \
      clxent_transpose16(R);                                                                              \
      for (uint t = 0; t < 16; ++t) acc += R[t];                                                          \
    }                                                                                                     \
    float sums[16];                                                                                       \
    vstore16(acc, 0, sums);                                                                               \
    for (uint j = 0; j < 16 && (k0 + j) * CLXENT_SUM_CHUNK < end; ++j) loss[k0 + j] = sums[j];            \
  }
BINARY_SUMS_KERNEL(sigmoid_xent_sums, logits, SIGMOID_V, SIGMOID_1)
BINARY_SUMS_KERNEL(bce_sums, probs, BCE_V, BCE_1)
#endif

#pragma OPENCL FP_CONTRACT ON
