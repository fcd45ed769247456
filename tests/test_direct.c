/* The direct path (host/direct.c): small float32 hard-label calls on a CPU device computed on the
 * host must give the kernels' bits. Two contexts on the same device, one with the direct path
 * forced on for every call it can take ($CLXENT_DIRECT_MAX=16777216), one with it off
 * ($CLXENT_DIRECT_MAX=0), run the same calls, outputs poisoned before each: the loss, the
 * gradient and lse must be the same bytes (a NaN may differ in its sign only: see same()). Shapes cover both kernels the host mirrors (c ≤ 64:
 * softmax_xent_hard_short; 65..4096: softmax_xent_hard) at sizes off every vector width, every
 * option the direct path takes, and logits with ±1e4, -inf masks, NaN and zeros of both signs.
 * Also: the float64 reference's tolerance on the direct path, a rejected call writes nothing, and
 * $CLXENT_DIRECT_MAX is parsed strictly.
 * Under the group variant (or the device's own math) the direct path is off by construction:
 * the suite then checks that both contexts still agree. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#define CLXENT_EXPERIMENTAL_API /* clxent_info.direct_max */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static clxent_ctx *direct_ctx, *kernel_ctx;

static const size_t rows_list[] = {1, 2, 3, 5, 8, 9, 16, 17, 31, 64, 70};
static const size_t classes_list[] = {1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33, 47, 64, 65, 100, 127, 129,
                                      255, 1000, 1023, 1025, 1100};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The options of one case: each that the direct path takes. */
enum { OPT_MEAN, OPT_SUM, OPT_NONE, OPT_IGNORE, OPT_WEIGHTS, OPT_SMOOTH, OPT_SMOOTH_WEIGHTS, OPT_ZLOSS, OPT_ALL,
       OPT_GRAD_OUTPUT_NONE, OPT_GRAD_OUTPUT_MEAN, OPT_DENOMINATOR, OPT_IN_PLACE, OPT_LOSS_ONLY, OPT_COUNT };
static const char *const opt_names[] = {"mean",        "sum",         "none",       "ignore_index",
                                        "weights",     "smoothing",   "smoothing+weights", "z-loss",
                                        "everything",  "grad_output (none)", "grad_output (mean)",
                                        "mean_denominator", "in place", "loss only"};

/* Logits: uniform in [-6, 6], with (kind 1, 2) some of ±1e4, -inf, NaN, ±0; or (kind 3) rows at
 * the edges of the direct path's narrow exponential (one value 86.99, 87, 87.01 or 95 below its
 * row's max, or one NaN among ordinary values; every other row with -inf masks): the vector loop of 16 lanes against the general one. */
static void make_logits(float *z, size_t n, size_t c, int kind) {
  fill_uniform(z, n * c, -6, 6);
  if (kind == 0) return;
  if (kind == 3) {
    static const float spread[] = {86.99f, 87.0f, 87.01f, 95.0f};
    for (size_t i = 0; i < n; ++i) {
      const size_t j = rng_below((uint32_t)c), k = i % 5;
      float hi = -INFINITY;
      for (size_t q = 0; q < c; ++q) hi = z[i * c + q] > hi ? z[i * c + q] : hi;
      z[i * c + j] = k < 4 ? hi - spread[k] : NAN;
      if (i % 2 == 0) /* and masked classes, the vector loop's e^{-inf} */
        for (size_t q = 0; q < c; ++q)
          if (rng_below(10) == 0) z[i * c + q] = -INFINITY;
    }
    return;
  }
  for (size_t e = 0; e < n * c; ++e) {
    const uint32_t r = rng_below(100);
    if (r < 3) z[e] = rng_below(2) ? 1e4f : -1e4f;
    else if (r < 8) z[e] = -INFINITY;
    else if (r < 10 && kind == 2) z[e] = NAN;
    else if (r < 13) z[e] = rng_below(2) ? 0.0f : -0.0f;
  }
  if (kind == 2 && n > 1) /* a row of -inf only */
    for (size_t j = 0; j < c; ++j) z[c + j] = -INFINITY;
}

/* The same bits; or both NaN. Where two NaNs of different sign meet in one operation (a NaN logit
 * is C's positive NaN, inf - inf makes x86's negative one, and MEAN over rows of total weight 0
 * scales by NaN), IEEE 754 does not say whose bits the result carries, and the compiler may swap
 * the operands of a commutative + or *: the one freedom the direct path cannot pin down in
 * source. The count of such NaNs is printed. */
static unsigned nan_signs;
static int same(const float *a, const float *b, size_t k) {
  for (size_t e = 0; e < k; ++e)
    if (memcmp(&a[e], &b[e], sizeof(float))) {
      if (!(isnan(a[e]) && isnan(b[e]))) return 0;
      ++nan_signs;
    }
  return 1;
}

