/* The float64 reference (see reference.h for the formulas it follows). */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double softcapped(double z, double s) { return (s == 0 || z == -INFINITY) ? z : s * tanh(z / s); }
static double softcap_slope(double z, double s) { /* du/dz */
  if (s == 0) return 1;
  if (z == -INFINITY) return 0;
  const double t = tanh(z / s);
  return 1 - t * t;
}

static void clear(double *x, size_t k) {
  if (x)
    for (size_t e = 0; e < k; ++e) x[e] = 0;
}

/* The upstream gradient of loss value k: 1 without grad_output, its one value under MEAN and SUM,
 * value k's own under NONE. */
static double upstream(const clxent_opts *o, size_t k) {
  return !o->grad_output ? 1 : o->grad_output[o->reduction == CLXENT_NONE ? k : 0];
}

/* Both softmax losses: hard labels when labels is set, else the dense targets t. */
static double ref_softmax(size_t n, size_t c, const float *z, const int32_t *labels, const float *t,
                          const clxent_opts *opts, ref_out *r) {
  const clxent_opts o = opts ? *opts : clxent_opts_default();
  const double eps = o.label_smoothing, lam = o.z_loss, cap = o.softcap;
  const int mean = o.reduction == CLXENT_MEAN;
  /* the divisors: D for the cross-entropy terms, the rows counted for the z-loss */
  size_t counted = 0;
  double divisor = 0;
  for (size_t i = 0; i < n; ++i) {
    if (labels && labels[i] == o.ignore_index) continue;
    ++counted;
    divisor += labels && o.class_weight ? o.class_weight[labels[i]] : 1.0;
  }
  /* a zero divisor (PyTorch): gradient NaN on counted rows, 0 when none counts; loss NaN */
  const double D = mean ? o.mean_denominator : 0; /* > 0: the caller's divisor for everything */
  const double S = !mean ? 1 : D > 0 ? 1 / D : divisor > 0 ? 1 / divisor : counted > 0 ? NAN : 0;
  const double Sz = !mean ? 1 : D > 0 ? 1 / D : counted > 0 ? 1 / (double)counted : 0;
  clear(r->bias, c);
  r->gscale = 0;
  double *u = malloc((c ? c : 1) * sizeof(double)), *tau = malloc((c ? c : 1) * sizeof(double));
  if (!u || !tau) abort();
  double ce_sum = 0, z_sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const float *zi = z + i * c;
    double m = -INFINITY, s = 0;
    int nan = 0;
    for (size_t j = 0; j < c; ++j) {
      u[j] = softcapped(zi[j], cap);
      nan |= isnan(u[j]);
      if (u[j] > m) m = u[j];
    }
    for (size_t j = 0; j < c; ++j) s += exp(u[j] - m);
    const double ln_s = log(s), lse = nan ? NAN : m + ln_s;
    if (r->lse) r->lse[i] = lse;
    if (labels && labels[i] == o.ignore_index) {
      if (r->rows) r->rows[i] = 0;
      clear(r->grad ? r->grad + i * c : NULL, c);
      continue;
    }
    /* Σ_j τ_j (lse - u_j), as Σ_j τ_j ((m - u_j) + ln s): m - u is exact where lse - u cancels */
    double T = 0, ce = 0;
    for (size_t j = 0; j < c; ++j) {
      const double target = labels ? ((int32_t)j == labels[i] ? 1.0 : 0.0) : t[i * c + j];
      tau[j] = (o.class_weight ? o.class_weight[j] : 1.0) * ((1 - eps) * target + eps / (double)c);
      T += tau[j];
      if (tau[j] != 0) ce += tau[j] * ((m - u[j]) + ln_s);
    }
    if (nan) ce = NAN;
    const double zl = lam != 0 ? lam * lse * lse : 0;
    if (r->rows) r->rows[i] = ce + zl;
    ce_sum += ce, z_sum += zl;
    const double up = upstream(&o, i);
    for (size_t j = 0; j < c; ++j) {
      const double a = exp(u[j] - lse), zg = lam != 0 ? 2 * lam * Sz * lse * a : 0;
      const double g = up * (S * (a * T - tau[j]) + zg) * softcap_slope(zi[j], cap);
      if (r->grad) r->grad[i * c + j] = g;
      if (r->bias) r->bias[j] += g;
      r->gscale = fmax(r->gscale, fabs(up) * (S * (a * T + tau[j]) + fabs(zg)));
    }
  }
  free(u), free(tau);
  r->loss = !mean  ? ce_sum + z_sum
            : D > 0 ? (ce_sum + z_sum) / D
            : divisor > 0 ? ce_sum / divisor + (lam != 0 ? z_sum / (double)counted : 0)
                          : NAN; /* a zero divisor: NaN, never x/0 = inf (PyTorch) */
  return r->loss;
}

