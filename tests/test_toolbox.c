/* The loss toolbox: class weights, label smoothing, z-loss, softcap, pos_weight, 16-bit storage,
 * the lse and bias-gradient outputs, alone and combined, against the float64 reference
 * (reference.h), which follows the header's formulas (PyTorch's and Liger's semantics) term by term. */
#define CLXENT_EXPERIMENTAL_API /* clxent_tuning */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

/* ---------------------------------------------------------------- 16-bit formats, independently */

static void test_formats(void **state) {
  (void)state;
  assert_int_equal(ref_to_bf16(1.0f), 0x3F80);
  assert_int_equal(ref_to_bf16(ref_from_bf16(0x3F80) + ldexpf(1.0f, -8)), 0x3F80); /* tie to even */
  assert_int_equal(ref_to_bf16(ref_from_bf16(0x3F81) + ldexpf(1.0f, -8)), 0x3F82);
  assert_int_equal(ref_to_f16(1.0f), 0x3C00);
  assert_int_equal(ref_to_f16(-2.0f), 0xC000);
  assert_int_equal(ref_to_f16(65504.0f), 0x7BFF);
  assert_int_equal(ref_to_f16(1e6f), 0x7C00);
  assert_true(ref_from_f16(0x0001) == ldexpf(1.0f, -24));
}

/* ---------------------------------------------------------------- one checked call */

enum loss_kind { HARD, SOFT, SIGMOID, BCE };
enum grad_mode { GRAD_SEPARATE, GRAD_NONE, GRAD_IN_PLACE };

typedef struct call_case {
  enum loss_kind kind;
  size_t n, c;
  clxent_opts o;
  clxent_dtype dtype;
  enum grad_mode gm;
  int want_lse, want_bias;
} call_case;

static const char *const kind_names[] = {"hard", "soft", "sigmoid", "bce"};
static const char *const dtype_names[] = {"f32", "f16", "bf16"};

/* Relative precision of a stored value of each type. */
static double storage_rtol(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 1e-4 : t == CLXENT_FLOAT16 ? 1.5e-3 : 8e-3; }

