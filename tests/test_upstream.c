/* The two options a framework's backward pass needs (clxent 1.1): opts->grad_output, the upstream
 * gradient (one g for MEAN and SUM, one g_i per loss value for NONE), and opts->mean_denominator,
 * the divisor D of a MEAN that spans several calls (gradient accumulation). Against the float64
 * reference (reference.h) on every loss, storage type and kernel shape; without them, and with
 * g = 1, the bits of a plain call; rejected values write nothing and are named. */
#define CLXENT_EXPERIMENTAL_API /* clxent_tuning: small streaming blocks */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum loss_kind { HARD, SOFT, SIGMOID, BCE };
static const char *const kind_names[] = {"hard", "soft", "sigmoid", "bce"};
static const char *const dtype_names[] = {"f32", "f16", "bf16"};

/* c ≤ 64 (32 with softcap): the short-row kernel (CLXENT_VEC rows per work-item; 37, 13 and 21
 * rows leave a partial item); c off the vector widths 4/8/16; 65 the row kernel's shortest; 4099
 * and 9000 span chunks of the row kernel's first pass; n = 130 and 67 cross the 64-row boundaries
 * of the bias sums and of a split over devices. */
static const size_t shapes[][2] = {{1, 1}, {1, 2}, {7, 3}, {13, 17}, {37, 32}, {9, 33}, {21, 64},
                                   {6, 65}, {67, 8}, {130, 129}, {5, 4099}, {2, 9000}};
#define SHAPES (sizeof shapes / sizeof shapes[0])

/* One call's inputs, stored in its type, and what they mean as floats (the reference's input). */
typedef struct batch {
  enum loss_kind kind;
  size_t n, c;
  clxent_dtype dtype;
  unsigned char *in, *aux;
  float *x, *t;
  int32_t *labels;
} batch;

static batch make_batch(enum loss_kind kind, size_t n, size_t c, clxent_dtype dtype, uint64_t seed, double ignored) {
  const size_t nc = n * c, eb = ref_dtype_bytes(dtype);
  batch b = {kind, n, c, dtype, xmalloc(nc * eb), kind == HARD ? NULL : xmalloc(nc * eb), xmalloc(nc * sizeof(float)),
             kind == HARD ? NULL : xmalloc(nc * sizeof(float)), kind == HARD ? xmalloc(n * sizeof(int32_t)) : NULL};
  rng_seed(seed);
  for (size_t e = 0; e < nc; ++e) {
    const double v = kind == BCE ? rng_uniform(0, 1) : rng_uniform(-8, 8);
    ref_encode(b.in, e, (float)v, dtype), b.x[e] = ref_decode(b.in, e, dtype);
  }
  if (kind == SOFT) {
    float *p = xmalloc(nc * sizeof(float));
    fill_distribution_rows(p, n, c, 0.3);
    for (size_t e = 0; e < nc; ++e) ref_encode(b.aux, e, p[e], dtype), b.t[e] = ref_decode(b.aux, e, dtype);
    free(p);
  } else if (b.aux) {
    for (size_t e = 0; e < nc; ++e) ref_encode(b.aux, e, (float)rng_uniform(0, 1), dtype), b.t[e] = ref_decode(b.aux, e, dtype);
  }
  if (b.labels)
    for (size_t i = 0; i < n; ++i) b.labels[i] = rng_uniform(0, 1) < ignored ? -100 : (int32_t)rng_below((uint32_t)c);
  return b;
}

static void free_batch(batch *b) { free(b->in), free(b->aux), free(b->x), free(b->t), free(b->labels); }

static int softmax(const batch *b) { return b->kind == HARD || b->kind == SOFT; }
/* Loss values of a NONE call: rows (softmax) or values (binary). */
static size_t values(const batch *b) { return softmax(b) ? b->n : b->n * b->c; }

/* What a call wrote: the loss (1 or values(b)), the gradient as floats, lse, the bias gradient. */
typedef struct result {
  float *loss, *grad, *lse, *bias;
  size_t losses;
} result;

static void free_result(result *r) { free(r->loss), free(r->grad), free(r->lse), free(r->bias); }

