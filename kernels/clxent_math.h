/*
 * clxent's own e^x and ln x, written once for the kernels (OpenCL C: embedded right after
 * clxent_defs.h, see CMakeLists.txt) and for the host's direct path (C: host/direct.c), so that
 * both compute the same bits for the same input. Keep it valid in both languages.
 *
 * Same bits on both sides needs the same operations in the same order, each rounded once:
 *   - no contraction: OpenCL C lets the compiler fuse a*b + c (FP_CONTRACT is ON by default, and
 *     PoCL then emits an FMA instruction), C compilers may too (-ffp-contract=fast). The kernels
 *     turn it OFF for this file (the pragma below) and for the code the host mirrors
 *     (kernels/softmax_xent.cl); the host compiles direct.c with -ffp-contract=off;
 *   - the fused multiply-adds the algorithms want are written out: CLXENT_FMA is OpenCL's fma and
 *     C's fmaf, both correctly rounded (IEEE 754 fusedMultiplyAdd), so they agree whatever the
 *     hardware;
 *   - integer steps on the bits are done unsigned (C's signed shifts past the sign are undefined;
 *     the bits are the same).
 * Scalars only, plus the macros math.cl builds its vector forms from (T: float or floatv; per lane
 * they are the scalar functions' operations, so a vector lane and the scalar give the same bits).
 *
 * e^x = 2^k · e^r,  k = round(x / ln 2),  r = x - k ln 2 ∈ [-ln2/2, ln2/2]
 *   - k comes from adding 1.5·2^23 (fma(x, log2(e), M) rounds to an integer, which the float keeps
 *     in its low mantissa bits: bits(t) = bits(M) + k), so k needs no conversion instruction and
 *     2^k is (bits(t) << 23) + bits(1.0): the bits of M shift out;
 *   - r = x - k·LN2_HI - k·LN2_LO (Cody–Waite, each step one fma): LN2_HI has 15 significant bits,
 *     so k·LN2_HI is exact for |k| < 512 and so is the first step; LN2_LO carries the rest of ln 2;
 *   - e^r = 1 + r + r²·P(r), P of degree 4, a near-minimax fit for the relative error on
 *     [-ln2/2, ln2/2] (Lawson's iteration in float64, coefficients rounded to float32), evaluated
 *     by Horner's rule in fused steps: its approximation error is 0.07 ulp, so the result's error
 *     is that of the float arithmetic; tests/test_math.c checks every float32 input x ≤ 0 down to
 *     below the underflow threshold, and the positive range, against float64 e^x: ≤ 2 ulp.
 * |x| ≤ 87 (narrow): 2^k is a normal float and one multiply scales e^r. Else (wide: masks,
 * overflow, underflow) x is clamped to [-104, 89] and 2^k applied as 2^(k/2)·2^(k-k/2), two normal
 * factors, so that overflow gives inf, x < -103.97 gives 0 (-inf too) and gradual underflow rounds
 * once. On |x| ≤ 87 both give the same bits: e^x ≥ e^-87 > FLT_MIN, so neither scaling by a power
 * of two rounds; callers may pick either there. A NaN stays NaN on both paths.
 *
 * ln x = k ln 2 + ln(1 + f),  x = 2^k (1 + f),  1 + f ∈ [√2/2, √2)   (musl's logf, from FreeBSD)
 *   - k and 1 + f from the bits: adding bits(1) - bits(√2/2) moves the binade boundary to √2/2;
 *     subnormal x is scaled by 2^25 first;
 *   - with s = f / (2 + f):  ln(1 + f) = ln(1 + s) - ln(1 - s) = 2s + s·R(s²) and, with
 *     hfsq = f²/2,  ln(1 + f) = f - hfsq + s·(hfsq + R), R = z(Lg1 + w Lg3) + w(Lg2 + w Lg4),
 *     z = s², w = z², a fit of (ln(1+s) - ln(1-s))/s - 2 to 2^-34.24 on the interval;
 *   - k ln 2 in two parts, LN2_HI with trailing zeros so that k·LN2_HI is exact, LN2_LO added among
 *     the small terms, and the big terms last.
 * tests/test_math.c checks every float32 x in [1, 2^40] (the losses take ln of Σ e^{u - m} ∈ [1, c])
 * and every 64th elsewhere against float64 ln x: ≤ 1 ulp; 0 → -inf, x < 0 → NaN, inf → inf,
 * NaN → NaN.
 */
