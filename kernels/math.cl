/*
 * clxent's own elementary functions for the hot loops: e^x, and from it tanh (softcap) and
 * ln(1 + e^-|z|) (binary cross-entropy). Scalar and CLXENT_VEC-wide forms compute the same
 * bits for the same input.
 *
 * e^x = 2^k · e^r,  k = round(x / ln 2),  r = x - k ln 2 ∈ [-ln2/2, ln2/2]
 *   - k comes from adding 1.5·2^23 (x·log2(e) + M rounds to an integer, which the float keeps in
 *     its low mantissa bits: as_int(x·log2(e) + M) = as_int(M) + k), so k needs no conversion
 *     instruction and 2^k is (as_int(...) << 23) + bits(1.0): the bits of M shift out;
 *   - r = x - k·LN2_HI - k·LN2_LO (Cody–Waite): LN2_HI has 15 significant bits, so k·LN2_HI is
 *     exact for |k| < 512 and so is the first subtraction; LN2_LO carries the rest of ln 2;
 *   - e^r = 1 + r + r²·P(r), P of degree 4, a near-minimax fit for the relative error on
 *     [-ln2/2, ln2/2] (Lawson's iteration in float64, coefficients rounded to float32): its
 *     approximation error is 0.07 ulp, so the result's error is that of the float arithmetic;
 *     tests/test_math.c checks every float32 input x ≤ 0 down to below the underflow threshold,
 *     and the positive range, against float64 e^x: ≤ 2 ulp.
 * |x| ≤ 87: 2^k is a normal float and one multiply scales e^r (a result below FLT_MIN is rounded
 * to a subnormal by that multiply). Else (rare in a loss: masks, overflow, underflow) x is clamped
 * to [-104, 89] and 2^k applied as 2^(k/2)·2^(k-k/2), two normal factors, so that overflow gives
 * inf, x < -103.97 gives 0 (-inf too) and gradual underflow rounds once. A NaN stays NaN on both
 * paths (it reaches e^r, and NaN times any scale is NaN).
 *
 * CLXENT_OWN_MATH 0 (the tuning table's choice per device) maps them to the device's exp, tanh
 * and log1p instead: a GPU's exp is a hardware instruction and cheaper than this polynomial.
 */

#ifndef CLXENT_OWN_MATH
#define CLXENT_OWN_MATH 1
#endif

#define CLXENT_EXP_SHIFTER 12582912.0f /* 1.5·2^23 */
#define CLXENT_EXP_SHIFTER_BITS 0x4b400000
#define CLXENT_LOG2E 1.44269504088896341f
#define CLXENT_LN2_HI 0.693145751953125f /* 0x3f317200 */
#define CLXENT_LN2_LO 1.42860682030941723212e-6f
#define CLXENT_EXP_POLY(r)                                                                        \
  (1.0f + (r) * (1.0f + (r) * (0x1.fffffcp-2f +                                                   \
                               (r) * (0x1.555492p-3f +                                            \
                                      (r) * (0x1.5558f2p-5f + (r) * (0x1.1239d4p-7f + (r) * 0x1.6a244cp-10f))))))
#define CLXENT_EXP_FAST_LIMIT 87.0f

/* The two halves of e^x, written once for float and for floatv: T the float type, I the int type
 * of the same width, AS_F/AS_I the reinterpretations. */
#define CLXENT_EXP_DEFINE(NAME, T, I, AS_F, AS_I)                                                 \
  /* |x| > 87, ±inf, NaN */                                                                      \
  inline T NAME##_wide(T x) {                                                                    \
    T xc = select(x, (T)(-104.0f), x < -104.0f);                                                 \
    xc = select(xc, (T)(89.0f), xc > 89.0f);                                                     \
    const T t = xc * CLXENT_LOG2E + CLXENT_EXP_SHIFTER, kf = t - CLXENT_EXP_SHIFTER;             \
    T r = xc - kf * CLXENT_LN2_HI;                                                               \
    r = r - kf * CLXENT_LN2_LO;                                                                  \
    const I k = AS_I(t) - CLXENT_EXP_SHIFTER_BITS, k1 = k >> 1, k2 = k - k1;                     \
    return CLXENT_EXP_POLY(r) * AS_F((k1 + 127) << 23) * AS_F((k2 + 127) << 23);                 \
  }                                                                                              \
  /* |x| ≤ 87 or NaN */                                                                          \
  inline T NAME##_narrow(T x) {                                                                  \
    const T t = x * CLXENT_LOG2E + CLXENT_EXP_SHIFTER, kf = t - CLXENT_EXP_SHIFTER;              \
    T r = x - kf * CLXENT_LN2_HI;                                                                \
    r = r - kf * CLXENT_LN2_LO;                                                                  \
    return CLXENT_EXP_POLY(r) * AS_F((AS_I(t) << 23) + 0x3f800000);                              \
  }

CLXENT_EXP_DEFINE(clxent_exp1, float, int, as_float, as_int)
CLXENT_EXP_DEFINE(clxent_expv1, floatv, intv, CLXENT_CAT(as_float, CLXENT_VEC), CLXENT_CAT(as_int, CLXENT_VEC))

/* clxent_exp, clxent_expv: any x. clxent_expv_narrow: x known to be in [-87, 87] or NaN (the
 * softmax passes know it per chunk from the values' min and max), which skips the range test:
 * a vector test needs a horizontal reduction (any()), which PoCL compiles to a chain of shuffles
 * and branches costing as much as the exponential itself, so the general vector form selects
 * between both paths without a branch instead. */
#if CLXENT_OWN_MATH
inline float clxent_exp(float x) { return fabs(x) > CLXENT_EXP_FAST_LIMIT ? clxent_exp1_wide(x) : clxent_exp1_narrow(x); }
inline floatv clxent_expv_narrow(floatv x) { return clxent_expv1_narrow(x); }
inline floatv clxent_expv(floatv x) {
  return select(clxent_expv1_narrow(x), clxent_expv1_wide(x), fabs(x) > CLXENT_EXP_FAST_LIMIT);
}
#else
inline float clxent_exp(float x) { return exp(x); }
inline floatv clxent_expv_narrow(floatv x) { return exp(x); }
inline floatv clxent_expv(floatv x) { return exp(x); }
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
inline floatv cap_logitv(floatv z, float s) {
  floatv slope;
  return cap_logit_slopev(z, s, &slope);
}
