/*
 * clxent's own elementary functions for the hot loops: e^x and ln x (their scalar forms and the
 * mathematics are in clxent_math.h, shared with the host's direct path), their CLXENT_VEC-wide
 * forms, and from e^x tanh (softcap) and ln(1 + e^-|z|) (binary cross-entropy). Scalar and vector
 * forms compute the same bits for the same input: a vector lane does the scalar's operations.
 *
 * CLXENT_OWN_MATH 0 (the tuning table's choice per device) maps them to the device's exp, log, tanh
 * and log1p instead: a GPU's exp is a hardware instruction and cheaper than this polynomial.
 */

#ifndef CLXENT_OWN_MATH
#define CLXENT_OWN_MATH 1
#endif

/* The vector halves of e^x (clxent_math.h's scalar ones, lane by lane), contraction off as there. */
#pragma OPENCL FP_CONTRACT OFF
/* CLXENT_HAS_SCALEF: AVX-512's vscalefps, p·2^floor(k) in one instruction with one rounding, where
 * the kernels are compiled for such an x86 CPU with 16 lanes (PoCL passes the CPU's features). The
 * scalar forms build 2^k from its exponent bits (two factors where 2^k alone would leave the
 * normal range) and multiply: an exact product wherever the result is normal (p is in
 * [0.7, 1.42]), and where it underflows the first factor is exact and the second rounds once, as
 * vscalefps does: the same bits for every x (tests/test_math.c compares every input), in one
 * operation instead of three (narrow) or nine (wide): 0.93-0.98x the time where the exponentials
 * set it (short rows, the sigmoid, softcap; docs/PERFORMANCE.md, "Eleventh round"). A NaN p
 * (x NaN) stays p's NaN, quieted, as the product keeps it. */
#ifndef CLXENT_HAS_SCALEF /* -DCLXENT_HAS_SCALEF=0: the bit path, to measure against */
#if defined(__clang__) && defined(__AVX512F__) && defined(__x86_64__) && CLXENT_VEC == 16
#define CLXENT_HAS_SCALEF 1
#else
#define CLXENT_HAS_SCALEF 0
#endif
#endif
#if CLXENT_HAS_SCALEF
inline floatv clxent_scalev(floatv p, floatv kf) {
  return __builtin_ia32_scalefps512_mask(p, kf, p, (ushort)0xffffu, 4 /* _MM_FROUND_CUR_DIRECTION */);
}
#endif
/* |x| > 87, ±inf, NaN */
inline floatv clxent_expv1_wide(floatv x) {
  floatv xc = select(x, (floatv)(-104.0f), x < -104.0f);
  xc = select(xc, (floatv)(89.0f), xc > 89.0f);
  const floatv t = CLXENT_EXP_T(floatv, xc), kf = t - CLXENT_EXP_SHIFTER;
  const floatv r = CLXENT_EXP_R(floatv, xc, kf);
#if CLXENT_HAS_SCALEF
  return clxent_scalev(CLXENT_EXP_POLY(floatv, r), kf);
#else
  const intv k = CLXENT_CAT(as_int, CLXENT_VEC)(CLXENT_CAT(as_uint, CLXENT_VEC)(t) - CLXENT_EXP_SHIFTER_BITS);
  const intv k1 = k >> 1, k2 = k - k1;
  return CLXENT_EXP_POLY(floatv, r) * CLXENT_CAT(as_float, CLXENT_VEC)((k1 + 127) << 23) *
         CLXENT_CAT(as_float, CLXENT_VEC)((k2 + 127) << 23);
#endif
}
/* |x| ≤ 87 or NaN */
inline floatv clxent_expv1_narrow(floatv x) {
  const floatv t = CLXENT_EXP_T(floatv, x), kf = t - CLXENT_EXP_SHIFTER;
  const floatv r = CLXENT_EXP_R(floatv, x, kf);
#if CLXENT_HAS_SCALEF
  return clxent_scalev(CLXENT_EXP_POLY(floatv, r), kf);
#else
  return CLXENT_EXP_POLY(floatv, r) *
         CLXENT_CAT(as_float, CLXENT_VEC)((CLXENT_CAT(as_uint, CLXENT_VEC)(t) << 23) + 0x3f800000u);
#endif
}
CLXENT_LOG_DEFINE(clxent_logv_own, floatv, intv, uintv, CLXENT_CAT(as_uint, CLXENT_VEC), CLXENT_CAT(as_int, CLXENT_VEC),
                  CLXENT_CAT(as_float, CLXENT_VEC), CLXENT_CAT(convert_float, CLXENT_VEC))