double ref_softmax_xent(size_t n, size_t c, const float *z, const int32_t *labels, const clxent_opts *opts,
                        ref_out *r) {
  return ref_softmax(n, c, z, labels, NULL, opts, r);
}

double ref_softmax_xent_soft(size_t n, size_t c, const float *z, const float *t, const clxent_opts *opts,
                             ref_out *r) {
  return ref_softmax(n, c, z, NULL, t, opts, r);
}

/* Both binary losses over n×c values: from logits, or from probabilities when bce is set. */
static double ref_binary(int bce, size_t n, size_t c, const float *x, const float *y, const clxent_opts *opts,
                         ref_out *r) {
  const clxent_opts o = opts ? *opts : clxent_opts_default();
  const size_t k = n * c;
  const double D = o.reduction == CLXENT_MEAN && o.mean_denominator > 0 ? o.mean_denominator : (double)k;
  const double S = o.reduction == CLXENT_MEAN ? 1.0 / D : 1.0;
  double sum = 0;
  clear(r->bias, c);
  r->gscale = 0;
  for (size_t e = 0; e < k; ++e) {
    const double pw = o.pos_weight ? o.pos_weight[e % c] : 1.0, yy = y[e];
    double loss, g;
    if (bce) {
      const double a = x[e], la = fmax(log(a), -100), l1a = fmax(log1p(-a), -100);
      loss = isnan(a) ? NAN : -(pw * yy * la + (1 - yy) * l1a); /* fmax would hide the NaN */
      g = (a * (1 - yy) - pw * yy * (1 - a)) / fmax(a * (1 - a), 1e-12);
    } else {
      const double z = x[e], tail = log1p(exp(-fabs(z)));
      const double sp_pos = fmax(z, 0) + tail, sp_neg = fmax(-z, 0) + tail; /* softplus(±z) */
      /* a term of weight 0 adds 0 even where its softplus is inf (the limits at z = ±inf) */
      loss = (pw * yy == 0 ? 0 : pw * yy * sp_neg) + (1 - yy == 0 ? 0 : (1 - yy) * sp_pos);
      g = (1 / (1 + exp(-z))) * (pw * yy + 1 - yy) - pw * yy;
    }
    if (r->rows) r->rows[e] = loss;
    sum += loss;
    const double up = upstream(&o, e);
    if (r->grad) r->grad[e] = up * S * g;
    if (r->bias) r->bias[e % c] += up * S * g;
    r->gscale = fmax(r->gscale, fabs(up) * S * (1 + pw));
  }
  r->loss = o.reduction == CLXENT_MEAN ? sum / D : sum;
  return r->loss;
}

double ref_sigmoid_xent(size_t n, size_t c, const float *z, const float *y, const clxent_opts *opts, ref_out *r) {
  return ref_binary(0, n, c, z, y, opts, r);
}

double ref_bce(size_t n, size_t c, const float *a, const float *y, const clxent_opts *opts, ref_out *r) {
  return ref_binary(1, n, c, a, y, opts, r);
}

void ref_information(enum ref_information_kind kind, size_t n, size_t c, const float *p, const float *q, double *out) {
  for (size_t i = 0; i < n; ++i) {
    double acc = 0;
    for (size_t j = 0; j < c; ++j) {
      const double pj = p[i * c + j], qj = kind == REF_ENTROPY ? pj : q[i * c + j];
      if (pj == 0 && !isnan(qj)) continue;
      acc += kind == REF_ENTROPY ? -pj * log(pj) : kind == REF_CROSS_ENTROPY ? -pj * log(qj) : pj * (log(pj) - log(qj));
    }
    out[i] = acc;
  }
}

/* ---------------------------------------------------------------- 16-bit formats, independently of the library */