/* Runs the call on poisoned outputs (gradient separate, or in place over a copy of the input). */
static clxent_status call(clxent_ctx *ctx, const batch *b, const clxent_opts *o, int in_place, result *r) {
  const size_t nc = b->n * b->c, eb = ref_dtype_bytes(b->dtype);
  r->losses = o->reduction == CLXENT_NONE ? values(b) : 1;
  r->loss = xmalloc(r->losses * sizeof(float)), r->grad = xmalloc(nc * sizeof(float));
  r->lse = softmax(b) ? xmalloc(b->n * sizeof(float)) : NULL, r->bias = xmalloc(b->c * sizeof(float));
  poison(r->loss, r->losses), poison(r->bias, b->c);
  if (r->lse) poison(r->lse, b->n);
  unsigned char *g = xmalloc(nc * eb);
  if (in_place) memcpy(g, b->in, nc * eb);
  else memset(g, 0xFF, nc * eb); /* NaN in every type */
  const void *in = in_place ? g : b->in;
  clxent_ex ex = clxent_ex_default();
  ex.dtype = b->dtype, ex.lse = r->lse, ex.bias_grad = r->bias;
  clxent_status st;
  switch (b->kind) {
    case HARD: st = clxent_softmax_xent_ex(ctx, b->n, b->c, in, b->labels, o, &ex, r->loss, g); break;
    case SOFT: st = clxent_softmax_xent_soft_ex(ctx, b->n, b->c, in, b->aux, o, &ex, r->loss, g); break;
    case SIGMOID: st = clxent_sigmoid_xent_ex(ctx, b->n, b->c, in, b->aux, o, &ex, r->loss, g); break;
    default: st = clxent_bce_ex(ctx, b->n, b->c, in, b->aux, o, &ex, r->loss, g); break;
  }
  for (size_t e = 0; e < nc; ++e) r->grad[e] = ref_decode(g, e, b->dtype);
  free(g);
  return st;
}

static double storage_rtol(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 1e-4 : t == CLXENT_FLOAT16 ? 1.5e-3 : 8e-3; }

/* The call against the float64 reference: loss (or NONE's values), lse, gradient, bias gradient. */
static void check(clxent_ctx *ctx, const batch *b, const clxent_opts *o, int in_place, const char *what) {
  result r;
  const clxent_status st = call(ctx, b, o, in_place, &r);
  if (st != CLXENT_OK) fail_msg("%s: %s: %s", what, clxent_status_str(st), clxent_last_error(ctx));
  const size_t n = b->n, c = b->c, nc = n * c;
  ref_out ref = {.rows = xmalloc(values(b) * sizeof(double)), .grad = xmalloc(nc * sizeof(double)),
                 .lse = xmalloc(n * sizeof(double)), .bias = xmalloc(c * sizeof(double))};
  switch (b->kind) {
    case HARD: ref_softmax_xent(n, c, b->x, b->labels, o, &ref); break;
    case SOFT: ref_softmax_xent_soft(n, c, b->x, b->t, o, &ref); break;
    case SIGMOID: ref_sigmoid_xent(n, c, b->x, b->t, o, &ref); break;
    default: ref_bce(n, c, b->x, b->t, o, &ref); break;
  }
  if (b->dtype == CLXENT_FLOAT16) /* beyond half's range the stored gradient is ±inf */
    for (size_t e = 0; e < nc; ++e)
      if (fabs(ref.grad[e]) >= 65520.0) ref.grad[e] = copysign(INFINITY, ref.grad[e]);
  char label[300];
  const double tol = 3e-5 * (1.0 + log((double)c)) * (1.0 + 20.0 * o->z_loss);
  snprintf(label, sizeof label, "%s: loss", what);
  if (o->reduction == CLXENT_NONE) assert_close(r.loss, ref.rows, r.losses, tol, tol, label);
  else assert_close(r.loss, &ref.loss, 1, tol, tol, label);
  if (r.lse) {
    snprintf(label, sizeof label, "%s: lse", what);
    assert_close(r.lse, ref.lse, n, 1e-5, 1e-5, label);
  }
  const double gmax = ref.gscale * (1.0 + log((double)c));
  snprintf(label, sizeof label, "%s: grad", what);
  assert_close(r.grad, ref.grad, nc, 2e-6 * gmax + (b->dtype == CLXENT_FLOAT16 ? 6e-8 : 0), storage_rtol(b->dtype),
               label);
  double *sums = xmalloc(c * sizeof(double)); /* the bias gradient: Σ_i of the stored gradient */
  for (size_t j = 0; j < c; ++j) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += r.grad[i * c + j];
    sums[j] = s;
  }
  snprintf(label, sizeof label, "%s: bias_grad", what);
  assert_close(r.bias, sums, c, 1e-6 * (double)n * gmax, 1e-4, label);
  free(sums), free(ref.rows), free(ref.grad), free(ref.lse), free(ref.bias);
  free_result(&r);
}