#pragma OPENCL FP_CONTRACT ON

/* clxent_exp, clxent_expv: any x. clxent_expv_narrow: x known to be in [-87, 87] or NaN (the
 * softmax passes know it per chunk from the values' min and max), which skips the range test:
 * a vector test needs a horizontal reduction (any()), which PoCL compiles to a chain of shuffles
 * and branches costing as much as the exponential itself, so the general vector form is the wide
 * path alone, without a branch. On [-87, 87] the two paths give the same bits (clxent_math.h), so
 * which one a chunk takes never shows in a result.
 * clxent_log, clxent_logv: ln of the softmax sums (every softmax kernel), shared with the host. */
#if CLXENT_OWN_MATH
inline float clxent_exp(float x) { return clxent_exp_own(x); }
inline floatv clxent_expv_narrow(floatv x) { return clxent_expv1_narrow(x); }
/* the wide path alone (once a select of both, two exponentials where one gives the same bits) */
inline floatv clxent_expv(floatv x) { return clxent_expv1_wide(x); }
inline float clxent_log(float x) { return clxent_log_own(x); }
inline floatv clxent_logv(floatv x) { return clxent_logv_own(x); }
#else
inline float clxent_exp(float x) { return exp(x); }
inline floatv clxent_expv_narrow(floatv x) { return exp(x); }
inline floatv clxent_expv(floatv x) { return exp(x); }
inline float clxent_log(float x) { return log(x); }
inline floatv clxent_logv(floatv x) { return log(x); }
#endif
/* whether every x in [lo, hi] may take clxent_expv_narrow */
inline int clxent_exp_narrow_range(float lo, float hi) {
  return lo >= -CLXENT_EXP_FAST_LIMIT && hi <= CLXENT_EXP_FAST_LIMIT;
}

/* ln(1 + x) for x in [-1, 1] (the binary losses': ln(1 + e^-|z|) with e^-|z| in [0, 1], and
 * ln(1 - a) for a probability a), musl's log1pf (from FreeBSD), branch-free for vectors:
 *   1 + x in [√2/2, √2):  f = x itself, k = 0 (no rounding of 1 + x at all);
 *   else u = 1 + x = 2^k (1 + f), 1 + f in [√2/2, √2), read off the bits as in ln x (clxent_math.h),
 *        and c = (x - (u - 1)) / u the rounding of 1 + x, a correction: ln(1 + x) = ln u + c to
 *        first order (x ≤ 1 gives k ≤ 1, where u - 1 is exact);
 *   ln(1 + f) = f - f²/2 + s (f²/2 + R),  s = f / (2 + f), R ln x's polynomial, then k ln 2 in two
 *   parts, the big terms last. x = -1: -inf; x < -1 or NaN: NaN; ±0 itself (BCE's -(a) at a = 0).
 * tests/test_math.c checks every float32 x in [0, 1] (the form given 1 / (1 + x), below) and every
 * 8th in [-1, 0] against float64 log1p: ≤ 1 ulp, the scalar's bits. CLXENT_OWN_MATH 0: the
 * device's log1p. */