/* Runs the case on random inputs and checks every output against the reference. */
static void check_case(clxent_ctx *ctx, const call_case *k, uint64_t seed) {
  const size_t n = k->n, c = k->c, nc = n * c, eb = ref_dtype_bytes(k->dtype);
  const int softmax = k->kind == HARD || k->kind == SOFT;
  rng_seed(seed);
  /* inputs, stored in the call's type; the reference gets what the stored values mean */
  unsigned char *in = xmalloc(nc * eb), *aux = k->kind == HARD ? NULL : xmalloc(nc * eb);
  float *x = xmalloc(nc * sizeof(float)), *t = aux ? xmalloc(nc * sizeof(float)) : NULL;
  int32_t *labels = k->kind == HARD ? xmalloc(n * sizeof(int32_t)) : NULL;
  for (size_t e = 0; e < nc; ++e) {
    const double v = k->kind == BCE ? rng_uniform(0, 1) : rng_uniform(-12, 12);
    ref_encode(in, e, (float)v, k->dtype), x[e] = ref_decode(in, e, k->dtype);
  }
  if (k->kind == SOFT) {
    float *p = xmalloc(nc * sizeof(float));
    fill_distribution_rows(p, n, c, 0.3);
    for (size_t e = 0; e < nc; ++e) ref_encode(aux, e, p[e], k->dtype), t[e] = ref_decode(aux, e, k->dtype);
    free(p);
  } else if (aux) {
    for (size_t e = 0; e < nc; ++e) ref_encode(aux, e, (float)rng_uniform(0, 1), k->dtype), t[e] = ref_decode(aux, e, k->dtype);
  }
  if (labels)
    for (size_t i = 0; i < n; ++i)
      labels[i] = (n > 3 && rng_uniform(0, 1) < 0.15) ? k->o.ignore_index : (int32_t)rng_below((uint32_t)c);

  /* outputs, poisoned */
  const size_t loss_count = k->o.reduction == CLXENT_NONE ? (softmax ? n : nc) : 1;
  float *loss = xmalloc(loss_count * sizeof(float)), *lse = k->want_lse ? xmalloc(n * sizeof(float)) : NULL;
  float *bias = k->want_bias ? xmalloc(c * sizeof(float)) : NULL;
  unsigned char *grad = k->gm == GRAD_SEPARATE ? xmalloc(nc * eb) : k->gm == GRAD_IN_PLACE ? in : NULL;
  poison(loss, loss_count);
  if (lse) poison(lse, n);
  if (bias) poison(bias, c);
  if (k->gm == GRAD_SEPARATE) memset(grad, 0xFF, nc * eb); /* NaN in every type */

  clxent_ex ex = clxent_ex_default();
  ex.dtype = k->dtype, ex.lse = lse, ex.bias_grad = bias;
  clxent_status st;
  switch (k->kind) {
    case HARD: st = clxent_softmax_xent_ex(ctx, n, c, in, labels, &k->o, &ex, loss, grad); break;
    case SOFT: st = clxent_softmax_xent_soft_ex(ctx, n, c, in, aux, &k->o, &ex, loss, grad); break;
    case SIGMOID: st = clxent_sigmoid_xent_ex(ctx, n, c, in, aux, &k->o, &ex, loss, grad); break;
    default: st = clxent_bce_ex(ctx, n, c, in, aux, &k->o, &ex, loss, grad); break;
  }
  char what[200];
  snprintf(what, sizeof what, "%s %zux%zu %s red=%d eps=%g z=%g cap=%g w=%s pw=%s grad=%d", kind_names[k->kind], n,
           c, dtype_names[k->dtype], (int)k->o.reduction, (double)k->o.label_smoothing, (double)k->o.z_loss,
           (double)k->o.softcap, k->o.class_weight ? "yes" : "no", k->o.pos_weight ? "yes" : "no", (int)k->gm);
  if (st != CLXENT_OK) fail_msg("%s: %s: %s", what, clxent_status_str(st), clxent_last_error(ctx));

  ref_out r = {.rows = xmalloc((softmax ? n : nc) * sizeof(double)),
               .grad = k->gm == GRAD_NONE ? NULL : xmalloc(nc * sizeof(double)),
               .lse = lse ? xmalloc(n * sizeof(double)) : NULL,
               .bias = bias ? xmalloc(c * sizeof(double)) : NULL};
  switch (k->kind) {
    case HARD: ref_softmax_xent(n, c, x, labels, &k->o, &r); break;
    case SOFT: ref_softmax_xent_soft(n, c, x, t, &k->o, &r); break;
    case SIGMOID: ref_sigmoid_xent(n, c, x, t, &k->o, &r); break;
    default: ref_bce(n, c, x, t, &k->o, &r); break;
  }
  if (r.grad && k->dtype == CLXENT_FLOAT16) /* beyond half's range the stored gradient is ±inf */
    for (size_t e = 0; e < nc; ++e)
      if (fabs(r.grad[e]) >= 65520.0) r.grad[e] = copysign(INFINITY, r.grad[e]);

  char label[260];
  const double tol = 3e-5 * (1.0 + log((double)c)) * (1.0 + 20.0 * k->o.z_loss);
  snprintf(label, sizeof label, "%s: loss", what);
  if (k->o.reduction == CLXENT_NONE) assert_close(loss, r.rows, loss_count, tol, tol, label);
  else assert_close(loss, &r.loss, 1, tol, tol, label);
  if (lse) {
    snprintf(label, sizeof label, "%s: lse", what);
    assert_close(lse, r.lse, n, 1e-5, 1e-5, label);
  }
  if (r.grad) {
    /* float32 sums over a row (Σ τ, Σ e^u) carry a relative error growing with c */
    const double gmax = r.gscale * (1.0 + log((double)c));
    float *g = xmalloc(nc * sizeof(float));
    for (size_t e = 0; e < nc; ++e) g[e] = ref_decode(grad, e, k->dtype);
    snprintf(label, sizeof label, "%s: grad", what);
    /* f16 flushes below 2^-24; weights and smoothing scale the terms by up to max w */
    assert_close(g, r.grad, nc, 2e-6 * gmax + (k->dtype == CLXENT_FLOAT16 ? 6e-8 : 0), storage_rtol(k->dtype), label);
    if (bias) { /* Σ_i of the stored gradient, which the library sums in float32 */
      double *ref_bias = xmalloc(c * sizeof(double));
      for (size_t j = 0; j < c; ++j) {
        double s = 0;
        for (size_t i = 0; i < n; ++i) s += g[i * c + j];
        ref_bias[j] = s;
      }
      snprintf(label, sizeof label, "%s: bias_grad", what);
      assert_close(bias, ref_bias, c, 1e-6 * (double)n * gmax, 1e-4, label);
      if (k->dtype == CLXENT_FLOAT32) /* and the reference's own: each term within the gradient's tolerance */
        for (size_t j = 0; j < c; ++j) {
          double sum_abs = 0;
          for (size_t i = 0; i < n; ++i) sum_abs += fabs(r.grad[i * c + j]);
          snprintf(label, sizeof label, "%s: bias_grad vs reference, column %zu", what, j);
          assert_close(bias + j, r.bias + j, 1, 3e-6 * (double)n * gmax + 1e-4 * sum_abs, 1e-4, label);
        }
      free(ref_bias);
    }
    free(g);
  }
  if (k->gm != GRAD_IN_PLACE)
    for (size_t e = 0; e < nc; ++e)
      if (ref_decode(in, e, k->dtype) != x[e] && !(isnan(x[e]))) fail_msg("%s: input %zu modified", what, e);
  free(in), free(aux), free(x), free(t), free(labels), free(loss), free(lse), free(bias);
  if (k->gm == GRAD_SEPARATE) free(grad);
  free(r.rows), free(r.grad), free(r.lse), free(r.bias);
}