typedef struct outputs {
  float *loss, *grad, *lse;
} outputs;

/* One call on ctx; returns its status. work is the logits (copied in, the gradient for in place). */
static clxent_status run(clxent_ctx *ctx, int opt, size_t n, size_t c, const float *z, const int32_t *labels,
                         const float *weight, const float *g_up, outputs *out, float *work) {
  clxent_opts o = clxent_opts_default();
  clxent_ex x = CLXENT_EX_INIT;
  x.lse = out->lse;
  switch (opt) {
    case OPT_SUM: o.reduction = CLXENT_SUM; break;
    case OPT_NONE: o.reduction = CLXENT_NONE; break;
    case OPT_IGNORE: o.ignore_index = 3; break;
    case OPT_WEIGHTS: o.class_weight = weight; break;
    case OPT_SMOOTH: o.label_smoothing = 0.1f; break;
    case OPT_SMOOTH_WEIGHTS: o.label_smoothing = 0.2f, o.class_weight = weight; break;
    case OPT_ZLOSS: o.z_loss = 1e-3f; break;
    case OPT_ALL: o.label_smoothing = 0.05f, o.z_loss = 1e-4f, o.class_weight = weight, o.ignore_index = 0; break;
    case OPT_GRAD_OUTPUT_NONE: o.reduction = CLXENT_NONE, o.grad_output = g_up; break;
    case OPT_GRAD_OUTPUT_MEAN: o.grad_output = g_up; break;
    case OPT_DENOMINATOR: o.mean_denominator = 37.0; break;
    default: break;
  }
  memcpy(work, z, n * c * sizeof(float));
  float *grad = opt == OPT_LOSS_ONLY ? NULL : opt == OPT_IN_PLACE ? work : out->grad;
  return clxent_softmax_xent_ex(ctx, n, c, work, labels, &o, &x, out->loss, grad);
}

static void poison_outputs(outputs *o, size_t n, size_t c) {
  poison(o->loss, n), poison(o->grad, n * c), poison(o->lse, n);
}

static void test_same_bits(void **state) {
  (void)state;
  const size_t nmax = 70, cmax = 1100;
  float *z = xmalloc(nmax * cmax * sizeof(float)), *work[2], *weight = xmalloc(cmax * sizeof(float));
  float *g_up = xmalloc(nmax * sizeof(float));
  int32_t *labels = xmalloc(nmax * sizeof(int32_t));
  outputs out[2];
  for (int k = 0; k < 2; ++k) {
    work[k] = xmalloc(nmax * cmax * sizeof(float));
    out[k] = (outputs){xmalloc(nmax * sizeof(float)), xmalloc(nmax * cmax * sizeof(float)),
                       xmalloc(nmax * sizeof(float))};
  }
  unsigned cases = 0;
  for (size_t a = 0; a < COUNT(rows_list); ++a)
    for (size_t b = 0; b < COUNT(classes_list); ++b) {
      const size_t n = rows_list[a], c = classes_list[b];
      for (int opt = 0; opt < OPT_COUNT; ++opt) {
        rng_seed(1000003u * n + 1009u * c + (uint64_t)opt);
        const int kind = (int)((n + c + (size_t)opt) % 4);
        make_logits(z, n, c, kind);
        for (size_t i = 0; i < n; ++i) labels[i] = rng_below(5) == 0 ? 3 : (int32_t)rng_below((uint32_t)c);
        for (size_t i = 0; i < n; ++i) /* 3: ignore_index of OPT_IGNORE; OPT_ALL ignores 0 */
          if (labels[i] == 3 && opt != OPT_IGNORE) labels[i] = opt == OPT_ALL ? 0 : c > 3 ? 2 : 3 % (int32_t)c;
        fill_uniform(weight, c, 0, 2);
        if (c > 2) weight[1] = 0.0f;
        fill_uniform(g_up, n, -2, 2);
        clxent_status st[2];
        for (int k = 0; k < 2; ++k) {
          poison_outputs(&out[k], n, c);
          st[k] = run(k ? kernel_ctx : direct_ctx, opt, n, c, z, labels, weight, g_up, &out[k], work[k]);
        }
        if (st[0] != st[1]) fail_msg("%zu x %zu, %s: status %d (direct) against %d", n, c, opt_names[opt], st[0], st[1]);
        if (st[0] != CLXENT_OK) fail_msg("%zu x %zu, %s: %s", n, c, opt_names[opt], clxent_last_error(direct_ctx));
        const size_t losses = opt == OPT_NONE || opt == OPT_GRAD_OUTPUT_NONE ? n : 1;
        const float *g0 = opt == OPT_IN_PLACE ? work[0] : out[0].grad, *g1 = opt == OPT_IN_PLACE ? work[1] : out[1].grad;
        if (!same(out[0].loss, out[1].loss, losses))
          fail_msg("%zu x %zu, %s (logits kind %d): loss %a (direct) against %a", n, c, opt_names[opt], kind,
                   (double)out[0].loss[0], (double)out[1].loss[0]);
        if (losses < n && !is_poison(out[0].loss + losses, n - losses)) fail_msg("loss written past its value");
        if (!same(out[0].lse, out[1].lse, n)) fail_msg("%zu x %zu, %s: lse differs", n, c, opt_names[opt]);
        if (opt != OPT_LOSS_ONLY)
          for (size_t e = 0; e < n * c; ++e)
            if (!same(&g0[e], &g1[e], 1))
              fail_msg("%zu x %zu, %s (logits kind %d): grad[%zu][%zu] = %a (direct) against %a", n, c, opt_names[opt],
                       kind, e / c, e % c, (double)g0[e], (double)g1[e]);
        if (opt == OPT_LOSS_ONLY && !is_poison(out[0].grad, n * c)) fail_msg("a loss-only call wrote a gradient");
        ++cases;
      }
    }
  printf("%u calls, direct and kernels: the same bytes but for %u NaNs of the other sign\n", cases, nan_signs);
  for (int k = 0; k < 2; ++k) free(work[k]), free(out[k].loss), free(out[k].grad), free(out[k].lse);
  free(z), free(weight), free(g_up), free(labels);
}