#pragma OPENCL FP_CONTRACT OFF
#define CLXENT_LOG1P_DEFINE(NAME, T, I, U, AS_U, U_AS_I, U_AS_F, I_TO_F, INV_ARG, OVER_U)                   \
  inline T NAME(T x INV_ARG) {                                                                             \
    const I near = x >= (T)(-0x1.2bec32p-2f) && x < (T)(0x1.a827a0p-2f); /* 1 + x in [√2/2, √2) */          \
    const T u = (T)(1.0f) + x;                                                                             \
    const U iu = AS_U(u) + (U)(0x3f800000u - 0x3f3504f3u);                                                \
    const T f = select(U_AS_F((iu & (U)(0x007fffffu)) + (U)(0x3f3504f3u)) - (T)(1.0f), x, near);            \
    const T c = select((x - (u - (T)(1.0f))) OVER_U, (T)(0.0f), near);                                     \
    const T dk = select(I_TO_F(U_AS_I(iu >> 23) - (I)(0x7f)), (T)(0.0f), near);                           \
    const T s = f / ((T)(2.0f) + f), z = s * s, w = z * z;                                                 \
    const T R = z * ((T)(CLXENT_LOG_LG1) + w * (T)(CLXENT_LOG_LG3)) +                                      \
                w * ((T)(CLXENT_LOG_LG2) + w * (T)(CLXENT_LOG_LG4));                                       \
    const T hfsq = (T)(0.5f) * f * f;                                                                      \
    const T r = s * (hfsq + R) + (dk * (T)(CLXENT_LOG_LN2_LO) + c) - hfsq + f + dk * (T)(CLXENT_LOG_LN2_HI); \
    const T v = select(select(r, (T)(-INFINITY), x == (T)(-1.0f)), U_AS_F((U)(0x7fc00000u)), x < (T)(-1.0f)); \
    return select(v, x, x != x || x == (T)(0.0f)); /* NaN and ±0: themselves (log1p(-0) = -0) */          \
  }
#define CLXENT_NO_ARG
#define CLXENT_OVER_U / u
#define CLXENT_INV_ARG(T) , T inv
#define CLXENT_TIMES_INV * inv
CLXENT_LOG1P_DEFINE(clxent_log1p_own, float, int, uint, as_uint, as_int, as_float, convert_float, CLXENT_NO_ARG,
                    CLXENT_OVER_U)
CLXENT_LOG1P_DEFINE(clxent_log1pv_own, floatv, intv, uintv, CLXENT_CAT(as_uint, CLXENT_VEC), CLXENT_CAT(as_int, CLXENT_VEC),
                    CLXENT_CAT(as_float, CLXENT_VEC), CLXENT_CAT(convert_float, CLXENT_VEC), CLXENT_NO_ARG, CLXENT_OVER_U)
/* The same given inv = 1 / (1 + x), which the sigmoid's gradient needs anyway: the correction c
 * multiplied by it instead of divided by 1 + x, one division fewer per value (c is below half an
 * ulp of 1 + x, so its own extra rounding is far below the result's). */
CLXENT_LOG1P_DEFINE(clxent_log1p_inv_own, float, int, uint, as_uint, as_int, as_float, convert_float,
                    CLXENT_INV_ARG(float), CLXENT_TIMES_INV)
CLXENT_LOG1P_DEFINE(clxent_log1pv_inv_own, floatv, intv, uintv, CLXENT_CAT(as_uint, CLXENT_VEC),
                    CLXENT_CAT(as_int, CLXENT_VEC), CLXENT_CAT(as_float, CLXENT_VEC), CLXENT_CAT(convert_float, CLXENT_VEC),
                    CLXENT_INV_ARG(floatv), CLXENT_TIMES_INV)
#pragma OPENCL FP_CONTRACT ON
#if CLXENT_OWN_MATH
inline float clxent_log1p(float x) { return clxent_log1p_own(x); }
inline floatv clxent_log1pv(floatv x) { return clxent_log1pv_own(x); }
inline float clxent_log1p_inv(float x, float inv) { return clxent_log1p_inv_own(x, inv); }
inline floatv clxent_log1pv_inv(floatv x, floatv inv) { return clxent_log1pv_inv_own(x, inv); }
#else
inline float clxent_log1p(float x) { return log1p(x); }
inline floatv clxent_log1pv(floatv x) { return log1p(x); }
inline float clxent_log1p_inv(float x, float inv) { return log1p(x); }
inline floatv clxent_log1pv_inv(floatv x, floatv inv) { return log1p(x); }
#endif

