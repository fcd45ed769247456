/* The experimental clxent_softmax_xent_part: a batch cut into parts (one of them empty), each
 * part computed with the whole batch's Σ w_{y_i} and counted rows. The parts' gradients have the
 * bits of one clxent_softmax_xent_ex call on the whole batch, for every option and storage type
 * (class weights + z-loss under MEAN included: each term keeps its own divisor); their row terms
 * do not depend on the cut, sum to the whole call's loss times the divisor, and under NONE are
 * its losses; the empty part reports the same divisor. Rejected calls write nothing. */
#define CLXENT_EXPERIMENTAL_API
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

typedef struct cfg {
  const char *name;
  clxent_reduction reduction;
  int weights, smoothing, zloss, softcap, upstream, ignore, denominator;
} cfg;

static const cfg cfgs[] = {
    {"plain", CLXENT_MEAN, 0, 0, 0, 0, 0, 0, 0},
    {"weights+z-loss", CLXENT_MEAN, 1, 0, 1, 0, 0, 1, 0},
    {"everything", CLXENT_MEAN, 1, 1, 1, 1, 1, 1, 0},
    {"mean_denominator", CLXENT_MEAN, 1, 1, 1, 0, 0, 1, 1},
    {"tiny weights (rescaled)", CLXENT_MEAN, 2, 0, 1, 0, 0, 1, 0},
    {"zero weights (0/0)", CLXENT_MEAN, 3, 0, 1, 0, 0, 1, 0},
    {"sum", CLXENT_SUM, 1, 1, 1, 1, 1, 1, 0},
    {"none", CLXENT_NONE, 1, 1, 1, 1, 1, 1, 0},
};

static size_t elem(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 4 : 2; }

/* n rows cut at cut[0..parts], cut[0] = 0, cut[parts] = n (an empty part allowed). */
static void check_case(clxent_ctx *ctx, size_t n, size_t c, const size_t *cut, size_t parts, const cfg *f,
                       clxent_dtype t, uint64_t seed) {
  const size_t es = elem(t);
  unsigned char *z = xmalloc(n * c * es), *g_ref = xmalloc(n * c * es), *g = xmalloc(n * c * es);
  float *w = xmalloc(c * sizeof(float)), *up = xmalloc(n * sizeof(float)), *loss_ref = xmalloc(n * sizeof(float));
  float *rows = xmalloc(n * sizeof(float)), *whole = xmalloc(n * sizeof(float));
  int32_t *y = xmalloc(n * sizeof(int32_t));
  rng_seed(seed);
  for (size_t k = 0; k < n * c; ++k) ref_encode(z, k, (float)rng_uniform(-6, 6), t);
  for (size_t j = 0; j < c; ++j)
    w[j] = f->weights == 2 ? (float)rng_uniform(0.1, 2.0) * 1e-36f : f->weights == 3 ? 0.0f : (float)rng_uniform(0.1, 2.0);
  for (size_t i = 0; i < n; ++i) {
    y[i] = f->ignore && rng_uniform(0, 1) < 0.2 ? -100 : (int32_t)rng_below((uint32_t)c);
    up[i] = (float)rng_uniform(0.5, 1.5);
  }
  const clxent_opts o = support_opts(f->reduction, f->weights ? w : NULL, f->smoothing, f->zloss, f->softcap, f->upstream,
                                     up, f->denominator);
  clxent_ex x = CLXENT_EX_INIT;
  x.dtype = t;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, y, &o, &x, loss_ref, g_ref));
  /* the batch's statistics, as the whole call sums them: in row order, in double */
  uint64_t counted = 0;
  double weight = 0.0;
  for (size_t i = 0; i < n; ++i)
    if (y[i] != -100) ++counted, weight += f->weights ? w[y[i]] : 1.0;
  if (f->weights == 2 && f->reduction == CLXENT_MEAN) assert_true(weight > 0 && weight < 0x1p-64); /* rescaled */
  float divisor = -1.0f, whole_divisor = -2.0f;
  ASSERT_OK(ctx, clxent_softmax_xent_part(ctx, n, c, z, y, &o, &x, weight, counted, whole, NULL, &whole_divisor));
  poison((float *)g, n * c * es / sizeof(float)), poison(rows, n);
  for (size_t k = 0; k < parts; ++k) {
    const size_t a = cut[k], m = cut[k + 1] - a;
    clxent_opts po = o;
    if (f->upstream && f->reduction == CLXENT_NONE) po.grad_output = up + a;
    float part_divisor = -3.0f;
    ASSERT_OK(ctx, clxent_softmax_xent_part(ctx, m, c, m ? z + a * c * es : NULL, m ? y + a : NULL, &po, &x, weight,
                                            counted, m ? rows + a : NULL, m ? g + a * c * es : NULL, &part_divisor));
    if (k && memcmp(&part_divisor, &divisor, sizeof divisor))
      fail_msg("%s: part %zu's divisor %.9g differs from part 0's %.9g", f->name, k, (double)part_divisor, (double)divisor);
    divisor = part_divisor;
  }
  if (memcmp(&divisor, &whole_divisor, sizeof divisor))
    fail_msg("%s: divisor %.9g, whole batch %.9g", f->name, (double)divisor, (double)whole_divisor);
  for (size_t k = 0; k < n * c; ++k)
    if (memcmp(g + k * es, g_ref + k * es, es))
      fail_msg("%s dtype %d: gradient[%zu] %.9g differs from one call's %.9g", f->name, (int)t, k,
               (double)ref_decode(g, k, t), (double)ref_decode(g_ref, k, t));
  if (memcmp(rows, whole, n * sizeof(float))) fail_msg("%s dtype %d: the row terms depend on the cut", f->name, (int)t);
  if (f->reduction == CLXENT_NONE) {
    if (memcmp(rows, loss_ref, n * sizeof(float))) fail_msg("%s dtype %d: the row terms are not NONE's losses", f->name, (int)t);
  } else {
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += rows[i];
    const double j = sum / divisor;
    if (!(isnan(j) ? isnan(loss_ref[0]) : fabs(j - loss_ref[0]) <= 1e-5 * fabs(loss_ref[0]) + 1e-6))
      fail_msg("%s dtype %d: Σ terms / divisor = %.9g, one call's loss %.9g", f->name, (int)t, j, (double)loss_ref[0]);
  }
  free(z), free(g_ref), free(g), free(w), free(up), free(loss_ref), free(rows), free(whole), free(y);
}