/* The direct path within the float64 reference's tolerance, as the other suites check the kernels. */
static void test_reference(void **state) {
  (void)state;
  static const size_t shapes[][2] = {{1, 10}, {7, 3}, {64, 33}, {5, 1000}, {3, 1}};
  for (size_t s = 0; s < COUNT(shapes); ++s)
    for (int opt = 0; opt < 3; ++opt) {
      const size_t n = shapes[s][0], c = shapes[s][1];
      float *z = xmalloc(n * c * sizeof(float)), *grad = xmalloc(n * c * sizeof(float)), *loss = xmalloc(n * sizeof(float));
      float *weight = xmalloc(c * sizeof(float));
      int32_t *labels = xmalloc(n * sizeof(int32_t));
      double *ref_rows = xmalloc(n * sizeof(double)), *ref_grad = xmalloc(n * c * sizeof(double));
      rng_seed(77 + s);
      fill_uniform(z, n * c, -8, 8);
      fill_uniform(weight, c, 0.5, 2);
      for (size_t i = 0; i < n; ++i) labels[i] = i % 4 == 3 ? -100 : (int32_t)rng_below((uint32_t)c);
      clxent_opts o = clxent_opts_default();
      o.reduction = opt == 1 ? CLXENT_NONE : CLXENT_MEAN;
      if (opt == 2) o.label_smoothing = 0.1f, o.z_loss = 1e-3f, o.class_weight = weight;
      ref_out ref = {.rows = ref_rows, .grad = ref_grad};
      ref_softmax_xent(n, c, z, labels, &o, &ref);
      poison(loss, n), poison(grad, n * c);
      ASSERT_OK(direct_ctx, clxent_softmax_xent(direct_ctx, n, c, z, labels, &o, loss, grad));
      const double tol = 2e-5;
      if (o.reduction == CLXENT_NONE) assert_close(loss, ref_rows, n, tol, tol, "direct: loss");
      else assert_close(loss, &ref.loss, 1, tol, tol, "direct: loss");
      assert_close(grad, ref_grad, n * c, 2e-6 * (ref.gscale > 1 ? ref.gscale : 1), 1e-4, "direct: gradient");
      free(z), free(grad), free(loss), free(weight), free(labels), free(ref_rows), free(ref_grad);
    }
}

/* A call the checks reject writes nothing, on the direct path as on the kernels'. */
static void test_rejected_writes_nothing(void **state) {
  (void)state;
  const size_t n = 4, c = 10;
  float z[40], grad[40], loss[4], lse[4];
  int32_t labels[4] = {1, 2, 10, 3}; /* 10: out of range */
  fill_uniform(z, n * c, -3, 3);
  clxent_ex x = CLXENT_EX_INIT;
  x.lse = lse;
  clxent_opts o = clxent_opts_default();
  poison(grad, n * c), poison(loss, n), poison(lse, n);
  assert_int_equal(clxent_softmax_xent_ex(direct_ctx, n, c, z, labels, &o, &x, loss, grad), CLXENT_ERR_LABEL_RANGE);
  assert_true(is_poison(grad, n * c) && is_poison(loss, n) && is_poison(lse, n));
  labels[2] = 0;
  o.label_smoothing = -0.5f; /* out of [0, 1) */
  assert_int_equal(clxent_softmax_xent_ex(direct_ctx, n, c, z, labels, &o, &x, loss, grad), CLXENT_ERR_INVALID_ARG);
  assert_true(is_poison(grad, n * c) && is_poison(loss, n) && is_poison(lse, n));
  o = clxent_opts_default();
  o.reduction = CLXENT_SUM;
  o.mean_denominator = 3.0; /* MEAN only */
  assert_int_equal(clxent_softmax_xent_ex(direct_ctx, n, c, z, labels, &o, &x, loss, grad), CLXENT_ERR_INVALID_ARG);
  assert_true(is_poison(grad, n * c) && is_poison(loss, n) && is_poison(lse, n));
}