uint16_t ref_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if (isnan(f)) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}
float ref_from_bf16(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
float ref_from_f16(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m | 1024, e - 25);
  return (float)((h & 0x8000) ? -v : v);
}
uint16_t ref_to_f16(float f) { /* round to nearest even, by search over the ordered encodings */
  if (isnan(f)) return 0x7E00;
  const uint16_t sign = signbit(f) ? 0x8000 : 0;
  const double a = fabs((double)f);
  if (a >= 65520.0) return (uint16_t)(sign | 0x7C00); /* rounds past the largest finite half */
  uint16_t lo = 0, hi = 0x7C00; /* +0 .. +inf */
  while (hi - lo > 1) {
    const uint16_t mid = (uint16_t)((lo + hi) / 2);
    if (ref_from_f16(mid) <= a) lo = mid; else hi = mid;
  }
  const double dl = a - ref_from_f16(lo), dh = ref_from_f16(hi) - a;
  const uint16_t r = (dl < dh || (dl == dh && !(lo & 1))) ? lo : hi;
  return (uint16_t)(sign | r);
}

size_t ref_dtype_bytes(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 4 : 2; }
float ref_decode(const void *p, size_t k, clxent_dtype t) {
  if (t == CLXENT_FLOAT32) return ((const float *)p)[k];
  const uint16_t h = ((const uint16_t *)p)[k];
  return t == CLXENT_BFLOAT16 ? ref_from_bf16(h) : ref_from_f16(h);
}
/* Stores x in type t; returns the float the stored value means (the reference's exact input). */
void ref_encode(void *p, size_t k, float x, clxent_dtype t) {
  if (t == CLXENT_FLOAT32) ((float *)p)[k] = x;
  else ((uint16_t *)p)[k] = t == CLXENT_BFLOAT16 ? ref_to_bf16(x) : ref_to_f16(x);
}

/* torch.argmax's rule, element by element from the row's start: a NaN is larger than anything
 * (the first NaN wins), otherwise the first of the largest values (so -inf only gives 0). */
void ref_argmax(size_t n, size_t c, const float *z, int32_t *out) {
  for (size_t i = 0; i < n; ++i) {
    const float *row = z + i * c;
    size_t best = 0;
    for (size_t j = 1; j < c && !isnan(row[best]); ++j)
      if (isnan(row[j]) || row[j] > row[best]) best = j;
    out[i] = (int32_t)best;
  }
}

uint64_t ref_correct(size_t n, const int32_t *argmax, const int32_t *labels, int32_t ignore_index) {
  uint64_t hits = 0;
  for (size_t i = 0; i < n; ++i) hits += labels[i] != ignore_index && argmax[i] == labels[i];
  return hits;
}

ref_slice_scales ref_slice_batch(size_t n, size_t c, const int32_t *labels, const float *w, clxent_reduction reduction,
                                 const double *lse, float *lse_f, float *wy) {
  double D = 0.0, W = 0.0;
  size_t counted = 0;
  for (size_t i = 0; i < n; ++i)
    if (labels[i] != -100) ++counted, D += w ? w[labels[i]] : 1.0;
  for (size_t j = 0; j < c; ++j) W += w ? w[j] : 1.0;
  for (size_t i = 0; i < n; ++i)
    lse_f[i] = (float)lse[i], wy[i] = labels[i] == -100 ? 0.0f : w ? w[labels[i]] : 1.0f;
  const ref_slice_scales r = {W, reduction == CLXENT_MEAN ? (float)(1.0 / D) : 1.0f,
                              reduction == CLXENT_MEAN ? (float)(1.0 / (double)counted) : 1.0f};
  return r;
}

static double capped(double z, double s) { return s == 0.0 ? z : s * tanh(z / s); }

void ref_slice_row(const float *z, size_t off, size_t width, int32_t label, const float *w, float softcap, int smoothing,
                   double want[5]) {
  double mm = -INFINITY, ss = 0.0, dd = 0.0;
  for (size_t j = 0; j < width; ++j) mm = fmax(mm, capped(z[off + j], softcap));
  for (size_t j = 0; j < width; ++j) {
    const double u = capped(z[off + j], softcap), wj = w ? w[off + j] : 1.0;
    ss += exp(u - mm);
    if (smoothing && wj != 0.0) dd += wj * (mm - u);
  }
  const int owns = label != -100 && (size_t)label >= off && (size_t)label < off + width;
  want[0] = mm, want[1] = ss, want[2] = dd;
  want[3] = owns ? capped(z[label], softcap) : 0.0;
  want[4] = owns ? (w ? w[label] : 1.0) : 0.0;
}

int ref_slice_row_mismatch(const float *got, const double want[5], size_t width) {
  for (int v = 0; v < 5; ++v)
    if (!(fabs(got[v] - want[v]) <= 1e-5 * fabs(want[v]) + 1e-5 * (v == 2 ? want[1] * 10.0 + (double)width : 1.0)))
      return v;
  return -1;
}