static void test_parts(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t cut1[] = {0, 0, 40, 97}, cut2[] = {0, 1, 1500, 1500, 3001};
  for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; ++k)
    for (int t = CLXENT_FLOAT32; t <= CLXENT_BFLOAT16; ++t) {
      check_case(ctx, 97, 30, cut1, 3, &cfgs[k], (clxent_dtype)t, 11 + k);
      check_case(ctx, 3001, 5, cut2, 4, &cfgs[k], (clxent_dtype)t, 21 + k);
    }
}

/* Rejected calls write nothing; an empty part needs no arrays. */
static void test_rejects(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  float z[12], g[12], rows[4], divisor = 42.0f, w[3] = {1, 2, 3};
  int32_t y[4] = {0, 1, 2, -100};
  fill_uniform(z, 12, -1, 1);
  poison(g, 12), poison(rows, 4);
  clxent_opts o = CLXENT_OPTS_INIT;
  o.class_weight = w;
  assert_int_equal(clxent_softmax_xent_part(ctx, 4, 3, z, y, &o, NULL, NAN, 3, rows, g, &divisor), CLXENT_ERR_INVALID_ARG);
  assert_int_equal(clxent_softmax_xent_part(ctx, 4, 3, z, y, &o, NULL, -1.0, 3, rows, g, &divisor), CLXENT_ERR_INVALID_ARG);
  assert_int_equal(clxent_softmax_xent_part(ctx, 4, 3, z, y, &o, NULL, 6.0, 2, rows, g, &divisor), CLXENT_ERR_INVALID_ARG);
  assert_int_equal(clxent_softmax_xent_part(ctx, 0, 3, NULL, NULL, &o, NULL, INFINITY, 3, NULL, NULL, &divisor),
                   CLXENT_ERR_INVALID_ARG);
  assert_int_equal(clxent_softmax_xent_part(ctx, 0, 0, NULL, NULL, &o, NULL, 6.0, 3, NULL, NULL, &divisor),
                   CLXENT_ERR_INVALID_ARG);
  y[1] = 3; /* outside c */
  assert_int_equal(clxent_softmax_xent_part(ctx, 4, 3, z, y, &o, NULL, 6.0, 3, rows, g, &divisor), CLXENT_ERR_LABEL_RANGE);
  y[1] = 1;
  assert_int_equal(clxent_softmax_xent_part(ctx, 4, 3, z, y, &o, NULL, 6.0, 3, rows, z + 1, &divisor),
                   CLXENT_ERR_INVALID_ARG); /* grad overlapping the logits, not in place */
  assert_true(is_poison(g, 12) && is_poison(rows, 4));
  assert_true(divisor == 42.0f);
  /* the batch's statistics, not the part's: a divisor of 10 where the part's own is 6 */
  ASSERT_OK(ctx, clxent_softmax_xent_part(ctx, 4, 3, z, y, &o, NULL, 10.0, 9, rows, g, &divisor));
  assert_true(divisor == 10.0f);
  ASSERT_OK(ctx, clxent_softmax_xent_part(ctx, 0, 3, NULL, NULL, &o, NULL, 12.0, 9, NULL, NULL, &divisor));
  assert_true(divisor == 12.0f);
  o.reduction = CLXENT_SUM; /* the statistics unused: even NaN passes */
  ASSERT_OK(ctx, clxent_softmax_xent_part(ctx, 4, 3, z, y, &o, NULL, NAN, 0, rows, g, &divisor));
  assert_true(divisor == 1.0f);
}

int main(void) {
  if (!support_device_present()) return SUPPORT_SKIP;
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_parts), cmocka_unit_test(test_rejects)};
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