/* Upstream gradients of both signs, with zeros, of a few magnitudes. */
static float *random_upstream(size_t k, uint64_t seed) {
  float *g = xmalloc(k * sizeof(float));
  rng_seed(seed);
  for (size_t e = 0; e < k; ++e) {
    const double u = rng_uniform(0, 1);
    g[e] = u < 0.1 ? 0.0f : u < 0.2 ? (float)rng_uniform(-40, 40) : (float)rng_uniform(-2, 2);
  }
  return g;
}

static float *random_weights(size_t c) {
  float *w = xmalloc(c * sizeof(float));
  for (size_t j = 0; j < c; ++j) w[j] = (float)rng_uniform(0.2, 3.0);
  return w;
}

/* The options of a case: o for softmax losses with `opt` 0 none, 1 weights + smoothing, 2 z-loss +
 * softcap, 3 everything; pos_weight for the binary ones with opt odd. */
static clxent_opts options(const batch *b, int opt, float *w) {
  clxent_opts o = clxent_opts_default();
  if (!softmax(b)) {
    if (opt & 1) o.pos_weight = w;
    return o;
  }
  if (opt & 1) o.class_weight = w, o.label_smoothing = 0.1f;
  if (opt & 2) o.z_loss = 1e-3f, o.softcap = 6.0f;
  return o;
}

/* ---------------------------------------------------------------- grad_output */

/* NONE with one g_i per loss value: every loss, shape and storage type, with options, ignored
 * rows, in place and not. */
static void test_per_value_grad_output(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  for (int dt = CLXENT_FLOAT32; dt <= CLXENT_BFLOAT16; ++dt)
    for (size_t s = 0; s < SHAPES; ++s)
      for (int kind = HARD; kind <= BCE; ++kind) {
        const size_t n = shapes[s][0], c = shapes[s][1];
        if (dt != CLXENT_FLOAT32 && c > 4099) continue; /* the 16-bit kernels: the same code past one chunk */
        const uint64_t seed = 1000 * (uint64_t)dt + 10 * s + (uint64_t)kind;
        batch b = make_batch((enum loss_kind)kind, n, c, (clxent_dtype)dt, seed, 0.15);
        float *w = random_weights(c), *g = random_upstream(values(&b), seed + 7);
        for (int opt = 0; opt < 4; ++opt) {
          clxent_opts o = options(&b, opt, w);
          o.reduction = CLXENT_NONE, o.grad_output = g;
          char what[160];
          snprintf(what, sizeof what, "%s %zux%zu %s NONE grad_output[] opt %d", kind_names[kind], n, c,
                   dtype_names[dt], opt);
          check(ctx, &b, &o, opt == 3, what);
        }
        free(w), free(g), free_batch(&b);
      }
}

/* MEAN and SUM with one g: g·dJ/dz, the loss unchanged; g negative, 0 and large. */
static void test_scalar_grad_output(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const float gs[] = {2.5f, -0.75f, 0.0f, 1e3f};
  for (size_t s = 0; s < SHAPES; ++s)
    for (int kind = HARD; kind <= BCE; ++kind) {
      const size_t n = shapes[s][0], c = shapes[s][1];
      const uint64_t seed = 5000 + 10 * s + (uint64_t)kind;
      batch b = make_batch((enum loss_kind)kind, n, c, s % 2 ? CLXENT_BFLOAT16 : CLXENT_FLOAT32, seed, 0.15);
      rng_seed(seed);
      float *w = random_weights(c);
      for (int r = CLXENT_MEAN; r <= CLXENT_SUM; ++r)
        for (size_t k = 0; k < sizeof gs / sizeof gs[0]; ++k) {
          clxent_opts o = options(&b, (int)k, w);
          o.reduction = (clxent_reduction)r, o.grad_output = &gs[k];
          char what[160];
          snprintf(what, sizeof what, "%s %zux%zu %s g = %g", kind_names[kind], n, c, r ? "SUM" : "MEAN", (double)gs[k]);
          check(ctx, &b, &o, 0, what);
        }
      free(w), free_batch(&b);
    }
}

