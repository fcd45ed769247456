/* The experimental column-slice entries (clxent_softmax_slice_stats, clxent_softmax_slice_grad):
 * a batch's classes cut into uneven slices; each slice's statistics against float64 sums over
 * its columns; the slices' statistics combined (as clxent_mpi combines them) into each row's lse
 * and loss against the float64 reference of the whole rows (reference.h); each slice's gradient,
 * given the reference's lse and the batch's scales, against the reference gradient's columns —
 * every option, NONE with per-row upstream gradients, in place, small streaming blocks (many
 * blocks per call). Rejected calls write nothing. */
#define CLXENT_EXPERIMENTAL_API
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

typedef struct cfg {
  const char *name;
  clxent_reduction reduction;
  int weights, smoothing, zloss, softcap, upstream, ignore;
} cfg;

static const cfg cfgs[] = {
    {"plain", CLXENT_MEAN, 0, 0, 0, 0, 0, 0},
    {"weights+ignore", CLXENT_MEAN, 1, 0, 0, 0, 0, 1},
    {"smoothing+weights", CLXENT_MEAN, 1, 1, 0, 0, 0, 1},
    {"z-loss+softcap", CLXENT_MEAN, 0, 0, 1, 1, 0, 1},
    {"everything", CLXENT_MEAN, 1, 1, 1, 1, 0, 1},
    {"sum grad_output", CLXENT_SUM, 1, 1, 1, 0, 1, 1},
    {"none grad_output", CLXENT_NONE, 1, 1, 1, 1, 1, 1},
};


/* n rows of c classes in slices [cut[k], cut[k+1]); in_place: the gradient over a copy of the
 * slice's logits. */
