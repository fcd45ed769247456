/*
 * Every check of a public call, before anything runs: a rejected call writes nothing. The same
 * checks serve host pointers and device buffers (one overlap checker for both).
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"

clxent_status clxent_check_ctx(const clxent_ctx *ctx) {
  return ctx ? CLXENT_OK : clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL");
}

clxent_status clxent_check_shape(clxent_ctx *ctx, size_t n, size_t c, const char *c_name) {
  if (n == 0) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "n (rows) is 0");
  if (c == 0) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "c (%s) is 0", c_name);
  if (n > SIZE_MAX / sizeof(float) / c)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "n × c = %zu × %zu floats overflows size_t", n, c);
  return CLXENT_OK;
}

clxent_status clxent_check_ptr(clxent_ctx *ctx, const void *p, const char *name) {
  return p ? CLXENT_OK : clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s is NULL", name);
}

clxent_status clxent_check_outputs(clxent_ctx *ctx, const void *loss, const void *grad) {
  return (loss || grad) ? CLXENT_OK
                        : clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "loss and grad are both NULL: nothing to compute");
}

clxent_status clxent_check_dtype(clxent_ctx *ctx, clxent_dtype dtype) {
  if ((unsigned)dtype <= (unsigned)CLXENT_BFLOAT16) return CLXENT_OK;
  return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                     "ex->dtype = %d is not a clxent_dtype (FLOAT32 0, FLOAT16 1, BFLOAT16 2)", (int)dtype);
}

size_t clxent_dtype_size(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 4 : 2; }

/* ---------------------------------------------------------------- memory regions */

/* Where a region lies: a range of host memory (root NULL) or of a buffer's root buffer. Checks a
 * buffer's size and context on the way. */
typedef struct extent {
  cl_mem root;
  uintptr_t begin;
} extent;

static clxent_status locate(clxent_ctx *ctx, const clxent_region *r, extent *e) {
  e->root = NULL;
  e->begin = (uintptr_t)r->host;
  if (r->host) {
    const size_t align = r->element ? r->element : sizeof(float);
    if (e->begin % align) /* the kernels' loads assume it, and C requires it anyway */
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s (%p) is not aligned to its %zu-byte elements", r->name,
                         r->host, align);
    return CLXENT_OK;
  }
  if (!r->mem) return CLXENT_OK;
  cl_context owner = NULL;
  cl_mem parent = NULL;
  size_t size = 0, offset = 0;
  cl_int err = clGetMemObjectInfo(r->mem, CL_MEM_SIZE, sizeof size, &size, NULL);
  if (err == CL_SUCCESS) err = clGetMemObjectInfo(r->mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL);
  if (err == CL_SUCCESS) err = clGetMemObjectInfo(r->mem, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, NULL);
  if (err == CL_SUCCESS) err = clGetMemObjectInfo(r->mem, CL_MEM_OFFSET, sizeof offset, &offset, NULL);
  if (err != CL_SUCCESS)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s is not a valid cl_mem (clGetMemObjectInfo: %s)", r->name,
                       clxent_cl_error_name(err));
  if (owner != ctx->context)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s belongs to another OpenCL context than the clxent context's",
                       r->name);
  if (size < r->bytes)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s holds %zu bytes; the call needs %zu", r->name, size, r->bytes);
  e->root = parent ? parent : r->mem;
  e->begin = offset;
  return CLXENT_OK;
}

static int present(const clxent_region *r) { return r->host || r->mem; }

clxent_status clxent_check_regions(clxent_ctx *ctx, clxent_region *r, int count) {
  extent e[16];
  if (count > 16) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "internal: too many regions");
  for (int i = 0; i < count; ++i) CHECK(locate(ctx, &r[i], &e[i]));
  for (int i = 0; i < count; ++i) {
    if (!present(&r[i]) || !r[i].output) continue;
    for (int j = 0; j < i; ++j) {
      if (!present(&r[j]) || e[i].root != e[j].root || (r[i].host != NULL) != (r[j].host != NULL)) continue;
      if (e[i].begin >= e[j].begin + r[j].bytes || e[j].begin >= e[i].begin + r[i].bytes) continue;
      const int in_place = j == 0 && !strcmp(r[i].name, "grad");
      if (in_place && r[i].host == r[j].host && r[i].mem == r[j].mem && r[i].bytes == r[j].bytes) continue;
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s overlaps %s%s", r[i].name, r[j].name,
                         in_place ? " without being equal to it (only exact in-place is allowed)" : "");
    }
  }
  return CLXENT_OK;
}

/* ---------------------------------------------------------------- options */