static void assert_same_result(const result *a, const result *b, size_t n, size_t c, const char *what) {
  if (memcmp(a->loss, b->loss, a->losses * sizeof(float))) fail_msg("%s: the loss differs", what);
  for (size_t e = 0; e < n * c; ++e)
    if (memcmp(&a->grad[e], &b->grad[e], sizeof(float)))
      fail_msg("%s: grad[%zu] = %a, expected %a", what, e, (double)b->grad[e], (double)a->grad[e]);
  if (a->lse && memcmp(a->lse, b->lse, n * sizeof(float))) fail_msg("%s: lse differs", what);
  if (memcmp(a->bias, b->bias, c * sizeof(float))) fail_msg("%s: the bias gradient differs", what);
}

/* g = 1 (one value, or all ones) gives exactly the bits of grad_output NULL; so does a
 * mean_denominator equal to the library's own divisor (the rows counted, without weights). */
static void test_ones_give_the_bits_of_null(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  for (size_t s = 0; s < SHAPES; ++s)
    for (int kind = HARD; kind <= BCE; ++kind)
      for (int dt = CLXENT_FLOAT32; dt <= CLXENT_BFLOAT16; dt += 2) {
        const size_t n = shapes[s][0], c = shapes[s][1];
        batch b = make_batch((enum loss_kind)kind, n, c, (clxent_dtype)dt, 7000 + 10 * s + (uint64_t)kind, 0.2);
        float *ones = xmalloc(values(&b) * sizeof(float)), *w = random_weights(c);
        for (size_t e = 0; e < values(&b); ++e) ones[e] = 1.0f;
        size_t counted = values(&b);
        if (b.labels) {
          counted = 0;
          for (size_t i = 0; i < n; ++i) counted += b.labels[i] != -100;
        }
        for (int opt = 0; opt < 4; ++opt)
          for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r) {
            clxent_opts o = options(&b, opt, w);
            o.reduction = (clxent_reduction)r;
            result plain, with;
            ASSERT_OK(ctx, call(ctx, &b, &o, 0, &plain));
            o.grad_output = ones;
            ASSERT_OK(ctx, call(ctx, &b, &o, 0, &with));
            char what[160];
            snprintf(what, sizeof what, "%s %zux%zu %s opt %d reduction %d, g = 1", kind_names[kind], n, c,
                     dtype_names[dt], opt, r);
            assert_same_result(&plain, &with, n, c, what);
            free_result(&with);
            /* D = the library's divisor: the same bits, where that divisor is the count */
            if (r == CLXENT_MEAN && counted > 0 && !o.class_weight) {
              o.grad_output = NULL, o.mean_denominator = (double)counted;
              ASSERT_OK(ctx, call(ctx, &b, &o, 0, &with));
              snprintf(what, sizeof what, "%s %zux%zu %s opt %d, D = %zu", kind_names[kind], n, c, dtype_names[dt],
                       opt, counted);
              assert_same_result(&plain, &with, n, c, what);
              free_result(&with);
            }
            free_result(&plain);
          }
        free(ones), free(w), free_batch(&b);
      }
}

/* Streamed in blocks of a few rows (zero-copy or pipelined, as the run's CLXENT_ZERO_COPY says),
 * the per-value upstream gradients follow their rows: the bits of one block. */
static void test_blocks_keep_their_upstream(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t bshapes[][2] = {{67, 8}, {130, 129}, {41, 3}};
  for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; ++s) {
    const size_t n = bshapes[s][0], c = bshapes[s][1];
    clxent_tuning t = CLXENT_TUNING_INIT;
    t.block_bytes = 3 * c * sizeof(float); /* blocks of 3 rows (of 16-bit values: 6) */
    clxent_ctx *blocky = support_create(NULL, &t, NULL);
    for (int kind = HARD; kind <= BCE; ++kind)
      for (int dt = CLXENT_FLOAT32; dt <= CLXENT_FLOAT16; ++dt) {
        batch b = make_batch((enum loss_kind)kind, n, c, (clxent_dtype)dt, 8000 + 10 * s + (uint64_t)kind, 0.2);
        float *g = random_upstream(values(&b), 8100 + s);
        clxent_opts o = clxent_opts_default();
        o.reduction = CLXENT_NONE, o.grad_output = g;
        result one, many;
        ASSERT_OK(ctx, call(ctx, &b, &o, 0, &one));
        ASSERT_OK(blocky, call(blocky, &b, &o, kind == SOFT, &many));
        char what[160];
        snprintf(what, sizeof what, "%s %zux%zu %s in blocks of 3 rows", kind_names[kind], n, c, dtype_names[dt]);
        assert_same_result(&one, &many, n, c, what);
        free_result(&one), free_result(&many), free(g), free_batch(&b);
      }
    clxent_destroy(blocky);
  }
}

