/* clxent_softmax_xent and clxent_softmax_xent_soft against the float64 reference (reference.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum grad_mode { GRAD_SEPARATE, GRAD_NONE, GRAD_IN_PLACE };
static const char *const grad_mode_names[] = {"separate gradient", "loss only", "in-place gradient"};
static const char *const reduction_names[] = {"MEAN", "SUM", "NONE"};

/* One call of the loss, hard labels or (with labels NULL) soft targets, compared element by element
 * with the reference; the inputs must come back untouched unless the gradient is written in place. */
static void check_call(clxent_ctx *ctx, size_t n, size_t c, const float *logits, const int32_t *labels,
                       const float *targets, clxent_opts o, enum grad_mode gm) {
  const size_t nc = n * c, nloss = o.reduction == CLXENT_NONE ? n : 1;
  float *work = xmalloc(nc * sizeof(float)), *grad = NULL, *loss = xmalloc(nloss * sizeof(float));
  double *ref_rows = xmalloc(n * sizeof(double)), *ref_grad = gm == GRAD_NONE ? NULL : xmalloc(nc * sizeof(double));
  memcpy(work, logits, nc * sizeof(float));
  if (gm == GRAD_SEPARATE) grad = xmalloc(nc * sizeof(float)), poison(grad, nc);
  if (gm == GRAD_IN_PLACE) grad = work;
  poison(loss, nloss);
  size_t counted = n;
  ref_out ref = {.rows = ref_rows, .grad = ref_grad};
  if (labels) {
    ref_softmax_xent(n, c, logits, labels, &o, &ref);
    ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, work, labels, &o, loss, grad));
    counted = 0;
    for (size_t i = 0; i < n; ++i) counted += labels[i] != o.ignore_index;
  } else {
    ref_softmax_xent_soft(n, c, logits, targets, &o, &ref);
    ASSERT_OK(ctx, clxent_softmax_xent_soft(ctx, n, c, work, targets, &o, loss, grad));
  }
  char what[160];
  const char *kind = labels ? "hard" : "soft";
  snprintf(what, sizeof what, "%s %zux%zu %s %s loss", kind, n, c, reduction_names[o.reduction], grad_mode_names[gm]);
  const double tol = 2e-5 * (1.0 + log((double)c));
  if (o.reduction == CLXENT_NONE) assert_close(loss, ref_rows, n, tol, tol, what);
  else assert_close(loss, &ref.loss, 1, tol, tol, what);
  if (ref_grad) {
    const double scale = (o.reduction == CLXENT_MEAN && counted) ? 1.0 / (double)counted : 1.0;
    snprintf(what, sizeof what, "%s %zux%zu %s %s grad", kind, n, c, reduction_names[o.reduction], grad_mode_names[gm]);
    assert_close(grad, ref_grad, nc, 2e-6 * scale, 1e-4, what);
  }
  if (gm != GRAD_IN_PLACE && memcmp(work, logits, nc * sizeof(float)))
    fail_msg("%s %zux%zu: logits were modified", kind, n, c);
  if (gm == GRAD_SEPARATE) free(grad);
  free(work), free(loss), free(ref_rows), free(ref_grad);
}

static void check_hard(clxent_ctx *ctx, size_t n, size_t c, const float *logits, const int32_t *labels,
                       clxent_opts o, enum grad_mode gm) {
  check_call(ctx, n, c, logits, labels, NULL, o, gm);
}

static void random_labels(int32_t *labels, size_t n, size_t c, int32_t ignore_index, double ignore_fraction) {
  for (size_t i = 0; i < n; ++i)
    labels[i] = rng_uniform(0, 1) < ignore_fraction ? ignore_index : (int32_t)rng_below((uint32_t)c);
}

/* Rows that the first pass walks in many chunks (CLXENT_ROW_CHUNK = 4096 values), shaped against
 * its online max: a max that grows in every chunk (more segments of cached exponentials than it
 * keeps: the cached prefix is rescaled), leading chunks masked with -inf (no finite value yet),
 * ±1e4 logits, with every option and gradient mode; and a row masked entirely, whose loss and
 * every gradient element are NaN (as softmax of all -inf is in float64). */