#ifndef CLXENT_MATH_H
#define CLXENT_MATH_H

#ifdef __OPENCL_VERSION__
#pragma OPENCL FP_CONTRACT OFF
#define CLXENT_MATH_FN inline
#define CLXENT_FMA(a, b, c) fma(a, b, c)
#define CLXENT_SELECT(a, b, c) select(a, b, c)
#define clxent_as_float(u) as_float(u)
#define clxent_as_uint(f) as_uint(f)
#define clxent_uint_as_int(u) as_int(u)
#define clxent_int_to_float(i) convert_float(i)
typedef uint clxent_u32;
typedef int clxent_i32;
#else
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__GNUC__)
#define CLXENT_MATH_FN static inline __attribute__((always_inline)) /* into the caller's ISA: fmaf inline */
#else
#define CLXENT_MATH_FN static inline
#endif
#define CLXENT_FMA(a, b, c) fmaf(a, b, c)
#define CLXENT_SELECT(a, b, c) ((c) ? (b) : (a))
typedef uint32_t clxent_u32;
typedef int32_t clxent_i32;
CLXENT_MATH_FN float clxent_as_float(clxent_u32 u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
CLXENT_MATH_FN clxent_u32 clxent_as_uint(float f) {
  clxent_u32 u;
  memcpy(&u, &f, sizeof u);
  return u;
}
#define clxent_uint_as_int(u) ((clxent_i32)(u))
#define clxent_int_to_float(i) ((float)(i))
#endif

/* ---------------------------------------------------------------- e^x */
#define CLXENT_EXP_SHIFTER 12582912.0f /* 1.5·2^23 */
#define CLXENT_EXP_SHIFTER_BITS 0x4b400000u
#define CLXENT_LOG2E 1.44269504088896341f
#define CLXENT_LN2_HI 0.693145751953125f /* 0x3f317200 */
#define CLXENT_LN2_LO 1.42860682030941723212e-6f
#define CLXENT_EXP_FAST_LIMIT 87.0f
/* t = x·log2(e) + M, one rounding */
#define CLXENT_EXP_T(T, x) CLXENT_FMA(x, (T)(CLXENT_LOG2E), (T)(CLXENT_EXP_SHIFTER))
/* r = x - kf·ln 2 in two fused steps. The constants are negated, not kf: a NaN's sign would flip
 * with -kf in C but not where the compiler folds the negation into the instruction (vfnmadd) */
#define CLXENT_EXP_R(T, x, kf) CLXENT_FMA(kf, (T)(-CLXENT_LN2_LO), CLXENT_FMA(kf, (T)(-CLXENT_LN2_HI), x))
/* e^r = 1 + r(1 + r(c2 + r(c3 + r(c4 + r(c5 + r c6))))) */
#define CLXENT_EXP_POLY(T, r)                                                                                   \
  CLXENT_FMA(r,                                                                                                \
             CLXENT_FMA(r,                                                                                     \
                        CLXENT_FMA(r,                                                                          \
                                   CLXENT_FMA(r,                                                               \
                                              CLXENT_FMA(r, CLXENT_FMA(r, (T)(0x1.6a244cp-10f), (T)(0x1.1239d4p-7f)), \
                                                         (T)(0x1.5558f2p-5f)),                                 \
                                              (T)(0x1.555492p-3f)),                                            \
                                   (T)(0x1.fffffcp-2f)),                                                       \
                        (T)(1.0f)),                                                                            \
             (T)(1.0f))

/* |x| ≤ 87 or NaN */
CLXENT_MATH_FN float clxent_exp1_narrow(float x) {
  const float t = CLXENT_EXP_T(float, x), kf = t - CLXENT_EXP_SHIFTER;
  const float r = CLXENT_EXP_R(float, x, kf);
  return CLXENT_EXP_POLY(float, r) * clxent_as_float((clxent_as_uint(t) << 23) + 0x3f800000u);
}
/* any x */
CLXENT_MATH_FN float clxent_exp1_wide(float x) {
  float xc = x < -104.0f ? -104.0f : x;
  xc = xc > 89.0f ? 89.0f : xc;
  const float t = CLXENT_EXP_T(float, xc), kf = t - CLXENT_EXP_SHIFTER;
  const float r = CLXENT_EXP_R(float, xc, kf);
  const clxent_i32 k = clxent_uint_as_int(clxent_as_uint(t) - CLXENT_EXP_SHIFTER_BITS), k1 = k >> 1, k2 = k - k1;
  return CLXENT_EXP_POLY(float, r) * clxent_as_float((clxent_u32)(k1 + 127) << 23) *
         clxent_as_float((clxent_u32)(k2 + 127) << 23);
}
/* e^x for any x (the scalar form the kernels' row tails use, and the host's) */
CLXENT_MATH_FN float clxent_exp_own(float x) {
  return fabs(x) > CLXENT_EXP_FAST_LIMIT ? clxent_exp1_wide(x) : clxent_exp1_narrow(x);
}

/* ---------------------------------------------------------------- ln x */
#define CLXENT_LOG_LN2_HI 6.9313812256e-01f /* 0x3f317180 */
#define CLXENT_LOG_LN2_LO 9.0580006145e-06f /* 0x3717f7d1 */
#define CLXENT_LOG_LG1 0x1.555554p-1f       /* 0.66666662693 */
#define CLXENT_LOG_LG2 0x1.999c26p-2f       /* 0.40000972152 */
#define CLXENT_LOG_LG3 0x1.23d3dcp-2f       /* 0.28498786688 */
#define CLXENT_LOG_LG4 0x1.f13c4cp-3f       /* 0.24279078841 */
/* ln x for T = float or floatv (I, U its int and uint types; AS_U, U_AS_I, U_AS_F, I_TO_F the
 * conversions of that width). Branch-free: the special values are selected at the end. */
#define CLXENT_LOG_DEFINE(NAME, T, I, U, AS_U, U_AS_I, U_AS_F, I_TO_F)                                      \
  CLXENT_MATH_FN T NAME(T x) {                                                                             \
    const I tiny = x < (T)(0x1p-126f); /* subnormal, 0 or negative: the first is scaled, the rest set */   \
    const T xs = CLXENT_SELECT(x, x * (T)(0x1p25f), tiny);                                                 \
    const U ix = AS_U(xs) + (U)(0x3f800000u - 0x3f3504f3u);                                                \
    const I k = U_AS_I(ix >> 23) - (I)(0x7f) - CLXENT_SELECT((I)(0), (I)(25), tiny);                      \
    const T f = U_AS_F((ix & (U)(0x007fffffu)) + (U)(0x3f3504f3u)) - (T)(1.0f);                            \
    const T s = f / ((T)(2.0f) + f), z = s * s, w = z * z;                                                 \
    const T R = z * ((T)(CLXENT_LOG_LG1) + w * (T)(CLXENT_LOG_LG3)) +                                      \
                w * ((T)(CLXENT_LOG_LG2) + w * (T)(CLXENT_LOG_LG4));                                       \
    const T hfsq = (T)(0.5f) * f * f, dk = I_TO_F(k);                                                      \
    const T r = s * (hfsq + R) + dk * (T)(CLXENT_LOG_LN2_LO) - hfsq + f + dk * (T)(CLXENT_LOG_LN2_HI);    \
    /* +inf and NaN: x itself; 0: -inf; x < 0: the quiet NaN 0x7fc00000 (by its bits: C's NAN and    \
     * OpenCL's are different NaNs) */                                                                    \
    const T v = CLXENT_SELECT(r, x, !(x < (T)(INFINITY)));                                                 \
    return CLXENT_SELECT(CLXENT_SELECT(v, (T)(-INFINITY), x == (T)(0.0f)), U_AS_F((U)(0x7fc00000u)),      \
                         x < (T)(0.0f));                                                                   \
  }
CLXENT_LOG_DEFINE(clxent_log_own, float, clxent_i32, clxent_u32, clxent_as_uint, clxent_uint_as_int, clxent_as_float,
                  clxent_int_to_float)

#ifdef __OPENCL_VERSION__
#pragma OPENCL FP_CONTRACT ON
#endif
#endif