/* grad_output with grad NULL: allowed, checked, and it changes nothing (the loss is not scaled). */
static void test_grad_output_without_grad(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  batch b = make_batch(HARD, 10, 5, CLXENT_FLOAT32, 9, 0.1);
  float g[10], plain[10], with[10];
  for (int i = 0; i < 10; ++i) g[i] = (float)i - 4.5f;
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 10, 5, b.x, b.labels, &o, plain, NULL));
  o.grad_output = g;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 10, 5, b.x, b.labels, &o, with, NULL));
  assert_memory_equal(plain, with, sizeof plain);
  g[3] = NAN;
  poison(with, 10);
  assert_int_equal(clxent_softmax_xent(ctx, 10, 5, b.x, b.labels, &o, with, NULL), CLXENT_ERR_INVALID_ARG);
  assert_non_null(strstr(clxent_last_error(ctx), "opts->grad_output[3]"));
  assert_true(is_poison(with, 10));
  free_batch(&b);
}

/* ---------------------------------------------------------------- mean_denominator */

/* D divides the loss (z-loss terms included) and the gradient, with weights, smoothing, z-loss,
 * softcap, ignored rows and an upstream g, on every loss. */
static void test_mean_denominator(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const double ds[] = {1.0, 3.5, 1e4, 0.125};
  for (size_t s = 0; s < SHAPES; ++s)
    for (int kind = HARD; kind <= BCE; ++kind) {
      const size_t n = shapes[s][0], c = shapes[s][1];
      const uint64_t seed = 11000 + 10 * s + (uint64_t)kind;
      batch b = make_batch((enum loss_kind)kind, n, c, s % 3 == 1 ? CLXENT_FLOAT16 : CLXENT_FLOAT32, seed, 0.25);
      rng_seed(seed);
      float *w = random_weights(c);
      const float g = -1.5f;
      for (size_t k = 0; k < sizeof ds / sizeof ds[0]; ++k) {
        clxent_opts o = options(&b, (int)k, w);
        o.mean_denominator = ds[k];
        if (k == 2) o.grad_output = &g;
        char what[160];
        snprintf(what, sizeof what, "%s %zux%zu D = %g opt %zu", kind_names[kind], n, c, ds[k], k);
        check(ctx, &b, &o, k == 1, what);
      }
      free(w), free_batch(&b);
    }
}

/* Every row ignored, or every counted row of class weight 0: with D the loss is 0 (not NaN) and
 * the gradient 0; the same on the device-resident path is in test_interop. */
static void test_mean_denominator_nothing_counted(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  for (size_t s = 0; s < SHAPES; ++s) {
    const size_t n = shapes[s][0], c = shapes[s][1];
    batch b = make_batch(HARD, n, c, CLXENT_FLOAT32, 12000 + s, 1.0); /* all ignored */
    float *w = xmalloc(c * sizeof(float));
    for (size_t j = 0; j < c; ++j) w[j] = 0.0f;
    for (int zero_weights = 0; zero_weights < 2; ++zero_weights) {
      if (zero_weights)
        for (size_t i = 0; i < n; ++i) b.labels[i] = (int32_t)(i % c);
      clxent_opts o = clxent_opts_default();
      o.mean_denominator = 64, o.z_loss = zero_weights ? 0.0f : 1e-2f, o.label_smoothing = 0.1f;
      if (zero_weights) o.class_weight = w;
      result r;
      ASSERT_OK(ctx, call(ctx, &b, &o, 0, &r));
      if (r.loss[0] != 0.0f) fail_msg("%zux%zu %s: loss %g, expected 0", n, c, zero_weights ? "weights 0" : "all ignored", (double)r.loss[0]);
      for (size_t e = 0; e < n * c; ++e)
        if (r.grad[e] != 0.0f) fail_msg("%zux%zu: grad[%zu] = %g, expected 0", n, c, e, (double)r.grad[e]);
      for (size_t j = 0; j < c; ++j) assert_true(r.bias[j] == 0.0f);
      free_result(&r);
    }
    free(w), free_batch(&b);
  }
}