static void chunked_rows(clxent_ctx *ctx, size_t c) {
  enum { N = 4 };
  const size_t nc = N * c;
  float *z = xmalloc(nc * sizeof(float));
  int32_t labels[N] = {7, 3 * 4096 + 1, 5, c > 100000 ? 100000 : (int32_t)c - 2};
  rng_seed(77);
  for (size_t j = 0; j < c; ++j) {
    z[j] = (float)j * 1e-4f;                                               /* grows chunk after chunk */
    z[c + j] = j < 3 * 4096 ? -INFINITY : (float)rng_uniform(-5, 5);        /* masked leading chunks */
    z[2 * c + j] = (float)rng_uniform(-1e4, 1e4);                           /* ±1e4 */
    z[3 * c + j] = (float)(c - j) * 1e-4f + (float)rng_uniform(0, 1e-3); /* max in the first chunk */
  }
  float *cw = xmalloc(c * sizeof(float));
  for (size_t j = 0; j < c; ++j) cw[j] = (float)rng_uniform(0.5, 2);
  for (int opt = 0; opt < 5; ++opt)
    for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; ++gm) {
      clxent_opts o = clxent_opts_default();
      o.reduction = CLXENT_NONE;
      if (opt == 1) o.label_smoothing = 0.1f, o.class_weight = cw;
      if (opt == 2) o.softcap = 30.0f, o.z_loss = 1e-4f;
      if (opt == 3) o.class_weight = cw, o.reduction = CLXENT_MEAN;
      if (opt == 4) o.softcap = 30.0f, o.label_smoothing = 0.1f, o.class_weight = cw;
      /* smoothing spreads target mass onto the masked classes: an infinite loss, which the
       * reference gives too; the masked row is left out of that case */
      const int smoothing = opt == 1 || opt == 4;
      check_hard(ctx, smoothing ? 1 : N, c, z, labels, o, (enum grad_mode)gm);
      if (smoothing) check_hard(ctx, 2, c, z + 2 * c, labels + 2, o, (enum grad_mode)gm);
    }
  /* a row of -inf only */
  for (size_t j = 0; j < c; ++j) z[j] = -INFINITY;
  float loss, *grad = xmalloc(c * sizeof(float));
  clxent_opts o = clxent_opts_default();
  poison(grad, c);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1, c, z, labels, &o, &loss, grad));
  assert_true(isnan(loss));
  for (size_t j = 0; j < c; ++j)
    if (!isnan(grad[j])) fail_msg("all -inf row: grad[%zu] = %g, want NaN", j, (double)grad[j]);
  free(z), free(cw), free(grad);
}

/* Rows longer than the item's local scratch (the caches in the gradient row), and rows that fit
 * it on PoCL (7 chunks: with softcap the scratch holds u and e side by side; 17 chunks: the
 * whole scratch holds one row, with softcap its u alone) */
static void test_chunked_rows(void **state) {
  chunked_rows(test_ctx(state), 40 * 4096 + 5);
  chunked_rows(test_ctx(state), 17 * 4096 + 9);
  chunked_rows(test_ctx(state), 7 * 4096 + 3);
}

/* Softcap's chunks of small logits (every |z|/s below the tanh's series split) take the series
 * alone in the gradient pass: the same u, bit for bit, as the general tanh of the loss-only call,
 * which caches nothing; rows of several chunks, one of them with a chunk past the split, every
 * storage type's float32 path. And the gradient against the float64 reference. */
static void test_softcap_small_chunks(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 3, C = 3 * 4096 + 5 };
  float *z = xmalloc((size_t)N * C * sizeof(float)), *grad = xmalloc((size_t)N * C * sizeof(float));
  int32_t labels[N] = {11, 4096 + 3, C - 1};
  rng_seed(5);
  fill_uniform(z, (size_t)N * C, -5, 5);
  z[C + 2 * 4096 + 17] = 20.0f; /* row 1's last chunk: 20/30 > 0.55, the general tanh */
  float with_grad[N], alone[N], lse_g[N], lse_a[N];
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE, o.softcap = 30.0f;
  clxent_ex x = clxent_ex_default();
  x.lse = lse_g;
  poison(with_grad, N), poison(alone, N), poison(lse_g, N), poison(lse_a, N);
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, N, C, z, labels, &o, &x, with_grad, grad));
  x.lse = lse_a;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, N, C, z, labels, &o, &x, alone, NULL));
  assert_memory_equal(with_grad, alone, sizeof alone);
  assert_memory_equal(lse_g, lse_a, sizeof lse_a);
  check_hard(ctx, N, C, z, labels, o, GRAD_SEPARATE);
  check_hard(ctx, N, C, z, labels, o, GRAD_IN_PLACE);
  free(z), free(grad);
}

/* Every reduction × every gradient mode over shapes from 1 class to 250k+ classes and 1M rows,
 * including sizes that are no multiple of any vector width or work-group size. */