static float *random_weights(size_t c, int with_zero) {
  float *w = xmalloc(c * sizeof(float));
  for (size_t j = 0; j < c; ++j) w[j] = (float)rng_uniform(0.2, 3.0);
  if (with_zero && c > 2) w[1] = 0.0f;
  return w;
}

/* c ≤ 64 takes the short-row kernel (8 rows per work-item: 37 rows leave a partial item), with
 * softcap c ≤ 32 (33 and 64 take the row kernel there); 65 is the row kernel's shortest; 4099 and
 * 262147 span several chunks of the row kernel's first pass */
static const size_t shapes[][2] = {{1, 1},  {1, 2},    {7, 3},    {13, 17},  {37, 32},   {9, 33},
                                   {37, 64}, {5, 65}, {64, 1000}, {5, 4099}, {130, 129}, {2, 262147}};
#define SHAPES (sizeof shapes / sizeof shapes[0])

/* Each option alone, on every shape and reduction (float32). */
static void test_options_alone(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  for (size_t s = 0; s < SHAPES; ++s) {
    const size_t n = shapes[s][0], c = shapes[s][1];
    rng_seed(s);
    float *w = random_weights(c, 1);
    for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r)
      for (int opt = 0; opt < 5; ++opt)
        for (int kind = HARD; kind <= SOFT; ++kind) {
          call_case k = {(enum loss_kind)kind, n, c, clxent_opts_default(), CLXENT_FLOAT32, GRAD_SEPARATE, 1, 1};
          k.o.reduction = (clxent_reduction)r;
          if (opt == 0) k.o.class_weight = w;
          if (opt == 1) k.o.label_smoothing = 0.1f;
          if (opt == 2) k.o.z_loss = 1e-3f;
          if (opt == 3) k.o.softcap = 5.0f;
          if (opt == 4) k.o.softcap = 3e6f; /* s ≫ |z|: tanh(z/s) must not cancel (found by fuzzing) */
          check_case(ctx, &k, 100 * s + 10 * (size_t)r + (size_t)opt);
        }
    free(w);
  }
}

/* The combinations users run: weights + smoothing + ignore_index + MEAN; softcap + z-loss; and
 * everything at once, with every gradient mode. */
static void test_combinations(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  for (size_t s = 0; s < SHAPES; ++s) {
    const size_t n = shapes[s][0], c = shapes[s][1];
    rng_seed(1000 + s);
    float *w = random_weights(c, 1);
    for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; ++gm)
      for (int kind = HARD; kind <= SOFT; ++kind) {
        call_case k = {(enum loss_kind)kind, n, c, clxent_opts_default(), CLXENT_FLOAT32, (enum grad_mode)gm, 1,
                       gm != GRAD_NONE};
        k.o.class_weight = w, k.o.label_smoothing = 0.2f, k.o.ignore_index = 2;
        check_case(ctx, &k, 2000 + s);
        k.o = clxent_opts_default(), k.o.softcap = 3.0f, k.o.z_loss = 1e-2f, k.o.reduction = CLXENT_SUM;
        check_case(ctx, &k, 3000 + s);
        k.o.class_weight = w, k.o.label_smoothing = 0.05f, k.o.reduction = CLXENT_MEAN;
        check_case(ctx, &k, 4000 + s);
      }
    free(w);
  }
}

/* A 16-bit gradient is the float32 gradient rounded once to nearest even: the kernels compute in
 * float32 for every storage type, so on logits that 16-bit storage holds exactly the 16-bit call
 * must give the float32 call's gradient, rounded. Rows that start on a 16-byte boundary (float16
 * converts there with the device's instructions) and rows that do not (integer code), spreads
 * that make subnormal float16 gradients, in place and not, hard labels with options. */
