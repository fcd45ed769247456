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
/* |x| > 87, ±inf, NaN */
inline floatv clxent_expv1_wide(floatv x) {
  floatv xc = select(x, (floatv)(-104.0f), x < -104.0f);
  xc = select(xc, (floatv)(89.0f), xc > 89.0f);
  const floatv t = CLXENT_EXP_T(floatv, xc), kf = t - CLXENT_EXP_SHIFTER;
  const floatv r = CLXENT_EXP_R(floatv, xc, kf);
  const intv k = CLXENT_CAT(as_int, CLXENT_VEC)(CLXENT_CAT(as_uint, CLXENT_VEC)(t) - CLXENT_EXP_SHIFTER_BITS);
  const intv k1 = k >> 1, k2 = k - k1;
  return CLXENT_EXP_POLY(floatv, r) * CLXENT_CAT(as_float, CLXENT_VEC)((k1 + 127) << 23) *
         CLXENT_CAT(as_float, CLXENT_VEC)((k2 + 127) << 23);
}
/* |x| ≤ 87 or NaN */
inline floatv clxent_expv1_narrow(floatv x) {
  const floatv t = CLXENT_EXP_T(floatv, x), kf = t - CLXENT_EXP_SHIFTER;
  const floatv r = CLXENT_EXP_R(floatv, x, kf);
  return CLXENT_EXP_POLY(floatv, r) *
         CLXENT_CAT(as_float, CLXENT_VEC)((CLXENT_CAT(as_uint, CLXENT_VEC)(t) << 23) + 0x3f800000u);
}
CLXENT_LOG_DEFINE(clxent_logv_own, floatv, intv, uintv, CLXENT_CAT(as_uint, CLXENT_VEC), CLXENT_CAT(as_int, CLXENT_VEC),
                  CLXENT_CAT(as_float, CLXENT_VEC), CLXENT_CAT(convert_float, CLXENT_VEC))
#pragma OPENCL FP_CONTRACT ON

/* clxent_exp, clxent_expv: any x. clxent_expv_narrow: x known to be in [-87, 87] or NaN (the
 * softmax passes know it per chunk from the values' min and max), which skips the range test:
 * a vector test needs a horizontal reduction (any()), which PoCL compiles to a chain of shuffles
 * and branches costing as much as the exponential itself, so the general vector form selects
 * between both paths without a branch instead. On [-87, 87] the two paths give the same bits
 * (clxent_math.h), so which one a chunk takes never shows in a result.
 * clxent_log, clxent_logv: ln of the softmax sums (every softmax kernel), shared with the host. */
#if CLXENT_OWN_MATH
inline float clxent_exp(float x) { return clxent_exp_own(x); }
inline floatv clxent_expv_narrow(floatv x) { return clxent_expv1_narrow(x); }
inline floatv clxent_expv(floatv x) {
  return select(clxent_expv1_narrow(x), clxent_expv1_wide(x), fabs(x) > CLXENT_EXP_FAST_LIMIT);
}
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

/* tanh and sech² for x ≥ 0 (the softcap's), from the same pieces:
 *   x < 0.55:  tanh x = x + x·x²·R(x²), R of degree 5, a near-minimax fit for the relative error
 *              (0.08 ulp), and sech² x = 1 - tanh² x (tanh² < 1/4 there: no cancellation);
 *   x ≥ 0.55:  with e = e^{-2x} ≤ 1/3:  tanh x = 1 - 2e/(1+e),  sech² x = 4e/(1+e)²  (no 1 - t²
 *              cancelling near saturation; e = 0 gives 1 and 0, x = inf too). NaN stays NaN.
 * tests/test_math.c checks both against float64 over every float32 x in [0, 9.1] (tanh rounds to
 * 1 beyond). */
#define CLXENT_TANH_SPLIT 0.55f
#define CLXENT_TANH_POLY(x, s)                                                                     \
  ((x) + (x) * (s) * (-0x1.555554p-2f +                                                           \
                      (s) * (0x1.1110dcp-3f +                                                     \
                             (s) * (-0x1.ba0996p-5f + (s) * (0x1.64e3ccp-6f + (s) * (-0x1.13b564p-7f + (s) * 0x1.3a0676p-9f))))))

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

/* tanh x alone, x ≥ 0 (softcap's pass 1, which needs no slope): tanh_nonnegv's t bit for bit, with
 * one exponential instead of clxent_expv's two paths. e^{-2x} is taken at max(-2x, -87), in the
 * narrow exponential's range: below it, any e ≤ e^-87 gives 2e/(1+e) < 2^-124, and 1 minus that
 * rounds to 1, as the true e does (x = +inf too); NaN stays NaN (the select keeps it). The slope
 * needs the true e (sech² x = 4e/(1+e)² underflows gradually), so tanh_nonnegv keeps both paths. */
inline floatv tanh_nonnegv_value(floatv x) {
  const floatv a = -2.0f * x;
  const floatv e = clxent_expv_narrow(select(a, (floatv)(-CLXENT_EXP_FAST_LIMIT), a < -CLXENT_EXP_FAST_LIMIT));
  return select(1.0f - 2.0f * e / (1.0f + e), CLXENT_TANH_POLY(x, x * x), x < CLXENT_TANH_SPLIT);
}

/* Logit softcap with its slope, for s > 0:  u = s·tanh(z/s),  du/dz = 1 - tanh²(z/s) = sech²(z/s).
 * z = -inf stays -inf with slope 0: a masked class remains masked. s = 0 means no cap: u = z,
 * slope 1. */
inline float cap_logit(float z, float s) {
  if (s == 0.0f || z == -INFINITY) return z;
  float sech2;
  return copysign(s * tanh_nonneg(fabs(z) / s, &sech2), z);
}
inline float cap_slope(float z, float s) {
  if (s == 0.0f) return 1.0f;
  if (z == -INFINITY) return 0.0f;
  float sech2;
  tanh_nonneg(fabs(z) / s, &sech2);
  return sech2;
}
/* u and du/dz from one tanh, for the gradient passes. */
inline float cap_logit_slope(float z, float s, float *slope) {
  if (s == 0.0f) return *slope = 1.0f, z;
  if (z == -INFINITY) return *slope = 0.0f, z;
  return copysign(s * tanh_nonneg(fabs(z) / s, slope), z);
}
/* u and du/dz, vectors. */
inline floatv cap_logit_slopev(floatv z, float s, floatv *slope) {
  const intv masked = z == (floatv)(-INFINITY);
  const floatv t = tanh_nonnegv(fabs(z) * (1.0f / s), slope); /* 1/s: one division per call, not per value */
  *slope = select(*slope, (floatv)(0.0f), masked);
  return select(copysign(s * t, z), z, masked);
}
/* u where every |z|/s < CLXENT_TANH_SPLIT (a softcap chunk whose max and min say so): the series
 * alone, which the general form selects there anyway: the same bits, at a fraction of the cost
 * (no exponential, no division). Logits within ±0.55·s, the common case (s = 30: |z| < 16.5). */
inline floatv cap_logitv_small(floatv z, float s) {
  const floatv x = fabs(z) * (1.0f / s);
  return copysign(s * CLXENT_TANH_POLY(x, x * x), z);
}
/* u alone, vectors (pass 1) */
inline floatv cap_logitv(floatv z, float s) {
  const floatv t = tanh_nonnegv_value(fabs(z) * (1.0f / s));
  return select(copysign(s * t, z), z, z == (floatv)(-INFINITY));
}