static void test_random_shapes(void **state) {
  static const size_t shapes[][2] = {{1, 1},   {1, 2},    {7, 2},    {5, 3},    {13, 17},  {64, 1000},
                                     {3, 1023}, {9, 4097}, {2, 32000}, {257, 129}, {3, 262147}, {1048579, 3},
                                     /* the group variant's tiled short rows (CLXENT_GROUP_TILE_MIN to CLXENT_GROUP_TILE) */
                                     {70, 8},   {1001, 10}, {301, 16}};
  clxent_ctx *ctx = test_ctx(state);
  rng_seed(42);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
    const size_t n = shapes[s][0], c = shapes[s][1];
    float *logits = xmalloc(n * c * sizeof(float));
    int32_t *labels = xmalloc(n * sizeof(int32_t));
    fill_uniform(logits, n * c, -12, 12);
    clxent_opts o = clxent_opts_default();
    random_labels(labels, n, c, o.ignore_index, n > 4 ? 0.1 : 0.0);
    for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r)
      for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; ++gm) {
        o.reduction = (clxent_reduction)r;
        check_hard(ctx, n, c, logits, labels, o, (enum grad_mode)gm);
      }
    free(logits), free(labels);
  }
}

/* The seed's worked example through the fused path: z = ln a, so softmax(z) = a. */
static void test_worked_values(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const float preds[6] = {0.1f, 0.6f, 0.3f, 0.1f, 0.3f, 0.6f};
  const int32_t labels[2] = {2, 2};
  float logits[6], loss[2], grad[6], mean, sum;
  for (int j = 0; j < 6; ++j) logits[j] = logf(preds[j]);
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 2, 3, logits, labels, &o, loss, grad));
  assert_float_equal(loss[0], 1.204, 5e-4); /* -ln 0.3 */
  assert_float_equal(loss[1], 0.511, 5e-4); /* -ln 0.6 */
  const float expected_grad[6] = {0.1f, 0.6f, 0.3f - 1, 0.1f, 0.3f, 0.6f - 1}; /* a - y */
  for (int j = 0; j < 6; ++j) assert_float_equal(grad[j], expected_grad[j], 1e-6);
  o.reduction = CLXENT_SUM;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 2, 3, logits, labels, &o, &sum, NULL));
  o.reduction = CLXENT_MEAN;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 2, 3, logits, labels, &o, &mean, NULL));
  assert_float_equal(sum, -log(0.3) - log(0.6), 1e-5);
  assert_float_equal(mean, (-log(0.3) - log(0.6)) / 2, 1e-5);
}

/* Logits of ±1e4 and -inf masks give right answers; a NaN reaches its row and the batch. */
static void test_extremes(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const float inf = INFINITY, nan = NAN;
  enum { N = 8, C = 5 };
  const float logits[N * C] = {
      1e4f, -1e4f, 0, 1, 2,          /* label 0: loss ≈ 0 */
      1e4f, -1e4f, 0, 1, 2,          /* label 1: loss = 2e4 */
      -inf, 2, -inf, 1, -inf,        /* masked classes: gradient 0 there */
      -inf, 2, -inf, 1, -inf,        /* label on a masked class: loss +inf */
      0.5f, nan, 0.25f, 1, 2,        /* NaN: loss and gradient NaN */
      -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, /* uniform at -1e4: loss ln 5 */
      0, inf, 1, 2, 3,               /* +inf: no softmax, loss NaN; in the group kernel's block of 4 */
      0, 1, 2, 3, inf};              /* and in its tail (a row of 5 is one item's there) */
  const int32_t labels[N] = {0, 1, 1, 0, 3, 2, 0, 0};
  for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; ++gm)
    for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r) {
      clxent_opts o = clxent_opts_default();
      o.reduction = (clxent_reduction)r;
      check_hard(ctx, N, C, logits, labels, o, (enum grad_mode)gm);
    }
  float loss[N], grad[N * C];
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, &o, loss, grad));
  assert_true(loss[0] >= 0 && loss[0] < 1e-3f);
  assert_float_equal(loss[1], 2e4, 1e-2);
  assert_true(isfinite(loss[2]));
  assert_true(grad[2 * C + 0] == 0 && grad[2 * C + 2] == 0 && grad[2 * C + 4] == 0);
  assert_true(isinf(loss[3]) && loss[3] > 0);
  assert_true(isnan(loss[4]));
  for (int j = 0; j < C; ++j) assert_true(isnan(grad[4 * C + j]));
  assert_float_equal(loss[5], log(5.0), 1e-6);
  assert_true(isnan(loss[6]) && isnan(loss[7]));
  float mean;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, NULL, &mean, NULL));
  assert_true(isnan(mean)); /* a NaN never vanishes in the batch loss */
}