static void test_16bit_rounds_once(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  /* 50000: softcap's u and e side by side in PoCL's scratch; 128256: a row in the whole of it */
  static const size_t sizes[][2] = {{6, 1000}, {5, 1001}, {3, 4099}, {17, 24}, {9, 8}, {4, 32000}, {2, 50000}, {2, 128256}};
  for (int dt = CLXENT_FLOAT16; dt <= CLXENT_BFLOAT16; ++dt)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s)
      for (int opt = 0; opt < 3; ++opt) {
        const size_t n = sizes[s][0], c = sizes[s][1], nc = n * c;
        uint16_t *z16 = xmalloc(nc * 2), *g16 = xmalloc(nc * 2), *w16 = xmalloc(nc * 2);
        float *z32 = xmalloc(nc * 4), *g32 = xmalloc(nc * 4);
        int32_t *labels = xmalloc(n * sizeof(int32_t));
        rng_seed(9000 + s * 10 + (size_t)opt);
        for (size_t e = 0; e < nc; ++e) {
          ref_encode(z16, e, (float)rng_uniform(-12, 12), (clxent_dtype)dt); /* e^-24: subnormal f16 */
          z32[e] = ref_decode(z16, e, (clxent_dtype)dt);
        }
        for (size_t i = 0; i < n; ++i) labels[i] = (int32_t)rng_below((uint32_t)c);
        clxent_opts o = clxent_opts_default();
        if (opt == 1) o.label_smoothing = 0.1f, o.z_loss = 1e-3f;
        if (opt == 2) o.softcap = 8.0f;
        clxent_ex x = clxent_ex_default();
        float loss32, loss16;
        ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, z32, labels, &o, &loss32, g32));
        x.dtype = (clxent_dtype)dt;
        memcpy(w16, z16, nc * 2);
        ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z16, labels, &o, &x, &loss16, g16));
        ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, w16, labels, &o, &x, &loss16, w16)); /* in place */
        for (size_t e = 0; e < nc; ++e) {
          uint16_t want[1];
          ref_encode(want, 0, g32[e], (clxent_dtype)dt);
          if (g16[e] != want[0] || w16[e] != want[0])
            fail_msg("%s %zux%zu option %d: grad[%zu] = 0x%04x (in place 0x%04x), float32 %a rounds to 0x%04x",
                     dtype_names[dt], n, c, opt, e, g16[e], w16[e], (double)g32[e], want[0]);
        }
        assert_true(loss16 == loss32);
        free(z16), free(g16), free(w16), free(z32), free(g32), free(labels);
      }
}

/* 16-bit storage for every loss, with options, in place and not. */
static void test_storage_types(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  for (int dt = CLXENT_FLOAT16; dt <= CLXENT_BFLOAT16; ++dt)
    for (size_t s = 0; s < SHAPES; ++s) {
      const size_t n = shapes[s][0], c = shapes[s][1];
      rng_seed(5000 + s);
      float *w = random_weights(c, 0);
      for (int kind = HARD; kind <= BCE; ++kind)
        for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; ++gm) {
          call_case k = {(enum loss_kind)kind, n, c, clxent_opts_default(), (clxent_dtype)dt, (enum grad_mode)gm,
                         kind <= SOFT, gm != GRAD_NONE};
          check_case(ctx, &k, 6000 + s);
          if (kind <= SOFT) k.o.softcap = 4.0f, k.o.z_loss = 1e-3f, k.o.label_smoothing = 0.1f, k.o.class_weight = w;
          else k.o.pos_weight = w, k.o.reduction = CLXENT_SUM;
          check_case(ctx, &k, 7000 + s);
        }
      free(w);
    }
}

/* pos_weight on both binary losses, multi-column, every reduction. */
static void test_pos_weight(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t bshapes[][2] = {{1, 1}, {9, 1}, {33, 5}, {1000, 7}, {3, 1031}};
  for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; ++s) {
    rng_seed(8000 + s);
    float *pw = random_weights(bshapes[s][1], 1);
    for (int kind = SIGMOID; kind <= BCE; ++kind)
      for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r) {
        call_case k = {(enum loss_kind)kind, bshapes[s][0], bshapes[s][1], clxent_opts_default(), CLXENT_FLOAT32,
                       GRAD_SEPARATE, 0, 1};
        k.o.reduction = (clxent_reduction)r;
        check_case(ctx, &k, 9000 + s);
        k.o.pos_weight = pw;
        check_case(ctx, &k, 9000 + s);
        k.gm = GRAD_IN_PLACE;
        check_case(ctx, &k, 9100 + s);
      }
    free(pw);
  }
}