/* tanh and sech² for x ≥ 0 (the softcap's), from the same pieces:
 *   x < 0.55:  tanh x = x + x·x²·R(x²), R of degree 3, a minimax fit for the relative error
 *              (3.7e-8, 0.62 of 2^-24; degree 4 and 5 fits err 1.0e-9 and 3e-11, but cost one and
 *              two operations more a value in softcap's pass 1, bound by its arithmetic: 0.96x and
 *              0.92x the time with degree 3, docs/PERFORMANCE.md, "Thirteenth round"), and
 *              sech² x = 1 - tanh² x (tanh² < 1/4 there: no cancellation);
 *   x ≥ 0.55:  with e = e^{-2x} ≤ 1/3:  tanh x = 1 - 2e/(1+e),  sech² x = 4e/(1+e)²  (no 1 - t²
 *              cancelling near saturation; e = 0 gives 1 and 0, x = inf too). NaN stays NaN.
 * tests/test_math.c checks both against float64 over every float32 x in [0, 9.1] (tanh rounds to
 * 1 beyond). */
#define CLXENT_TANH_SPLIT 0.55f
#define CLXENT_TANH_R(s)                                                                            \
  (-0x1.555452p-2f + (s) * (0x1.10cef8p-3f + (s) * (-0x1.af7cdep-5f + (s) * 0x1.0d507ap-6f)))
#define CLXENT_TANH_POLY(x, s) ((x) + (x) * (s) * CLXENT_TANH_R(s))

inline float tanh_nonneg(float x, float *sech2) {
  if (x < CLXENT_TANH_SPLIT) {
    const float t = CLXENT_TANH_POLY(x, x * x);
    *sech2 = 1.0f - t * t;
    return t;
  }
  const float e = clxent_exp(-2.0f * x), d = 1.0f + e;
  *sech2 = 4.0f * e / (1.0f + e * (2.0f + e));
  return 1.0f - 2.0f * e / d;
}
inline floatv tanh_nonnegv(floatv x, floatv *sech2) {
  const floatv e = clxent_expv(-2.0f * x), d = 1.0f + e, series = CLXENT_TANH_POLY(x, x * x);
  const intv small = x < CLXENT_TANH_SPLIT;
  const floatv t = select(1.0f - 2.0f * e / d, series, small);
  *sech2 = select(4.0f * e / (1.0f + e * (2.0f + e)), 1.0f - t * t, small);
  return t;
}

/* tanh x for x ≥ CLXENT_TANH_SPLIT (or NaN), one narrow exponential (tanh_nonnegv_value's and
 * softcap's cap_logitv's) */
inline floatv tanh_nonnegv_exp(floatv x) {
  const floatv a = -2.0f * x;
  const floatv e = clxent_expv_narrow(select(a, (floatv)(-CLXENT_EXP_FAST_LIMIT), a < -CLXENT_EXP_FAST_LIMIT));
  return 1.0f - 2.0f * e / (1.0f + e);
}
/* tanh x alone, x ≥ 0 (softcap's pass 1, which needs no slope): tanh_nonnegv's t bit for bit, with
 * one exponential instead of clxent_expv's two paths. e^{-2x} is taken at max(-2x, -87), in the
 * narrow exponential's range: below it, any e ≤ e^-87 gives 2e/(1+e) < 2^-124, and 1 minus that
 * rounds to 1, as the true e does (x = +inf too); NaN stays NaN (the select keeps it). The slope
 * needs the true e (sech² x = 4e/(1+e)² underflows gradually), so tanh_nonnegv keeps both paths. */
inline floatv tanh_nonnegv_value(floatv x) {
  return select(tanh_nonnegv_exp(x), CLXENT_TANH_POLY(x, x * x), x < CLXENT_TANH_SPLIT);
}