/* Gradient accumulation: two half-batches, each with D = the whole batch's divisor, sum to the
 * whole batch's MEAN loss, and their gradients are its gradient's halves. */
static void test_accumulation(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t ashapes[][2] = {{2, 5}, {9, 3}, {130, 129}, {67, 32}, {6, 4099}};
  for (size_t s = 0; s < sizeof ashapes / sizeof ashapes[0]; ++s)
    for (int kind = HARD; kind <= BCE; ++kind)
      for (int weighted = 0; weighted < 2; ++weighted) {
        const size_t n = ashapes[s][0], c = ashapes[s][1], h = n / 2, esz = sizeof(float);
        batch b = make_batch((enum loss_kind)kind, n, c, CLXENT_FLOAT32, 13000 + 10 * s + (uint64_t)kind, 0.2);
        rng_seed(s);
        float *w = random_weights(c);
        clxent_opts o = clxent_opts_default();
        double divisor = (double)(softmax(&b) ? n : n * c);
        if (kind == HARD) {
          divisor = 0;
          for (size_t i = 0; i < n; ++i)
            if (b.labels[i] != -100) divisor += weighted ? w[b.labels[i]] : 1.0;
        }
        if (softmax(&b)) {
          o.label_smoothing = 0.1f;
          if (weighted) o.class_weight = w;
          else o.z_loss = 1e-3f; /* the z-loss's own divisor is the rows counted: D's without weights */
        } else if (weighted) {
          o.pos_weight = w;
        }
        if (!(divisor > 0)) continue;
        float whole, halves[2];
        float *g = xmalloc(n * c * esz), *gh = xmalloc(n * c * esz);
        poison(gh, n * c);
        clxent_opts part = o;
        part.mean_denominator = divisor;
        for (int half = 0; half < 2; ++half) {
          const size_t f = half ? h : 0, rows = half ? n - h : h;
          if (!rows) {
            halves[half] = 0;
            continue;
          }
          const float *x = b.x + f * c, *t = b.t ? b.t + f * c : NULL;
          float *out = gh + f * c;
          switch (kind) {
            case HARD: ASSERT_OK(ctx, clxent_softmax_xent(ctx, rows, c, x, b.labels + f, &part, &halves[half], out)); break;
            case SOFT: ASSERT_OK(ctx, clxent_softmax_xent_soft(ctx, rows, c, x, t, &part, &halves[half], out)); break;
            case SIGMOID: ASSERT_OK(ctx, clxent_sigmoid_xent_ex(ctx, rows, c, x, t, &part, NULL, &halves[half], out)); break;
            default: ASSERT_OK(ctx, clxent_bce_ex(ctx, rows, c, x, t, &part, NULL, &halves[half], out)); break;
          }
        }
        switch (kind) {
          case HARD: ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, b.x, b.labels, &o, &whole, g)); break;
          case SOFT: ASSERT_OK(ctx, clxent_softmax_xent_soft(ctx, n, c, b.x, b.t, &o, &whole, g)); break;
          case SIGMOID: ASSERT_OK(ctx, clxent_sigmoid_xent_ex(ctx, n, c, b.x, b.t, &o, NULL, &whole, g)); break;
          default: ASSERT_OK(ctx, clxent_bce_ex(ctx, n, c, b.x, b.t, &o, NULL, &whole, g)); break;
        }
        char what[160];
        snprintf(what, sizeof what, "%s %zux%zu weighted %d: two halves with D = %g", kind_names[kind], n, c, weighted,
                 divisor);
        const double sum = (double)halves[0] + (double)halves[1];
        if (!(fabs(sum - whole) <= 1e-5 * (1 + fabs(whole))))
          fail_msg("%s: %g + %g = %g, whole batch %g", what, (double)halves[0], (double)halves[1], sum, (double)whole);
        double *gd = xmalloc(n * c * sizeof(double));
        double gm = 0;
        for (size_t e = 0; e < n * c; ++e) gd[e] = g[e], gm = fmax(gm, fabs(g[e]));
        assert_close(gh, gd, n * c, 1e-6 * (gm + 1e-30), 1e-5, what);
        free(gd), free(g), free(gh), free(w), free_batch(&b);
      }
}

/* ---------------------------------------------------------------- rejected values */