/* Calls the direct path leaves to the kernels (softcap, argmax, over the size) agree too. */
static void test_declined_calls(void **state) {
  (void)state;
  const size_t n = 9, c = 40;
  float z[360], grad[2][360], loss[2];
  int32_t labels[9], am[2][9];
  fill_uniform(z, n * c, -4, 4);
  for (size_t i = 0; i < n; ++i) labels[i] = (int32_t)(i * 3 % c);
  for (int k = 0; k < 2; ++k) {
    clxent_opts o = clxent_opts_default();
    o.softcap = 3.0f;
    clxent_ex x = CLXENT_EX_INIT;
    x.argmax = am[k];
    clxent_ctx *ctx = k ? kernel_ctx : direct_ctx;
    ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &x, &loss[k], grad[k]));
  }
  assert_memory_equal(&loss[0], &loss[1], sizeof(float));
  assert_memory_equal(grad[0], grad[1], sizeof grad[0]);
  assert_memory_equal(am[0], am[1], sizeof am[0]);
}

/* $CLXENT_DIRECT_MAX is parsed strictly, as every CLXENT_* value; a value is what the context says. */
static void test_environment(void **state) {
  (void)state;
  static const char *const bad[] = {"8abc", "-1", "16777217", "1e3", " 5"};
  for (size_t k = 0; k < COUNT(bad); ++k) {
    setenv("CLXENT_DIRECT_MAX", bad[k], 1);
    clxent_ctx *ctx = NULL;
    const clxent_status st = clxent_create(&ctx, NULL);
    clxent_destroy(ctx);
    if (st != CLXENT_ERR_INVALID_ARG) fail_msg("CLXENT_DIRECT_MAX=\"%s\": %s", bad[k], clxent_status_str(st));
    if (!strstr(clxent_last_error(NULL), "CLXENT_DIRECT_MAX")) fail_msg("the error does not name the variable");
  }
  setenv("CLXENT_DIRECT_MAX", "100", 1);
  clxent_ctx *ctx = NULL;
  ASSERT_OK(NULL, clxent_create(&ctx, NULL));
  unsetenv("CLXENT_DIRECT_MAX");
  clxent_info info = CLXENT_INFO_INIT, on = CLXENT_INFO_INIT;
  clxent_get_info(ctx, 0, &info);
  clxent_get_info(direct_ctx, 0, &on);
  assert_int_equal(info.direct_max, on.direct_max ? 100 : 0);
  clxent_destroy(ctx);
}

static clxent_ctx *create_with(const char *direct_max) {
  setenv("CLXENT_DIRECT_MAX", direct_max, 1);
  clxent_ctx *ctx = NULL;
  if (clxent_create(&ctx, NULL) != CLXENT_OK) {
    fprintf(stderr, "clxent_create: %s\n", clxent_last_error(NULL));
    clxent_destroy(ctx);
    return NULL;
  }
  return ctx;
}

int main(void) {
  if (!support_device_present()) return SUPPORT_SKIP;
  direct_ctx = create_with("16777216");
  kernel_ctx = create_with("0");
  unsetenv("CLXENT_DIRECT_MAX");
  if (!direct_ctx || !kernel_ctx) return 1;
  clxent_info info = CLXENT_INFO_INIT, off = CLXENT_INFO_INIT;
  clxent_get_info(direct_ctx, 0, &info);
  clxent_get_info(kernel_ctx, 0, &off);
  printf("direct path: %s (direct_max %zu; the other context %zu)\n", info.direct_max ? "on" : "off by construction",
         info.direct_max, off.direct_max);
  if (off.direct_max != 0) return 1;
  /* where it can be on it must be: a CPU device, row per item, the own math */
  if (info.is_cpu && info.variant == CLXENT_VARIANT_ITEM && info.own_math && info.direct_max == 0) return 1;
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_same_bits), cmocka_unit_test(test_reference),
                                     cmocka_unit_test(test_rejected_writes_nothing),
                                     cmocka_unit_test(test_declined_calls), cmocka_unit_test(test_environment)};
  const int failed = cmocka_run_group_tests(tests, NULL, NULL);
  clxent_destroy(direct_ctx);
  clxent_destroy(kernel_ctx);
  return failed;
}