/* Logit softcap with its slope, for s > 0:  u = s·tanh(z/s),  du/dz = 1 - tanh²(z/s) = sech²(z/s).
 * z = -inf stays -inf with slope 0: a masked class remains masked. s = 0 means no cap: u = z,
 * slope 1. x0 = |z|·(1/s) (one division a call, not a value) picks the branch, the same test as
 * the chunks' (softmax_xent.cl: the max and min of z times 1/s); scalar and vector forms do the
 * same operations, so that a row's tail takes its vector lanes' bits.
 *   x0 < CLXENT_TANH_SPLIT:  u = z + z·q·R(q), q = x0² (CLXENT_CAP_SERIES): the tanh series times
 *       s with s folded into z. It is odd in z (but at -0, which gives +0: the correction -z³/3
 *       is +0 there; no loss or gradient sees a zero's sign), so it needs no |z|, no copysign
 *       and no product by s: softcap's pass 1, bound by its arithmetic, does 7 vector
 *       operations for the cap instead of 12 (with R's degree 3). No rounding of |z|/s feeds
 *       its leading term: tests/test_math.c checks every float32 z in [0, 0.55 s] for s = 30
 *       (1.48 ulp at most; 0.82 with this form and R of degree 5, every 64th z). Slope 1 - t²,
 *       t the tanh series at x0 (tanh_nonneg's);
 *   else:  u = ±s·tanh(x0), tanh = 1 - 2e/(1 + e), e = e^{-2·x0}, slope 4e/(1 + e(2 + e))
 *       (tanh_nonneg's, whose t and sech² the slope-giving forms take):
 *       4.37 ulp at most at s = 30 (every z in [16.5, 273]): tanh's 1.5 ulp counted in ulps of
 *       s·t (up to 2 of t's for s = 30), and x0's two roundings carried by tanh's slope. x0
 *       corrected by its residual (|z| - s·x0 by an fma, times 1/s) gave 3.82 ulp, but 1.07x the
 *       time of a chunk past the series (docs/PERFORMANCE.md, "Thirteenth round"). */
#define CLXENT_CAP_SERIES(z, q) ((z) + (z) * (q) * CLXENT_TANH_R(q))
inline float cap_logit_slope(float z, float s, float *slope) {
  if (s == 0.0f) return *slope = 1.0f, z;
  if (z == -INFINITY) return *slope = 0.0f, z;
  const float x0 = fabs(z) * (1.0f / s), t = tanh_nonneg(x0, slope);
  return x0 < CLXENT_TANH_SPLIT ? CLXENT_CAP_SERIES(z, x0 * x0) : copysign(s * t, z);
}
inline float cap_logit(float z, float s) {
  float slope;
  return cap_logit_slope(z, s, &slope);
}
inline float cap_slope(float z, float s) {
  float slope;
  cap_logit_slope(z, s, &slope);
  return slope;
}
/* u and du/dz, vectors: tanh_nonnegv's t and sech² at x0 (its series' R(x0²) is the cap's too: the
 * compiler computes it once) */
inline floatv cap_logit_slopev(floatv z, float s, floatv *slope) {
  const intv masked = z == (floatv)(-INFINITY);
  const floatv x0 = fabs(z) * (1.0f / s), t = tanh_nonnegv(x0, slope);
  *slope = select(*slope, (floatv)(0.0f), masked);
  return select(select(copysign(s * t, z), CLXENT_CAP_SERIES(z, x0 * x0), x0 < CLXENT_TANH_SPLIT), z, masked);
}
/* u where every |z|/s < CLXENT_TANH_SPLIT (a softcap chunk whose max and min say so): the series
 * alone, which the general form selects there anyway: the same bits, at a fraction of the cost
 * (no exponential, no division). Logits within ±0.55·s, the common case (s = 30: |z| < 16.5). */
inline floatv cap_logitv_small(floatv z, float s) {
  const floatv x0 = z * (1.0f / s); /* x0² = |x0|² */
  return CLXENT_CAP_SERIES(z, x0 * x0);
}
/* u alone, vectors (pass 1): past the series tanh_nonnegv_exp, one narrow exponential of a
 * clamped argument (the same bits as clxent_expv's tanh, above) */
inline floatv cap_logitv(floatv z, float s) {
  const floatv x0 = fabs(z) * (1.0f / s);
  return select(select(copysign(s * tanh_nonnegv_exp(x0), z), CLXENT_CAP_SERIES(z, x0 * x0), x0 < CLXENT_TANH_SPLIT), z,
                z == (floatv)(-INFINITY));
}