static void check_case(clxent_ctx *ctx, size_t n, size_t c, const size_t *cut, size_t slices, const cfg *f, int in_place,
                       uint64_t seed) {
  float *z = xmalloc(n * c * sizeof(float)), *w = xmalloc(c * sizeof(float)), *up = xmalloc(n * sizeof(float));
  int32_t *y = xmalloc(n * sizeof(int32_t));
  rng_seed(seed);
  fill_uniform(z, n * c, -6, 6);
  for (size_t j = 0; j < c; ++j) w[j] = (float)rng_uniform(0.1, 2.0);
  if (f->weights && c > 3) w[1] = 0.0f; /* a zero weight: skipped by the smoothing term */
  for (size_t i = 0; i < n; ++i) {
    y[i] = f->ignore && rng_uniform(0, 1) < 0.2 ? -100 : (int32_t)rng_below((uint32_t)c);
    up[i] = (float)rng_uniform(0.5, 1.5);
  }
  clxent_opts o = support_opts(f->reduction, f->weights ? w : NULL, f->smoothing, f->zloss, f->softcap, f->upstream, up, 0);
  /* the reference: per-row losses and lse (NONE), the gradient of the call's reduction */
  double *rows = xmalloc(n * sizeof(double)), *lse = xmalloc(n * sizeof(double)), *grad = xmalloc(n * c * sizeof(double));
  ref_out r_rows = {.rows = rows, .lse = lse}, r_grad = {.grad = grad};
  clxent_opts o_none = o;
  o_none.reduction = CLXENT_NONE, o_none.grad_output = NULL;
  ref_softmax_xent(n, c, z, y, &o_none, &r_rows);
  ref_softmax_xent(n, c, z, y, &o, &r_grad);
  /* the batch's scales and W, as a caller of the grad entry computes them */
  float *lse_f = xmalloc(n * sizeof(float)), *wy = xmalloc(n * sizeof(float));
  const ref_slice_scales sc = ref_slice_batch(n, c, y, f->weights ? w : NULL, f->reduction, lse, lse_f, wy);
  const double W = sc.W;
  const float S = sc.S, Sz = sc.Sz;
  /* the combination of the slices, in double from the float statistics */
  double *m = xmalloc(n * sizeof(double)), *s = xmalloc(n * sizeof(double)), *d = xmalloc(n * sizeof(double));
  double *uy = xmalloc(n * sizeof(double));
  for (size_t i = 0; i < n; ++i) m[i] = -INFINITY, s[i] = d[i] = uy[i] = 0.0;
  float *stats[8];
  double wsl[8];
  for (size_t k = 0; k < slices; ++k) {
    const size_t off = cut[k], width = cut[k + 1] - cut[k];
    float *zl = xmalloc(n * width * sizeof(float)), *g = xmalloc(n * width * sizeof(float));
    stats[k] = xmalloc(n * CLXENT_SLICE_VALUES * sizeof(float));
    for (size_t i = 0; i < n; ++i) memcpy(zl + i * width, z + i * c + off, width * sizeof(float));
    clxent_opts ol = o;
    if (f->weights) ol.class_weight = w + off;
    poison(stats[k], n * CLXENT_SLICE_VALUES);
    ASSERT_OK(ctx, clxent_softmax_slice_stats(ctx, n, width, off, c, CLXENT_FLOAT32, zl, y, &ol, stats[k]));
    wsl[k] = 0.0;
    for (size_t j = off; j < off + width; ++j) wsl[k] += f->weights ? w[j] : 1.0;
    /* the slice's own statistics, in double */
    for (size_t i = 0; i < n; ++i) {
      const float *st = stats[k] + i * CLXENT_SLICE_VALUES;
      double want[5];
      ref_slice_row(z + i * c, off, width, y[i], f->weights ? w : NULL, o.softcap, f->smoothing, want);
      const int v = ref_slice_row_mismatch(st, want, width);
      if (v >= 0)
        fail_msg("%s n=%zu c=%zu slice %zu row %zu value %d: %.9g vs %.9g", f->name, n, c, k, i, v, (double)st[v],
                 want[v]);
      const double mk = st[0];
      if (mk > m[i]) {
        if (m[i] != -INFINITY) s[i] *= exp(m[i] - mk);
        double wprev = 0.0;
        for (size_t q = 0; q < k; ++q) wprev += wsl[q];
        if (m[i] != -INFINITY) d[i] += wprev * (mk - m[i]);
        m[i] = mk;
      }
      s[i] += st[1] * exp(mk - m[i]);
      d[i] += st[2] + wsl[k] * (m[i] - mk);
      uy[i] += st[3];
    }
    /* the gradient of the slice */
    float *gout = in_place ? zl : g;
    if (!in_place) poison(g, n * width);
    ASSERT_OK(ctx, clxent_softmax_slice_grad(ctx, n, width, off, c, CLXENT_FLOAT32, zl, y, &ol, lse_f, wy, (float)W, S, Sz, gout));
    double *gref = xmalloc(n * width * sizeof(double));
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < width; ++j) gref[i * width + j] = grad[i * c + off + j];
    char what[128];
    snprintf(what, sizeof what, "%s slice %zu gradient%s", f->name, k, in_place ? " (in place)" : "");
    assert_close(gout, gref, n * width, 2e-5 * r_grad.gscale, 1e-4, what);
    free(zl), free(g), free(gref);
  }
  /* each row's lse and loss from the combined statistics */
  const double eps = o.label_smoothing;
  for (size_t i = 0; i < n; ++i) {
    const double lse_i = m[i] + log(s[i]);
    if (!(fabs(lse_i - lse[i]) <= 1e-5 * (1.0 + fabs(lse[i])))) fail_msg("%s row %zu: lse %.9g vs %.9g", f->name, i, lse_i, lse[i]);
    if (y[i] == -100) continue;
    double l = (1.0 - eps) * wy[i] * (lse_i - uy[i]) + eps / (double)c * (d[i] + W * log(s[i]));
    l += o.z_loss * lse_i * lse_i;
    if (!(fabs(l - rows[i]) <= 2e-5 * (1.0 + fabs(rows[i])))) fail_msg("%s row %zu: loss %.9g vs %.9g", f->name, i, l, rows[i]);
  }
  for (size_t k = 0; k < slices; ++k) free(stats[k]);
  free(z), free(w), free(up), free(y), free(rows), free(lse), free(grad), free(lse_f), free(wy), free(m), free(s), free(d),
      free(uy);
}