/* Worked values: smoothing and weights on the seed's example, by hand. Label [0,0,1], a =
 * [0.1,0.6,0.3]: -ln 0.3 = 1.204; with ε = 0.3 the target is [0.1,0.1,0.8] and the loss
 * -(0.1 ln 0.1 + 0.1 ln 0.6 + 0.8 ln 0.3) = 1.2445. */
static void test_worked_values(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const float z[3] = {logf(0.1f), logf(0.6f), logf(0.3f)};
  const int32_t y[1] = {2};
  float loss, lse;
  clxent_opts o = clxent_opts_default();
  o.label_smoothing = 0.3f;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1, 3, z, y, &o, &loss, NULL));
  assert_float_equal(loss, -(0.1 * log(0.1) + 0.1 * log(0.6) + 0.8 * log(0.3)), 1e-5);
  assert_float_equal(loss, 1.2445, 1e-4);
  /* a class weight scales a row's loss; MEAN divides by the weights: one row → the plain loss */
  const float w[3] = {1.0f, 1.0f, 4.0f};
  o = clxent_opts_default(), o.class_weight = w;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1, 3, z, y, &o, &loss, NULL));
  assert_float_equal(loss, 1.204, 5e-4);
  o.reduction = CLXENT_SUM;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1, 3, z, y, &o, &loss, NULL));
  assert_float_equal(loss, 4 * 1.204, 2e-3);
  /* z-loss: the row's lse is ln(0.1 + 0.6 + 0.3) = 0, so it adds nothing here; shifting the
   * logits by 2 makes lse = 2 and adds λ·4 */
  clxent_ex ex = clxent_ex_default();
  ex.lse = &lse;
  const float z2[3] = {z[0] + 2, z[1] + 2, z[2] + 2};
  o = clxent_opts_default(), o.z_loss = 0.5f;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, 1, 3, z2, y, &o, &ex, &loss, NULL));
  assert_float_equal(lse, 2.0, 1e-5);
  assert_float_equal(loss, 1.204 + 0.5 * 4, 5e-4);
  /* pos_weight 2 doubles the positive term: y = 1, a = 0.6 → 2 · 0.511 */
  const float p06 = 0.6f, one = 1.0f, two = 2.0f;
  o = clxent_opts_default(), o.pos_weight = &two;
  ASSERT_OK(ctx, clxent_bce(ctx, 1, &p06, &one, &o, &loss, NULL));
  assert_float_equal(loss, 2 * 0.511, 1e-3);
  const float zlogit = logf(0.6f / 0.4f);
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, 1, &zlogit, &one, &o, &loss, NULL));
  assert_float_equal(loss, 2 * 0.511, 1e-3);
}

/* Softcap keeps -inf a mask, handles ±1e4, and propagates NaN. */
static void test_softcap_extremes(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const float z[2][4] = {{-INFINITY, 1e4f, -1e4f, 0.0f}, {NAN, 1.0f, 2.0f, 3.0f}};
  const int32_t y[2] = {1, 2};
  float rows[2], grad[8];
  clxent_opts o = clxent_opts_default();
  o.softcap = 30.0f, o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 2, 4, &z[0][0], y, &o, rows, grad));
  /* row 0: u = [-inf, 30, -30, 0]; loss = lse - 30 ≈ e^-30 */
  assert_true(isfinite(rows[0]) && rows[0] >= 0 && rows[0] < 1e-6);
  assert_true(grad[0] == 0.0f);          /* the mask's gradient */
  assert_true(fabsf(grad[1]) < 1e-6f);   /* saturated: slope ≈ 0 */
  assert_true(isnan(rows[1]));           /* NaN reaches the loss */
}

/* The ends of softcap's range, 2^-126 (every u is ±s: the softmax of a constant row, slope 0) and
 * 2^126 (u = z, slope 1), against the reference on the short-row and row kernels. */
static void test_softcap_range_ends(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const size_t ends[][2] = {{7, 3}, {37, 64}, {5, 65}, {5, 4099}};
  for (size_t s = 0; s < sizeof ends / sizeof ends[0]; ++s)
    for (int end = 0; end < 2; ++end)
      for (int kind = HARD; kind <= SOFT; ++kind) {
        call_case k = {(enum loss_kind)kind, ends[s][0], ends[s][1], clxent_opts_default(), CLXENT_FLOAT32,
                       GRAD_SEPARATE, 1, 1};
        k.o.softcap = end ? 0x1p126f : FLT_MIN;
        check_case(ctx, &k, 900 + 10 * s + (size_t)end);
      }
}