static const size_t opts_fields[] = {
    offsetof(clxent_opts, reduction) + sizeof(clxent_reduction), offsetof(clxent_opts, ignore_index) + sizeof(int32_t),
    offsetof(clxent_opts, class_weight) + sizeof(float *),       offsetof(clxent_opts, label_smoothing) + sizeof(float),
    offsetof(clxent_opts, z_loss) + sizeof(float),               offsetof(clxent_opts, softcap) + sizeof(float),
    offsetof(clxent_opts, pos_weight) + sizeof(float *),         offsetof(clxent_opts, grad_output) + sizeof(float *),
    offsetof(clxent_opts, mean_denominator) + sizeof(double)};
static const size_t ex_fields[] = {offsetof(clxent_ex, dtype) + sizeof(clxent_dtype),
                                   offsetof(clxent_ex, lse) + sizeof(float *),
                                   offsetof(clxent_ex, bias_grad) + sizeof(float *),
                                   offsetof(clxent_ex, argmax) + sizeof(int32_t *),
                                   offsetof(clxent_ex, correct) + sizeof(uint64_t *),
                                   offsetof(clxent_ex, inner) + sizeof(size_t)};

clxent_status clxent_read_opts(clxent_ctx *ctx, const clxent_opts *caller, clxent_opts *out) {
  *out = clxent_opts_default();
  if (!caller) return CLXENT_OK;
  return clxent_read_sized(ctx, "opts", caller, out, sizeof *out, opts_fields, sizeof opts_fields / sizeof(size_t));
}

clxent_status clxent_read_ex(clxent_ctx *ctx, const clxent_ex *caller, clxent_ex *out) {
  *out = clxent_ex_default();
  if (!caller) return CLXENT_OK;
  return clxent_read_sized(ctx, "ex", caller, out, sizeof *out, ex_fields, sizeof ex_fields / sizeof(size_t));
}

static clxent_status check_scalar(clxent_ctx *ctx, const char *name, float v, float lo, float hi, int hi_open) {
  if (isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi)) return CLXENT_OK;
  return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "opts->%s = %g is outside [%g, %g%s", name, (double)v, (double)lo,
                     (double)hi, hi_open ? ")" : "]");
}

/* Every weight finite and ≥ 0; *sum = Σ w. */
static clxent_status check_weights(clxent_ctx *ctx, const char *name, const float *w, size_t c, float *sum) {
  double total = 0.0;
  for (size_t j = 0; j < c; ++j) {
    if (!isfinite(w[j]) || w[j] < 0.0f)
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "opts->%s[%zu] = %g must be finite and >= 0", name, j,
                         (double)w[j]);
    total += w[j];
  }
  *sum = (float)total;
  return CLXENT_OK;
}

clxent_status clxent_check_opts(clxent_ctx *ctx, const clxent_opts *o, enum clxent_family family, size_t c,
                                float *weight_sum) {
  if ((unsigned)o->reduction > (unsigned)CLXENT_NONE)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "opts->reduction = %d is not a clxent_reduction (MEAN 0, SUM 1, NONE 2)", (int)o->reduction);
  *weight_sum = (float)c;
  if (family == FAMILY_SOFTMAX) {
    if (o->pos_weight)
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "opts->pos_weight applies to the binary losses only");
    CHECK(check_scalar(ctx, "label_smoothing", o->label_smoothing, 0.0f, 1.0f, 1));
    CHECK(check_scalar(ctx, "z_loss", o->z_loss, 0.0f, INFINITY, 1));
    CHECK(check_scalar(ctx, "softcap", o->softcap, 0.0f, INFINITY, 1));
    /* the kernels take z·(1/s): a subnormal s has no finite reciprocal (and a device that flushes
     * subnormals reads it as 0: z·inf, NaN, found by fuzzing), and beyond 2^126 the reciprocal is
     * itself subnormal, 0 on such a device (every u would be 0) */
    if (o->softcap != 0.0f && !(o->softcap >= FLT_MIN && o->softcap <= 0x1p126f))
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                         "opts->softcap = %g must be 0 (off) or within [%g, %g] (2^-126 to 2^126, where 1/s "
                         "is a normal float)",
                         (double)o->softcap, (double)FLT_MIN, (double)0x1p126f);
    if (o->class_weight) CHECK(check_weights(ctx, "class_weight", o->class_weight, c, weight_sum));
    return CLXENT_OK;
  }
  const char *bad = o->class_weight              ? "class_weight"
                    : o->label_smoothing != 0.0f ? "label_smoothing"
                    : o->z_loss != 0.0f          ? "z_loss"
                    : o->softcap != 0.0f         ? "softcap"
                                                 : NULL;
  if (bad)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "opts->%s applies to the softmax losses only (binary losses take pos_weight)", bad);
  if (o->pos_weight) CHECK(check_weights(ctx, "pos_weight", o->pos_weight, c, weight_sum));
  return CLXENT_OK;
}

size_t clxent_upstream_count(const clxent_opts *o, size_t values) {
  return !o->grad_output ? 0 : o->reduction == CLXENT_NONE ? values : 1;
}