static void test_slices(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t cuts1[] = {0, 3, 4, 10}, cuts2[] = {0, 17, 50, 133}, cuts3[] = {0, 1000, 2100};
  for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; ++k) {
    check_case(ctx, 37, 10, cuts1, 3, &cfgs[k], 0, 11 + k);
    check_case(ctx, 70, 133, cuts2, 3, &cfgs[k], k % 2, 21 + k);
    check_case(ctx, 5, 2100, cuts3, 2, &cfgs[k], 1 - k % 2, 31 + k);
  }
}

/* Small streaming blocks: a call of many blocks (every array offset per block). */
static void test_blocks(void **state) {
  (void)state;
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.block_bytes = 4096;
  clxent_ctx *ctx = support_create(NULL, &t, NULL);
  static const size_t cuts[] = {0, 100, 300};
  check_case(ctx, 700, 300, cuts, 2, &cfgs[4], 0, 41);
  check_case(ctx, 700, 300, cuts, 2, &cfgs[6], 1, 42);
  clxent_destroy(ctx);
}

/* 16-bit storage: the statistics have the bits of the float32 entry on the decoded logits (the
 * same float32 math), and the gradient is the float32 entry's rounded once to the 16-bit type
 * (within half an ulp of it, one ulp allowed), separate and in place. */
static void test_16bit(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const size_t n = 50, c = 200, cut[] = {0, 70, 200};
  for (int t = CLXENT_FLOAT16; t <= CLXENT_BFLOAT16; ++t)
    for (size_t f = 4; f <= 6; f += 2) {
      const clxent_dtype dt = (clxent_dtype)t;
      const double ulp = dt == CLXENT_FLOAT16 ? 0x1p-10 : 0x1p-7;
      const cfg *cf = &cfgs[f];
      rng_seed(70 + (uint64_t)t * 3 + f);
      float *w = xmalloc(c * sizeof(float)), *up = xmalloc(n * sizeof(float)), *lse = xmalloc(n * sizeof(float));
      int32_t *y = xmalloc(n * sizeof(int32_t));
      for (size_t j = 0; j < c; ++j) w[j] = (float)rng_uniform(0.1, 2.0);
      for (size_t i = 0; i < n; ++i) {
        y[i] = rng_uniform(0, 1) < 0.2 ? -100 : (int32_t)rng_below((uint32_t)c);
        up[i] = (float)rng_uniform(0.5, 1.5), lse[i] = (float)rng_uniform(2, 8);
      }
      for (size_t k = 0; k < 2; ++k) {
        const size_t off = cut[k], width = cut[k + 1] - cut[k], cells = n * width;
        uint16_t *z16 = xmalloc(cells * 2), *g16 = xmalloc(cells * 2);
        float *z = xmalloc(cells * sizeof(float)), *g = xmalloc(cells * sizeof(float));
        float *st16 = xmalloc(n * CLXENT_SLICE_VALUES * sizeof(float)), *st = xmalloc(n * CLXENT_SLICE_VALUES * sizeof(float));
        for (size_t e = 0; e < cells; ++e) ref_encode(z16, e, (float)rng_uniform(-6, 6), dt), z[e] = ref_decode(z16, e, dt);
        clxent_opts o = CLXENT_OPTS_INIT;
        o.reduction = cf->reduction, o.class_weight = w + off, o.label_smoothing = 0.1f, o.z_loss = 1e-3f;
        o.softcap = cf->softcap ? 5.0f : 0.0f;
        static const float g_one = 0.75f;
        o.grad_output = cf->reduction == CLXENT_NONE ? up : &g_one;
        ASSERT_OK(ctx, clxent_softmax_slice_stats(ctx, n, width, off, c, dt, z16, y, &o, st16));
        ASSERT_OK(ctx, clxent_softmax_slice_stats(ctx, n, width, off, c, CLXENT_FLOAT32, z, y, &o, st));
        assert_memory_equal(st16, st, n * CLXENT_SLICE_VALUES * sizeof(float));
        ASSERT_OK(ctx, clxent_softmax_slice_grad(ctx, n, width, off, c, CLXENT_FLOAT32, z, y, &o, lse, NULL, 300.0f,
                                                 1e-3f, 2e-2f, g));
        for (int in_place = 0; in_place < 2; ++in_place) {
          if (in_place) memcpy(g16, z16, cells * 2);
          ASSERT_OK(ctx, clxent_softmax_slice_grad(ctx, n, width, off, c, dt, in_place ? g16 : z16, y, &o, lse, NULL,
                                                   300.0f, 1e-3f, 2e-2f, g16));
          for (size_t e = 0; e < cells; ++e) {
            const float a = ref_decode(g16, e, dt);
            if (!(fabsf(a - g[e]) <= ulp * fabsf(g[e]) + 1e-7f))
              fail_msg("dtype %d %s slice %zu%s: gradient[%zu] %.9g vs float32 %.9g", t, cf->name, k,
                       in_place ? " (in place)" : "", e, (double)a, (double)g[e]);
          }
        }
        free(z16), free(g16), free(z), free(g), free(st16), free(st);
      }
      free(w), free(up), free(lse), free(y);
    }
}