/* Bias gradient: bit-identical run to run and whatever block size the batch streams in. */
static void test_bias_deterministic(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const size_t n = 1000, c = 37;
  float *z = xmalloc(n * c * sizeof(float)), *g = xmalloc(n * c * sizeof(float));
  float b1[37], b2[37], b3[37], l1, l2, l3;
  int32_t *y = xmalloc(n * sizeof(int32_t));
  rng_seed(77);
  fill_uniform(z, n * c, -5, 5);
  for (size_t i = 0; i < n; ++i) y[i] = (int32_t)rng_below((uint32_t)c);
  clxent_ex ex = clxent_ex_default();
  ex.bias_grad = b1;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, y, NULL, &ex, &l1, g));
  for (int rep = 0; rep < 20; ++rep) {
    ex.bias_grad = b2;
    ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, y, NULL, &ex, &l2, g));
    assert_memory_equal(b1, b2, sizeof b1);
    assert_memory_equal(&l1, &l2, sizeof l1);
  }
  /* blocks of 7 rows (7 × 37 floats): chunks of 64 rows are cut by block boundaries */
  clxent_tuning seven_rows = CLXENT_TUNING_INIT;
  seven_rows.block_bytes = 7 * 37 * sizeof(float);
  clxent_ctx *blocky = support_create(NULL, &seven_rows, NULL);
  ex.bias_grad = b3;
  ASSERT_OK(blocky, clxent_softmax_xent_ex(blocky, n, c, z, y, NULL, &ex, &l3, g));
  clxent_destroy(blocky);
  assert_memory_equal(b1, b3, sizeof b1);
  assert_memory_equal(&l1, &l3, sizeof l1);
  free(z), free(g), free(y);
}

/* Bias gradient, bit for bit the documented order (bias.cl, reduce.cl): per chunk of 64 rows a sum
 * from +0 in row order, then the chunks' sums from +0 in chunk order, here in float32 from the
 * returned gradient. column_partial with column_sum (item variant) or column_sum_group (group
 * variant, tiles of 128 chunks at group 256) must give these bits, and the fused kernel too where
 * the automatic choice takes it (1100 x 70: 18 chunks, fused on devices of at most 9 compute units;
 * test_bias_fused compares it with column_partial everywhere): shapes with one chunk and a part,
 * many chunks, more chunks than one tile (8300 rows: 130), and columns off the group kernel's 8 and
 * the vector widths. */
static void test_bias_documented_order(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t sizes[][2] = {{100, 37}, {1100, 9}, {8300, 13}, {65, 1001}, {20000, 3}, {1100, 70}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
    const size_t n = sizes[s][0], c = sizes[s][1], chunks = (n + 63) / 64;
    float *z = xmalloc(n * c * sizeof(float)), *g = xmalloc(n * c * sizeof(float)), *bias = xmalloc(c * sizeof(float));
    float *want = xmalloc(c * sizeof(float)), loss;
    int32_t *y = xmalloc(n * sizeof(int32_t));
    rng_seed(7100 + s);
    fill_uniform(z, n * c, -6, 6);
    for (size_t i = 0; i < n; ++i) y[i] = (int32_t)rng_below((uint32_t)c);
    clxent_ex ex = clxent_ex_default();
    ex.bias_grad = bias;
    poison(bias, c);
    ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, y, NULL, &ex, &loss, g));
    for (size_t j = 0; j < c; ++j) {
      float total = 0.0f;
      for (size_t k = 0; k < chunks; ++k) {
        float part = 0.0f;
        for (size_t i = k * 64; i < n && i < k * 64 + 64; ++i) part += g[i * c + j];
        total += part;
      }
      want[j] = total;
    }
    for (size_t j = 0; j < c; ++j)
      if (memcmp(&bias[j], &want[j], sizeof(float)))
        fail_msg("%zux%zu: bias_grad[%zu] = %a, the documented order gives %a", n, c, j, (double)bias[j], (double)want[j]);
    free(z), free(g), free(bias), free(want), free(y);
  }
}