#define REJECT(needle, call_expr)                                                                     \
  do {                                                                                               \
    poison(loss, N * C), poison(grad, N * C), poison(lse, N);                                        \
    const clxent_status st_ = (call_expr);                                                           \
    if (st_ != CLXENT_ERR_INVALID_ARG) fail_msg("%s -> %s", #call_expr, clxent_status_str(st_));     \
    if (!strstr(clxent_last_error(ctx), needle))                                                     \
      fail_msg("%s: message \"%s\" lacks \"%s\"", #call_expr, clxent_last_error(ctx), needle);       \
    if (!is_poison(loss, N * C) || !is_poison(grad, N * C) || !is_poison(lse, N))                    \
      fail_msg("%s: a rejected call wrote an output", #call_expr);                                   \
  } while (0)

static void test_rejected_values(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 8, C = 6 };
  float z[N * C], t[N * C], loss[N * C], grad[N * C], lse[N], g[N * C];
  int32_t y[N];
  rng_seed(3);
  fill_uniform(z, N * C, -2, 2);
  fill_distribution_rows(t, N, C, 0);
  for (int i = 0; i < N; ++i) y[i] = i % C;
  for (int e = 0; e < N * C; ++e) g[e] = 1.0f;
  clxent_ex ex = clxent_ex_default();
  ex.lse = lse;
  static const float bad[] = {NAN, INFINITY, -INFINITY};
  for (int k = 0; k < 3; ++k) {
    clxent_opts o = clxent_opts_default();
    o.grad_output = g;
    g[0] = bad[k]; /* MEAN reads one value */
    REJECT("opts->grad_output[0]", clxent_softmax_xent_ex(ctx, N, C, z, y, &o, &ex, loss, grad));
    o.reduction = CLXENT_SUM;
    REJECT("opts->grad_output[0]", clxent_bce(ctx, N, t, t, &o, loss, grad));
    g[0] = 1.0f, g[5] = bad[k], o.reduction = CLXENT_NONE;
    REJECT("opts->grad_output[5]", clxent_softmax_xent_soft_ex(ctx, N, C, z, t, &o, &ex, loss, grad));
    g[5] = 1.0f, g[N * C - 1] = bad[k]; /* the binary losses read n·c values */
    REJECT("opts->grad_output[47]", clxent_sigmoid_xent_ex(ctx, N, C, z, t, &o, NULL, loss, grad));
    g[N * C - 1] = 1.0f;
  }
  static const double bad_d[] = {NAN, INFINITY, -INFINITY, -1.0, 1e-300, 1e300};
  for (int k = 0; k < 6; ++k) {
    clxent_opts o = clxent_opts_default();
    o.mean_denominator = bad_d[k];
    REJECT("opts->mean_denominator", clxent_softmax_xent_ex(ctx, N, C, z, y, &o, &ex, loss, grad));
    REJECT("opts->mean_denominator", clxent_sigmoid_xent_ex(ctx, N, C, z, t, &o, NULL, loss, grad));
  }
  clxent_opts o = clxent_opts_default();
  o.mean_denominator = 4, o.reduction = CLXENT_SUM;
  REJECT("opts->mean_denominator = 4 applies to CLXENT_MEAN only", clxent_softmax_xent(ctx, N, C, z, y, &o, loss, grad));
  o.reduction = CLXENT_NONE;
  REJECT("opts->mean_denominator = 4 applies to CLXENT_MEAN only", clxent_bce(ctx, N, t, t, &o, loss, grad));
  /* an input: the outputs may not overlap it */
  o = clxent_opts_default(), o.reduction = CLXENT_NONE, o.grad_output = grad + 2;
  REJECT("grad overlaps opts->grad_output", clxent_softmax_xent(ctx, N, C, z, y, &o, loss, grad));
  o.grad_output = loss;
  REJECT("loss overlaps opts->grad_output", clxent_softmax_xent(ctx, N, C, z, y, &o, loss, grad));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_per_value_grad_output),      cmocka_unit_test(test_scalar_grad_output),
      cmocka_unit_test(test_ones_give_the_bits_of_null), cmocka_unit_test(test_blocks_keep_their_upstream),
      cmocka_unit_test(test_grad_output_without_grad),   cmocka_unit_test(test_mean_denominator),
      cmocka_unit_test(test_mean_denominator_nothing_counted), cmocka_unit_test(test_accumulation),
      cmocka_unit_test(test_rejected_values),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