/* Rejected calls write nothing. */
static void test_rejects(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  float z[12], st[4 * CLXENT_SLICE_VALUES], g[12], lse[4] = {1, 1, 1, 1};
  int32_t y[4] = {0, 5, 9, 2};
  fill_uniform(z, 12, -1, 1);
  poison(st, 4 * CLXENT_SLICE_VALUES), poison(g, 12);
  assert_int_equal(clxent_softmax_slice_stats(ctx, 4, 3, 4, 10, CLXENT_FLOAT32, z, y, NULL, st), CLXENT_OK);
  poison(st, 4 * CLXENT_SLICE_VALUES);
  y[2] = 10; /* outside c_total */
  assert_int_equal(clxent_softmax_slice_stats(ctx, 4, 3, 4, 10, CLXENT_FLOAT32, z, y, NULL, st), CLXENT_ERR_LABEL_RANGE);
  assert_int_equal(clxent_softmax_slice_grad(ctx, 4, 3, 4, 10, CLXENT_FLOAT32, z, y, NULL, lse, NULL, 10, 1, 1, g), CLXENT_ERR_LABEL_RANGE);
  y[2] = 9;
  assert_int_equal(clxent_softmax_slice_stats(ctx, 4, 3, 8, 10, CLXENT_FLOAT32, z, y, NULL, st), CLXENT_ERR_INVALID_ARG); /* past c_total */
  assert_int_equal(clxent_softmax_slice_stats(ctx, 4, 3, 4, 10, CLXENT_FLOAT32, z, y, NULL, NULL), CLXENT_ERR_INVALID_ARG);
  assert_int_equal(clxent_softmax_slice_grad(ctx, 4, 3, 4, 10, CLXENT_FLOAT32, z, y, NULL, NULL, NULL, 10, 1, 1, g), CLXENT_ERR_INVALID_ARG);
  assert_int_equal(clxent_softmax_slice_grad(ctx, 4, 3, 4, 10, CLXENT_FLOAT32, z, y, NULL, lse, NULL, NAN, 1, 1, g), CLXENT_ERR_INVALID_ARG);
  clxent_opts o = CLXENT_OPTS_INIT;
  o.label_smoothing = 1.0f;
  assert_int_equal(clxent_softmax_slice_stats(ctx, 4, 3, 4, 10, CLXENT_FLOAT32, z, y, &o, st), CLXENT_ERR_INVALID_ARG);
  assert_int_equal(clxent_softmax_slice_grad(ctx, 4, 3, 4, 10, CLXENT_FLOAT32, z, y, NULL, lse, NULL, 10, 1, 1, z + 1),
                   CLXENT_ERR_INVALID_ARG); /* grad overlapping the logits, not in place */
  assert_true(is_poison(st, 4 * CLXENT_SLICE_VALUES));
  assert_true(is_poison(g, 12));
}

int main(void) {
  if (!support_device_present()) return SUPPORT_SKIP;
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_slices), cmocka_unit_test(test_blocks),
                                     cmocka_unit_test(test_16bit), cmocka_unit_test(test_rejects)};
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