#define REJECT(status, needle, call)                                                                  \
  do {                                                                                               \
    poison(loss, 8), poison(grad, 64), poison(lse, 8), poison(bias, 8);                              \
    const clxent_status st_ = (call);                                                                \
    if (st_ != (status)) fail_msg("%s -> %s, expected %s", #call, clxent_status_str(st_), #status);  \
    if (!strstr(clxent_last_error(ctx), needle))                                                     \
      fail_msg("%s: message \"%s\" lacks \"%s\"", #call, clxent_last_error(ctx), needle);            \
    if (!is_poison(loss, 8) || !is_poison(grad, 64) || !is_poison(lse, 8) || !is_poison(bias, 8))    \
      fail_msg("%s: a rejected call wrote an output", #call);                                        \
  } while (0)

/* Every option validated: NaN, infinities, out of range, wrong loss family; nothing written. */
/* MEAN over a zero divisor (every counted row's class weighs 0), the README's rule, which is
 * PyTorch's: the loss is NaN, also where label smoothing leaves loss on classes of positive
 * weight (it was +inf: x/0); the counted rows' gradient is NaN (0/0), the ignored row's 0. */
static void test_zero_divisor(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const float z[12] = {1, 2, 3, -1, 0, 1, 4, 4, 4, 0.5f, -2, 3}, w[3] = {0, 1, 2};
  const int32_t y[4] = {0, 0, -100, 0};
  float loss, grad[12];
  clxent_opts o = clxent_opts_default();
  o.class_weight = w;
  poison(grad, 12);
  for (int smoothing = 0; smoothing < 2; ++smoothing) {
    o.label_smoothing = smoothing ? 0.2f : 0.0f;
    poison(grad, 12);
    ASSERT_OK(ctx, clxent_softmax_xent(ctx, 4, 3, z, y, &o, &loss, grad));
    if (!isnan(loss) || is_poison(&loss, 1)) fail_msg("smoothing %d: loss %g, expected NaN", smoothing, (double)loss);
    for (int k = 0; k < 12; ++k)
      if (k / 3 == 2 ? grad[k] != 0.0f : !isnan(grad[k]) || is_poison(&grad[k], 1))
        fail_msg("smoothing %d: grad[%d] = %g, expected %s", smoothing, k, (double)grad[k], k / 3 == 2 ? "0" : "NaN");
  }
  /* every row ignored: loss NaN (0/0), gradient 0 (nothing counts), as in PyTorch */
  const int32_t none[4] = {-100, -100, -100, -100};
  poison(grad, 12);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 4, 3, z, none, &o, &loss, grad));
  assert_true(isnan(loss));
  for (int k = 0; k < 12; ++k) assert_true(grad[k] == 0.0f);
}

static void test_rejected_options(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 8, C = 8 };
  float z[N * C], t[N * C], loss[8], grad[64], lse[8], bias[8], w[C];
  int32_t y[N];
  rng_seed(5);
  fill_uniform(z, N * C, -1, 1);
  fill_distribution_rows(t, N, C, 0);
  for (int i = 0; i < N; ++i) y[i] = i % C;
  for (int j = 0; j < C; ++j) w[j] = 1.0f;
  clxent_ex ex = clxent_ex_default();
  ex.lse = lse, ex.bias_grad = bias;
  clxent_opts o = clxent_opts_default();
  const float bad_scalars[] = {NAN, INFINITY, -INFINITY, -0.5f};
  for (size_t b = 0; b < 4; ++b) {
    o = clxent_opts_default(), o.label_smoothing = bad_scalars[b];
    REJECT(CLXENT_ERR_INVALID_ARG, "opts->label_smoothing", clxent_softmax_xent_ex(ctx, N, C, z, y, &o, &ex, loss, grad));
    o = clxent_opts_default(), o.z_loss = bad_scalars[b];
    REJECT(CLXENT_ERR_INVALID_ARG, "opts->z_loss", clxent_softmax_xent_soft_ex(ctx, N, C, z, t, &o, &ex, loss, grad));
    o = clxent_opts_default(), o.softcap = bad_scalars[b];
    REJECT(CLXENT_ERR_INVALID_ARG, "opts->softcap", clxent_softmax_xent_ex(ctx, N, C, z, y, &o, &ex, loss, grad));
    o = clxent_opts_default(), o.class_weight = w, w[3] = bad_scalars[b];
    REJECT(CLXENT_ERR_INVALID_ARG, "opts->class_weight[3]", clxent_softmax_xent_ex(ctx, N, C, z, y, &o, &ex, loss, grad));
    o = clxent_opts_default(), o.pos_weight = w;
    REJECT(CLXENT_ERR_INVALID_ARG, "opts->pos_weight[3]", clxent_sigmoid_xent_ex(ctx, N, C, z, t, &o, NULL, loss, grad));
    w[3] = 1.0f;
  }
  o = clxent_opts_default(), o.label_smoothing = 1.0f;
  REJECT(CLXENT_ERR_INVALID_ARG, "outside [0, 1)", clxent_softmax_xent(ctx, N, C, z, y, &o, loss, grad));
  /* a cap whose reciprocal is not a normal float: subnormal (3.59e-40 gave NaN, found by fuzzing),
   * or past 2^126 */
  const float bad_caps[] = {3.59013e-40f, 0x1p-149f, 0x1.fffffcp-127f, 0x1.000002p126f, FLT_MAX};
  for (size_t b = 0; b < sizeof bad_caps / sizeof bad_caps[0]; ++b) {
    o = clxent_opts_default(), o.softcap = bad_caps[b];
    REJECT(CLXENT_ERR_INVALID_ARG, "where 1/s is a normal float",
           clxent_softmax_xent_ex(ctx, N, C, z, y, &o, &ex, loss, grad));
    REJECT(CLXENT_ERR_INVALID_ARG, "opts->softcap", clxent_softmax_xent_soft(ctx, N, C, z, t, &o, loss, grad));
  }
  /* an option on a loss it does not apply to */
  o = clxent_opts_default(), o.pos_weight = w;
  REJECT(CLXENT_ERR_INVALID_ARG, "binary losses only", clxent_softmax_xent(ctx, N, C, z, y, &o, loss, grad));
  o = clxent_opts_default(), o.softcap = 2.0f;
  REJECT(CLXENT_ERR_INVALID_ARG, "opts->softcap applies to the softmax", clxent_sigmoid_xent(ctx, N, z, t, &o, loss, grad));
  o = clxent_opts_default(), o.class_weight = w;
  REJECT(CLXENT_ERR_INVALID_ARG, "opts->class_weight applies", clxent_bce(ctx, N, t, t, &o, loss, grad));
  /* the extras */
  ex.dtype = (clxent_dtype)3;
  REJECT(CLXENT_ERR_INVALID_ARG, "ex->dtype = 3", clxent_softmax_xent_ex(ctx, N, C, z, y, NULL, &ex, loss, grad));
  ex.dtype = CLXENT_FLOAT32;
  REJECT(CLXENT_ERR_INVALID_ARG, "ex->bias_grad needs grad", clxent_softmax_xent_ex(ctx, N, C, z, y, NULL, &ex, loss, NULL));
  REJECT(CLXENT_ERR_INVALID_ARG, "ex->lse applies to the softmax", clxent_bce_ex(ctx, N, C, t, t, NULL, &ex, loss, grad));
  ex.lse = grad + 4;
  REJECT(CLXENT_ERR_INVALID_ARG, "ex->lse overlaps grad", clxent_softmax_xent_ex(ctx, 1, C, z, y, NULL, &ex, loss, grad));
  ex.lse = lse, ex.bias_grad = z;
  REJECT(CLXENT_ERR_INVALID_ARG, "ex->bias_grad overlaps logits", clxent_softmax_xent_ex(ctx, N, C, z, y, NULL, &ex, loss, grad));
  ex.bias_grad = bias;
  o = clxent_opts_default(), o.class_weight = grad;
  REJECT(CLXENT_ERR_INVALID_ARG, "grad overlaps opts->class_weight", clxent_softmax_xent(ctx, N, C, z, y, &o, loss, grad));
  /* arrays misaligned for their elements */
  REJECT(CLXENT_ERR_INVALID_ARG, "logits (", clxent_softmax_xent(ctx, 2, 3, (const float *)((const char *)z + 2), y, NULL, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "is not aligned to its 4-byte elements",
         clxent_softmax_xent(ctx, 2, 3, z, (const int32_t *)((const char *)y + 1), NULL, loss, grad));
  ex = clxent_ex_default(), ex.dtype = CLXENT_FLOAT16;
  REJECT(CLXENT_ERR_INVALID_ARG, "is not aligned to its 2-byte elements",
         clxent_softmax_xent_ex(ctx, 2, 3, (const char *)z + 1, y, NULL, &ex, loss, grad));
  /* 16-bit probabilities are range-checked too: bf16 0x4000 is 2.0 */
  uint16_t probs[N * C];
  for (int e = 0; e < N * C; ++e) probs[e] = 0x3F00; /* 0.5 */
  probs[9] = 0x4000;
  ex = clxent_ex_default(), ex.dtype = CLXENT_BFLOAT16;
  REJECT(CLXENT_ERR_INVALID_ARG, "probs[9] = 2", clxent_bce_ex(ctx, N, C, probs, probs, NULL, &ex, loss, NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_formats),          cmocka_unit_test(test_worked_values),
      cmocka_unit_test(test_options_alone),    cmocka_unit_test(test_combinations),
      cmocka_unit_test(test_storage_types),    cmocka_unit_test(test_16bit_rounds_once),    cmocka_unit_test(test_pos_weight),
      cmocka_unit_test(test_softcap_extremes),
      cmocka_unit_test(test_softcap_range_ends),
      cmocka_unit_test(test_bias_deterministic), cmocka_unit_test(test_bias_documented_order),
      cmocka_unit_test(test_rejected_options), cmocka_unit_test(test_zero_divisor),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