/* ignore_index: loss 0 and gradient 0 for those rows, MEAN over the rest; all ignored → NaN, 0. */
static void test_ignore_index(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 40, C = 7 };
  float logits[N * C];
  int32_t labels[N];
  rng_seed(7);
  fill_uniform(logits, N * C, -3, 3);
  clxent_opts o = clxent_opts_default();
  o.ignore_index = 3; /* a valid class can be the ignored one, as in PyTorch */
  for (int i = 0; i < N; ++i) labels[i] = (int32_t)rng_below(C);
  for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r) {
    o.reduction = (clxent_reduction)r;
    check_hard(ctx, N, C, logits, labels, o, GRAD_SEPARATE);
  }
  for (int i = 0; i < N; ++i) labels[i] = 3;
  float mean, grad[N * C];
  o.reduction = CLXENT_MEAN;
  poison(grad, N * C);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, &o, &mean, grad));
  assert_true(isnan(mean));
  for (int k = 0; k < N * C; ++k) assert_true(grad[k] == 0.0f);
}

/* c = 1: softmax is 1, so every loss and gradient is 0. */
static void test_one_class(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const float logits[4] = {-5, 0, 3, 1e4f};
  const int32_t labels[4] = {0, 0, 0, 0};
  float loss, grad[4];
  poison(grad, 4);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 4, 1, logits, labels, NULL, &loss, grad));
  assert_true(loss == 0.0f);
  for (int i = 0; i < 4; ++i) assert_true(grad[i] == 0.0f);
}

static void test_soft_targets(void **state) {
  static const size_t shapes[][2] = {{1, 1}, {3, 2}, {11, 3}, {33, 100}, {4, 4099}, {2, 262147}, {70001, 5}};
  clxent_ctx *ctx = test_ctx(state);
  rng_seed(99);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
    const size_t n = shapes[s][0], c = shapes[s][1];
    float *logits = xmalloc(n * c * sizeof(float)), *targets = xmalloc(n * c * sizeof(float));
    fill_uniform(logits, n * c, -10, 10);
    fill_distribution_rows(targets, n, c, 0.3);
    for (size_t k = 0; k < n * c; ++k) /* -inf masks where the target has no mass */
      if (targets[k] == 0 && rng_uniform(0, 1) < 0.3) logits[k] = -INFINITY;
    for (size_t i = 0; i < n; ++i) { /* keep one finite logit with mass per row */
      logits[i * c] = 0.5f;
      if (targets[i * c] == 0) targets[i * c] = 0.0f;
    }
    clxent_opts o = clxent_opts_default();
    for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r)
      for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; ++gm) {
        o.reduction = (clxent_reduction)r;
        check_call(ctx, n, c, logits, NULL, targets, o, (enum grad_mode)gm);
      }
    free(logits), free(targets);
  }
}

/* One-hot soft targets are the hard-label loss. */
static void test_soft_one_hot_equals_hard(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 17, C = 33 };
  float logits[N * C], targets[N * C] = {0}, hard_grad[N * C], soft_grad[N * C], hard[N], soft[N];
  int32_t labels[N];
  rng_seed(5);
  fill_uniform(logits, N * C, -6, 6);
  for (int i = 0; i < N; ++i) labels[i] = (int32_t)rng_below(C), targets[i * C + labels[i]] = 1;
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, &o, hard, hard_grad));
  ASSERT_OK(ctx, clxent_softmax_xent_soft(ctx, N, C, logits, targets, &o, soft, soft_grad));
  for (int i = 0; i < N; ++i) assert_float_equal(hard[i], soft[i], 1e-5);
  for (int k = 0; k < N * C; ++k) assert_float_equal(hard_grad[k], soft_grad[k], 1e-6);
}

/* Repeated calls give the same bits: the batch reduction has a fixed order. */
static void test_deterministic(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const size_t n = 50003, c = 37;
  float *logits = xmalloc(n * c * sizeof(float)), *grad = xmalloc(n * c * sizeof(float));
  float *grad2 = xmalloc(n * c * sizeof(float));
  int32_t *labels = xmalloc(n * sizeof(int32_t));
  rng_seed(11);
  fill_uniform(logits, n * c, -8, 8);
  random_labels(labels, n, c, -100, 0.05);
  float first, again;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, logits, labels, NULL, &first, grad));
  for (int k = 0; k < 20; ++k) {
    ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, logits, labels, NULL, &again, grad2));
    assert_memory_equal(&first, &again, sizeof first);
    assert_memory_equal(grad, grad2, n * c * sizeof(float));
  }
  free(logits), free(grad), free(grad2), free(labels);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_worked_values),     cmocka_unit_test(test_random_shapes),
      cmocka_unit_test(test_chunked_rows),      cmocka_unit_test(test_softcap_small_chunks),
      cmocka_unit_test(test_extremes),          cmocka_unit_test(test_ignore_index),
      cmocka_unit_test(test_one_class),         cmocka_unit_test(test_soft_targets),
      cmocka_unit_test(test_soft_one_hot_equals_hard), cmocka_unit_test(test_deterministic),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