clxent_status clxent_check_upstream(clxent_ctx *ctx, const clxent_opts *o, size_t count) {
  for (size_t k = 0; o->grad_output && k < count; ++k)
    if (!isfinite(o->grad_output[k]))
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "opts->grad_output[%zu] = %g must be finite", k,
                         (double)o->grad_output[k]);
  const double d = o->mean_denominator;
  if (d == 0.0) return CLXENT_OK;
  if (o->reduction != CLXENT_MEAN)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "opts->mean_denominator = %g applies to CLXENT_MEAN only (reduction is %s)",
                       d, o->reduction == CLXENT_SUM ? "CLXENT_SUM" : "CLXENT_NONE");
  if (!(d >= FLT_MIN && d <= FLT_MAX)) /* NaN fails both */
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "opts->mean_denominator = %g must be 0 (the library's divisor) or a finite positive float "
                       "in [%g, %g]",
                       d, (double)FLT_MIN, (double)FLT_MAX);
  return CLXENT_OK;
}

/* ---------------------------------------------------------------- input values read on the host */

/* A label's message: the first one of labels[b, e) outside [0, c) and not ignore_index (there is one). */
static clxent_status bad_label(clxent_ctx *ctx, const int32_t *labels, size_t b, size_t e, size_t c, size_t inner,
                               int32_t ignore_index) {
  size_t i = b;
  while (i < e && (labels[i] == ignore_index || (labels[i] >= 0 && (size_t)labels[i] < c))) ++i;
  const int y = (int)labels[i < e ? i : b];
  if (inner > 1)
    return clxent_fail(ctx, CLXENT_ERR_LABEL_RANGE,
                       "labels[%zu] (i = %zu, s = %zu of inner = %zu) = %d is outside [0, %zu) and is not "
                       "ignore_index (%d)",
                       i, i / inner, i % inner, inner, y, c, (int)ignore_index);
  return clxent_fail(ctx, CLXENT_ERR_LABEL_RANGE, "labels[%zu] = %d is outside [0, %zu) and is not ignore_index (%d)",
                     i, y, c, (int)ignore_index);
}

/* Every label checked in blocks whose count and range test are branch-free, which the compiler
 * vectorises: as one loop with an early exit, 65536 labels took 119 µs, a sixth of a 65536 × 10
 * call (docs/PERFORMANCE.md, "Sixth round"). A block holding a bad label is scanned again for the
 * first one, for the message. The class weights' sum stays one loop in row order (its bits). */
#define LABEL_BLOCK 4096
clxent_status clxent_check_labels(clxent_ctx *ctx, const int32_t *labels, size_t n, size_t c, size_t inner,
                                  int32_t ignore_index, const float *weight, size_t *counted, double *weighted) {
  /* (uint32_t)y >= limit  <=>  y < 0 or y >= c, for any c (y < 0 wraps to 2^31 or more) */
  const uint32_t limit = c > (size_t)INT32_MAX ? (uint32_t)INT32_MAX + 1u : (uint32_t)c;
  size_t count = 0; /* locals, not the callers' variables: these loops run over every row */
  for (size_t b = 0; b < n; b += LABEL_BLOCK) {
    const size_t e = n - b > LABEL_BLOCK ? b + LABEL_BLOCK : n;
    uint32_t bad = 0, kept = 0;
    for (size_t i = b; i < e; ++i) {
      const uint32_t y = (uint32_t)labels[i], keep = labels[i] != ignore_index;
      bad |= keep & (y >= limit);
      kept += keep;
    }
    if (bad) return bad_label(ctx, labels, b, e, c, inner, ignore_index);
    count += kept;
  }
  double sum = 0.0;
  if (weight)
    for (size_t i = 0; i < n; ++i)
      if (labels[i] != ignore_index) sum += weight[labels[i]];
  *counted = count;
  *weighted = weight ? sum : (double)count;
  return CLXENT_OK;
}

/* One stored value as float. */
static float load_value(const void *p, size_t k, clxent_dtype t) {
  if (t == CLXENT_FLOAT32) return ((const float *)p)[k];
  const uint16_t h = ((const uint16_t *)p)[k];
  if (t == CLXENT_BFLOAT16) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
  }
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  const float f = exponent == 0    ? ldexpf((float)mantissa, -24)
                  : exponent == 31 ? (mantissa ? NAN : INFINITY)
                                   : ldexpf((float)(mantissa | 0x400), exponent - 25);
  return (h & 0x8000) ? -f : f;
}

clxent_status clxent_check_probs(clxent_ctx *ctx, const void *probs, size_t values, clxent_dtype dtype,
                                 const char *name) {
  for (size_t k = 0; k < values; ++k) {
    const float a = load_value(probs, k, dtype);
    if (a < 0.0f || a > 1.0f) /* NaN passes: it must reach the result */
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s[%zu] = %g is not a probability in [0, 1]", name, k, (double)a);
  }
  return CLXENT_OK;
}
