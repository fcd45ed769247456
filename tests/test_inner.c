/* clxent_ex.inner: the softmax losses on PyTorch's (N, C, d1, ...) layout, [n][c][S] with
 * S = d1·…, against the float64 reference of the transposed batch: rows r = i·S + s of
 * [n·S][c] (ref_softmax_xent, ref_softmax_xent_soft), the gradient transposed back. Every option,
 * storage type, reduction and gradient mode; lse and bias_grad; the tails of S past the vector
 * width; ignored rows, -inf masks, ±1e4 and NaN; streaming blocks of whole samples; what is
 * rejected. */
#define CLXENT_EXPERIMENTAL_API /* clxent_tuning: small streaming blocks */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum grad_mode { GRAD_SEPARATE, GRAD_NONE, GRAD_IN_PLACE };
enum special { PLAIN, MASKS, BIG, WITH_NAN, ALL_IGNORED };
static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const special_names[] = {"plain", "-inf masks", "+-1e4", "NaN", "all ignored"};

typedef struct inner_case {
  int soft;
  size_t n, c, S;
  clxent_opts o;
  clxent_dtype dtype;
  enum grad_mode gm;
  int want_lse, want_bias;
  enum special special;
} inner_case;

/* index of class j of row (i, s) in [n][c][S], and of the same value in the transposed [n·S][c] */
static size_t at(size_t c, size_t S, size_t i, size_t j, size_t s) { return (i * c + j) * S + s; }
static size_t at_t(size_t c, size_t S, size_t i, size_t j, size_t s) { return (i * S + s) * c + j; }

static double storage_rtol(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 1e-4 : t == CLXENT_FLOAT16 ? 1.5e-3 : 8e-3; }

/* Runs the case on random inputs and checks every output against the reference. */
static void check_case(clxent_ctx *ctx, const inner_case *k, uint64_t seed) {
  const size_t n = k->n, c = k->c, S = k->S, rows = n * S, nc = rows * c, eb = ref_dtype_bytes(k->dtype);
  rng_seed(seed);
  unsigned char *in = xmalloc(nc * eb), *aux = k->soft ? xmalloc(nc * eb) : NULL;
  float *zt = xmalloc(nc * sizeof(float)), *tt = k->soft ? xmalloc(nc * sizeof(float)) : NULL; /* transposed */
  int32_t *labels = k->soft ? NULL : xmalloc(rows * sizeof(int32_t));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < c; ++j)
      for (size_t s = 0; s < S; ++s) {
        double v = k->special == BIG ? rng_uniform(-1e4, 1e4) : rng_uniform(-12, 12);
        if (k->special == MASKS && c > 1 && rng_uniform(0, 1) < 0.3) v = -INFINITY;
        const size_t e = at(c, S, i, j, s);
        ref_encode(in, e, (float)v, k->dtype);
        zt[at_t(c, S, i, j, s)] = ref_decode(in, e, k->dtype);
      }
  if (k->special == WITH_NAN) { /* one NaN in row (0, S-1), at its last class */
    ref_encode(in, at(c, S, 0, c - 1, S - 1), NAN, k->dtype);
    zt[at_t(c, S, 0, c - 1, S - 1)] = NAN;
  }
  if (k->soft) {
    float *p = xmalloc(nc * sizeof(float));
    fill_distribution_rows(p, rows, c, 0.3); /* [n·S][c] */
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < c; ++j)
        for (size_t s = 0; s < S; ++s) {
          const size_t e = at(c, S, i, j, s), et = at_t(c, S, i, j, s);
          ref_encode(aux, e, p[et], k->dtype), tt[et] = ref_decode(aux, e, k->dtype);
        }
    free(p);
  } else {
    for (size_t r = 0; r < rows; ++r) {
      labels[r] = (int32_t)rng_below((uint32_t)c);
      if (k->special == ALL_IGNORED || (rows > 3 && rng_uniform(0, 1) < 0.15)) labels[r] = k->o.ignore_index;
    }
    if (k->special == MASKS) /* a label's own class masked too (-inf): an infinite loss, as in float64 */
      for (size_t r = 0; r < rows; ++r)
        if (labels[r] != k->o.ignore_index && zt[r * c + (size_t)labels[r]] == -INFINITY && rng_uniform(0, 1) < 0.7) {
          const size_t i = r / S, s = r % S, y = (size_t)labels[r];
          ref_encode(in, at(c, S, i, y, s), 1.5f, k->dtype);
          zt[r * c + y] = ref_decode(in, at(c, S, i, y, s), k->dtype);
        }
  }

  /* outputs, poisoned */
  const size_t loss_count = k->o.reduction == CLXENT_NONE ? rows : 1;
  float *loss = xmalloc(loss_count * sizeof(float)), *lse = k->want_lse ? xmalloc(rows * sizeof(float)) : NULL;
  float *bias = k->want_bias ? xmalloc(c * sizeof(float)) : NULL;
  unsigned char *grad = k->gm == GRAD_SEPARATE ? xmalloc(nc * eb) : k->gm == GRAD_IN_PLACE ? in : NULL;
  poison(loss, loss_count);
  if (lse) poison(lse, rows);
  if (bias) poison(bias, c);
  if (k->gm == GRAD_SEPARATE) memset(grad, 0xFF, nc * eb); /* NaN in every type */

  clxent_ex ex = clxent_ex_default();
  ex.dtype = k->dtype, ex.lse = lse, ex.bias_grad = bias, ex.inner = S;
  const clxent_status st = k->soft ? clxent_softmax_xent_soft_ex(ctx, n, c, in, aux, &k->o, &ex, loss, grad)
                                   : clxent_softmax_xent_ex(ctx, n, c, in, labels, &k->o, &ex, loss, grad);
  char what[240];
  snprintf(what, sizeof what, "%s n=%zu c=%zu S=%zu %s red=%d eps=%g z=%g cap=%g w=%s grad=%d %s",
           k->soft ? "soft" : "hard", n, c, S, dtype_names[k->dtype], (int)k->o.reduction,
           (double)k->o.label_smoothing, (double)k->o.z_loss, (double)k->o.softcap, k->o.class_weight ? "yes" : "no",
           (int)k->gm, special_names[k->special]);
  if (st != CLXENT_OK) fail_msg("%s: %s: %s", what, clxent_status_str(st), clxent_last_error(ctx));

  ref_out r = {.rows = xmalloc(rows * sizeof(double)), .grad = k->gm == GRAD_NONE ? NULL : xmalloc(nc * sizeof(double)),
               .lse = lse ? xmalloc(rows * sizeof(double)) : NULL, .bias = bias ? xmalloc(c * sizeof(double)) : NULL};
  if (k->soft) ref_softmax_xent_soft(rows, c, zt, tt, &k->o, &r);
  else ref_softmax_xent(rows, c, zt, labels, &k->o, &r);
  if (r.grad && k->dtype == CLXENT_FLOAT16)
    for (size_t e = 0; e < nc; ++e)
      if (fabs(r.grad[e]) >= 65520.0) r.grad[e] = copysign(INFINITY, r.grad[e]);

  char label[300];
  const double tol = 3e-5 * (1.0 + log((double)c)) * (1.0 + 20.0 * k->o.z_loss) * (k->special == BIG ? 10.0 : 1.0);
  snprintf(label, sizeof label, "%s: loss", what);
  if (k->o.reduction == CLXENT_NONE) assert_close(loss, r.rows, rows, tol, tol, label);
  else assert_close(loss, &r.loss, 1, tol, tol, label);
  if (lse) {
    snprintf(label, sizeof label, "%s: lse", what);
    assert_close(lse, r.lse, rows, 1e-5, 1e-5, label);
  }
  if (r.grad) {
    const double gmax = r.gscale * (1.0 + log((double)c));
    float *g = xmalloc(nc * sizeof(float)); /* the library's gradient, transposed to [n·S][c] */
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < c; ++j)
        for (size_t s = 0; s < S; ++s) g[at_t(c, S, i, j, s)] = ref_decode(grad, at(c, S, i, j, s), k->dtype);
    snprintf(label, sizeof label, "%s: grad", what);
    assert_close(g, r.grad, nc, 2e-6 * gmax + (k->dtype == CLXENT_FLOAT16 ? 6e-8 : 0), storage_rtol(k->dtype), label);
    if (bias) { /* Σ over the n·S rows of the stored gradient, which the library sums in float32 */
      double *ref_bias = xmalloc(c * sizeof(double));
      for (size_t j = 0; j < c; ++j) {
        double s = 0, sum_abs = 0;
        for (size_t q = 0; q < rows; ++q) s += g[q * c + j], sum_abs += fabs(r.grad[q * c + j]);
        ref_bias[j] = s;
        if (k->dtype == CLXENT_FLOAT32 && k->special != WITH_NAN) { /* and the reference's own */
          snprintf(label, sizeof label, "%s: bias_grad vs reference, column %zu", what, j);
          assert_close(bias + j, r.bias + j, 1, 3e-6 * (double)rows * gmax + 1e-4 * sum_abs, 1e-4, label);
        }
      }
      snprintf(label, sizeof label, "%s: bias_grad", what);
      assert_close(bias, ref_bias, c, 1e-6 * (double)rows * gmax, 1e-4, label);
      free(ref_bias);
    }
    free(g);
  }
  if (k->gm != GRAD_IN_PLACE)
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < c; ++j)
        for (size_t s = 0; s < S; ++s) {
          const float x = zt[at_t(c, S, i, j, s)];
          if (ref_decode(in, at(c, S, i, j, s), k->dtype) != x && !isnan(x))
            fail_msg("%s: logits (%zu, %zu, %zu) modified", what, i, j, s);
        }
  free(in), free(aux), free(zt), free(tt), free(labels), free(loss), free(lse), free(bias);
  if (k->gm == GRAD_SEPARATE) free(grad);
  free(r.rows), free(r.grad), free(r.lse), free(r.bias);
}

static float *random_weights(size_t c) {
  float *w = xmalloc(c * sizeof(float));
  for (size_t j = 0; j < c; ++j) w[j] = (float)rng_uniform(0.2, 3.0);
  if (c > 2) w[1] = 0.0f;
  return w;
}

static const size_t inners[] = {2, 3, 7, 8, 9, 16, 17, 57, 1000}; /* 57: a last work-item of 4 vectors, the 4th partial */
static const size_t classes[] = {1, 2, 5, 10, 21, 150, 1000};
static const size_t batches[] = {1, 2, 3, 65};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Every S against every c (n in turn, smaller where n·S·c would pass 4M values): hard labels with
 * lse and bias_grad, and dense targets, each MEAN with a separate gradient. */
static void test_shapes(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  size_t turn = 0;
  for (size_t a = 0; a < COUNT(inners); ++a)
    for (size_t b = 0; b < COUNT(classes); ++b, ++turn) {
      inner_case k = {.S = inners[a], .c = classes[b], .n = batches[turn % COUNT(batches)], .o = clxent_opts_default(),
                      .want_lse = 1, .want_bias = 1};
      while (k.n > 1 && k.n * k.S * k.c > ((size_t)4 << 20)) k.n = k.n == 65 ? 3 : k.n - 1;
      check_case(ctx, &k, 100 + turn);
      k.soft = 1;
      if (k.n * k.S * k.c <= ((size_t)1 << 20)) check_case(ctx, &k, 200 + turn);
    }
}

/* Each option alone, then all together, on hard labels and dense targets, every reduction and
 * gradient mode, float32. Shapes: a tail of S in every vector, S a multiple of 8, c = 1 and 21. */
static void test_options(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t shapes[][3] = {{3, 21, 17}, {2, 5, 8}, {65, 10, 3}, {2, 1, 9}, {1, 150, 16}};
  uint64_t seed = 1000;
  for (size_t sh = 0; sh < COUNT(shapes); ++sh) {
    rng_seed(sh);
    float *w = random_weights(shapes[sh][1]);
    const size_t rows = shapes[sh][0] * shapes[sh][2];
    float *g = xmalloc(rows * sizeof(float)); /* upstream gradients, one per row r = i·S + s (NONE) */
    for (size_t r = 0; r < rows; ++r) g[r] = r % 7 == 3 ? 0.0f : (float)rng_uniform(-2, 2);
    for (int opt = 0; opt <= 8; ++opt)
      for (int soft = 0; soft <= 1; ++soft)
        for (int red = CLXENT_MEAN; red <= CLXENT_NONE; ++red)
          for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; ++gm) {
            inner_case k = {.soft = soft, .n = shapes[sh][0], .c = shapes[sh][1], .S = shapes[sh][2],
                            .o = clxent_opts_default(), .gm = (enum grad_mode)gm, .want_lse = 1,
                            .want_bias = gm != GRAD_NONE};
            k.o.reduction = (clxent_reduction)red;
            if (opt == 1 || opt == 6) k.o.class_weight = w;
            if (opt == 2 || opt == 6) k.o.label_smoothing = 0.1f;
            if (opt == 3 || opt == 6) k.o.z_loss = 1e-3f;
            if (opt == 4 || opt == 6) k.o.softcap = 5.0f;
            if (opt == 5 || opt == 6) k.o.ignore_index = 2; /* a valid class, ignored */
            if (opt == 7 || opt == 8) k.o.grad_output = g; /* NONE: per row; else g[0] for the batch */
            if (opt == 8) {
              if (red != CLXENT_MEAN) continue;
              k.o.mean_denominator = 0.5 * (double)rows + 3.0, k.o.class_weight = w, k.o.z_loss = 1e-3f;
            }
            check_case(ctx, &k, seed++);
          }
    free(w), free(g);
  }
}

/* float16 and bfloat16 storage: every option together, in place and not, lse and bias_grad. */
static void test_storage_types(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t shapes[][3] = {{3, 21, 17}, {2, 10, 8}, {1, 1000, 9}, {65, 5, 2}};
  uint64_t seed = 5000;
  for (size_t sh = 0; sh < COUNT(shapes); ++sh) {
    rng_seed(sh);
    float *w = random_weights(shapes[sh][1]);
    for (int dt = CLXENT_FLOAT16; dt <= CLXENT_BFLOAT16; ++dt)
      for (int all = 0; all <= 1; ++all)
        for (int soft = 0; soft <= 1; ++soft)
          for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; gm += 2) {
            inner_case k = {.soft = soft, .n = shapes[sh][0], .c = shapes[sh][1], .S = shapes[sh][2],
                            .o = clxent_opts_default(), .dtype = (clxent_dtype)dt, .gm = (enum grad_mode)gm,
                            .want_lse = 1, .want_bias = 1};
            if (all) {
              k.o.class_weight = w, k.o.label_smoothing = 0.05f, k.o.z_loss = 1e-4f, k.o.softcap = 8.0f;
              k.o.reduction = soft ? CLXENT_SUM : CLXENT_NONE;
            }
            check_case(ctx, &k, seed++);
          }
    free(w);
  }
}

/* -inf masks, ±1e4, a NaN (its row's loss and lse NaN, and the batch loss), every row ignored
 * (MEAN: NaN, gradient 0), each with the gradient in place and not, in every storage type. */
static void test_special_values(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  uint64_t seed = 9000;
  for (int sp = MASKS; sp <= ALL_IGNORED; ++sp)
    for (int dt = CLXENT_FLOAT32; dt <= CLXENT_BFLOAT16; ++dt)
      for (int soft = 0; soft <= (sp == ALL_IGNORED ? 0 : 1); ++soft)
        for (int red = CLXENT_MEAN; red <= CLXENT_NONE; red += 2)
          for (int gm = GRAD_SEPARATE; gm <= GRAD_IN_PLACE; gm += 2) {
            inner_case k = {.soft = soft, .n = 3, .c = 21, .S = 9, .o = clxent_opts_default(),
                            .dtype = (clxent_dtype)dt, .gm = (enum grad_mode)gm, .want_lse = 1,
                            .want_bias = sp != WITH_NAN, .special = (enum special)sp};
            k.o.reduction = (clxent_reduction)red;
            if (sp == MASKS && !soft) k.o.z_loss = 1e-4f; /* masks with the z-loss's lse² */
            check_case(ctx, &k, seed++);
          }
  /* the NaN really reaches the row's loss and the batch loss (the reference says so too) */
  const size_t n = 2, c = 5, S = 3;
  float z[2 * 5 * 3], loss[2 * 3], mean;
  int32_t labels[6] = {0, 1, 2, 3, 4, 0};
  for (size_t e = 0; e < n * c * S; ++e) z[e] = (float)e * 0.1f;
  z[at(c, S, 1, 2, 1)] = NAN; /* row (1, 1) = row 4 */
  clxent_opts o = clxent_opts_default();
  clxent_ex ex = clxent_ex_default();
  ex.inner = S;
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, loss, NULL));
  for (size_t r = 0; r < n * S; ++r)
    if ((r == 4) != (isnan(loss[r]) != 0)) fail_msg("NaN at row 4: loss[%zu] = %g", r, (double)loss[r]);
  o.reduction = CLXENT_MEAN;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, &mean, NULL));
  assert_true(isnan(mean));
}

/* inner 0 and 1 are the [n][c] layout: the bits of a call without ex. And the strided layout gives
 * the [n·S][c] call's results on the transposed batch, to float tolerance. */
static void test_agrees_with_rows_layout(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const size_t n = 3, c = 21, S = 17, rows = n * S, nc = rows * c;
  float *z = xmalloc(nc * sizeof(float)), *zt = xmalloc(nc * sizeof(float)), *g = xmalloc(nc * sizeof(float));
  float *gt = xmalloc(nc * sizeof(float)), *g1 = xmalloc(nc * sizeof(float));
  float loss[3 * 17], loss_t[3 * 17], loss1[3 * 17], lse[3 * 17], lse_t[3 * 17], bias[21], bias_t[21];
  int32_t labels[3 * 17];
  rng_seed(3);
  fill_uniform(z, nc, -8, 8);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < c; ++j)
      for (size_t s = 0; s < S; ++s) zt[at_t(c, S, i, j, s)] = z[at(c, S, i, j, s)];
  for (size_t r = 0; r < rows; ++r) labels[r] = r % 7 == 3 ? -100 : (int32_t)rng_below((uint32_t)c);
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE, o.label_smoothing = 0.1f, o.softcap = 6.0f;
  /* inner = 1 and 0: bit for bit the plain call on [rows][c] */
  clxent_ex ex = clxent_ex_default();
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, rows, c, zt, labels, &o, loss_t, gt));
  ex.inner = 1;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, rows, c, zt, labels, &o, &ex, loss1, g1));
  assert_memory_equal(loss1, loss_t, sizeof loss_t);
  assert_memory_equal(g1, gt, nc * sizeof(float));
  /* the strided call against the transposed one */
  ex.inner = S, ex.lse = lse, ex.bias_grad = bias;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, loss, g));
  ex.inner = 0, ex.lse = lse_t, ex.bias_grad = bias_t;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, rows, c, zt, labels, &o, &ex, loss_t, gt));
  double *want = xmalloc(nc * sizeof(double));
  for (size_t r = 0; r < rows; ++r) want[r] = loss_t[r];
  assert_close(loss, want, rows, 1e-5, 1e-5, "strided vs rows layout: loss");
  for (size_t r = 0; r < rows; ++r) want[r] = lse_t[r];
  assert_close(lse, want, rows, 1e-5, 1e-5, "strided vs rows layout: lse");
  for (size_t j = 0; j < c; ++j) want[j] = bias_t[j];
  assert_close(bias, want, c, 1e-5, 1e-4, "strided vs rows layout: bias_grad");
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < c; ++j)
      for (size_t s = 0; s < S; ++s) want[at(c, S, i, j, s)] = gt[at_t(c, S, i, j, s)];
  assert_close(g, want, nc, 1e-6, 1e-4, "strided vs rows layout: grad");
  free(z), free(zt), free(g), free(gt), free(g1), free(want);
}

/* Streamed in blocks of whole samples (a few samples, one sample, through device buffers or in
 * place): the bits of the call in one block. A sample larger than a block is OUT_OF_MEMORY. */
static void test_blocks_of_whole_samples(void **state) {
  (void)state;
  const size_t n = 65, c = 10, S = 17, rows = n * S, nc = rows * c;
  float *z = xmalloc(nc * sizeof(float)), *g0 = xmalloc(nc * sizeof(float)), *g = xmalloc(nc * sizeof(float));
  float loss0[65 * 17], loss[65 * 17], lse0[65 * 17], lse[65 * 17], bias0[10], bias[10], mean0, mean;
  int32_t labels[65 * 17];
  rng_seed(11);
  fill_uniform(z, nc, -10, 10);
  for (size_t r = 0; r < rows; ++r) labels[r] = r % 5 == 0 ? -100 : (int32_t)rng_below((uint32_t)c);
  clxent_opts o = clxent_opts_default();
  clxent_ex ex = clxent_ex_default();
  ex.inner = S, ex.lse = lse0, ex.bias_grad = bias0;
  o.reduction = CLXENT_NONE;
  clxent_ctx *whole = support_create(NULL, NULL, NULL);
  ASSERT_OK(whole, clxent_softmax_xent_ex(whole, n, c, z, labels, &o, &ex, loss0, g0));
  o.reduction = CLXENT_MEAN;
  ASSERT_OK(whole, clxent_softmax_xent_ex(whole, n, c, z, labels, &o, &ex, &mean0, g0));
  /* blocks of 1, 3 and 7 samples (a sample is S·c·4 = 680 bytes); the bias chunks of 64 rows
   * straddle the block boundaries */
  static const uint64_t block_bytes[] = {680, 700, 2100, 4800};
  for (size_t b = 0; b < COUNT(block_bytes); ++b)
    for (int zc = CLXENT_ON; zc <= CLXENT_OFF; ++zc) {
      clxent_tuning t = CLXENT_TUNING_INIT;
      t.block_bytes = block_bytes[b], t.zero_copy = (clxent_switch)zc;
      clxent_ctx *ctx = support_create(NULL, &t, NULL);
      ex.lse = lse, ex.bias_grad = bias;
      poison(loss, rows), poison(lse, rows), poison(g, nc), poison(bias, c);
      o.reduction = CLXENT_NONE;
      ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, loss, g));
      assert_memory_equal(loss, loss0, sizeof loss);
      poison(g, nc), poison(bias, c);
      o.reduction = CLXENT_MEAN;
      ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, &mean, g));
      assert_memory_equal(&mean, &mean0, sizeof mean);
      assert_memory_equal(lse, lse0, sizeof lse);
      assert_memory_equal(bias, bias0, sizeof bias);
      assert_memory_equal(g, g0, nc * sizeof(float));
      clxent_destroy(ctx);
    }
  /* a sample of 680 bytes through blocks of 600: out of memory, said so */
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.block_bytes = 600;
  clxent_ctx *ctx = support_create(NULL, &t, NULL);
  assert_int_equal(clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, &mean, g), CLXENT_ERR_OUT_OF_MEMORY);
  assert_non_null(strstr(clxent_last_error(ctx), "inner = 17"));
  clxent_destroy(ctx);
  clxent_destroy(whole);
  free(z), free(g0), free(g);
}

/* Rejected, nothing written: inner on a binary loss (named), a label out of range at row (i, s)
 * (named with i and s), n·c·inner overflowing, the outputs too small for the n·S rows. */
static void test_rejected(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const size_t n = 2, c = 4, S = 3, nc = n * c * S;
  float z[24], t[24], grad[24], loss[6], lse[6];
  int32_t labels[6] = {0, 1, 2, 3, -100, 1};
  fill_uniform(z, nc, -1, 1);
  fill_uniform(t, nc, 0, 1);
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  clxent_ex ex = clxent_ex_default();
  ex.inner = S, ex.lse = lse;
#define EXPECT_REJECTED(call, status, text)                                                                     \
  do {                                                                                                        \
    poison(grad, nc), poison(loss, 6), poison(lse, 6);                                                        \
    assert_int_equal((call), (status));                                                                       \
    if (!strstr(clxent_last_error(ctx), (text)))                                                              \
      fail_msg("%s: message \"%s\" lacks \"%s\"", #call, clxent_last_error(ctx), (text));                     \
    assert_true(is_poison(grad, nc) && is_poison(loss, 6) && is_poison(lse, 6));                              \
  } while (0)
  clxent_ex bx = clxent_ex_default();
  bx.inner = S;
  EXPECT_REJECTED(clxent_sigmoid_xent_ex(ctx, n, c, z, t, &o, &bx, loss, grad), CLXENT_ERR_INVALID_ARG, "ex->inner = 3");
  EXPECT_REJECTED(clxent_bce_ex(ctx, n, c, t, t, &o, &bx, loss, grad), CLXENT_ERR_INVALID_ARG, "ex->inner = 3");
  labels[5] = 4; /* row r = 5: i = 1, s = 2 */
  EXPECT_REJECTED(clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, loss, grad), CLXENT_ERR_LABEL_RANGE,
                  "labels[5] (i = 1, s = 2 of inner = 3) = 4");
  labels[5] = -1;
  EXPECT_REJECTED(clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, loss, grad), CLXENT_ERR_LABEL_RANGE,
                  "labels[5] (i = 1, s = 2");
  labels[5] = 1;
  ex.inner = SIZE_MAX / 4;
  EXPECT_REJECTED(clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, loss, grad), CLXENT_ERR_INVALID_ARG,
                  "overflows");
  EXPECT_REJECTED(clxent_softmax_xent_soft_ex(ctx, n, c, z, t, &o, &ex, loss, grad), CLXENT_ERR_INVALID_ARG,
                  "overflows");
  /* the loss and lse are the n·S rows': lse overlapping loss at row n is caught (n·S, not n) */
  ex.inner = S, ex.lse = loss + n;
  EXPECT_REJECTED(clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, loss, grad), CLXENT_ERR_INVALID_ARG,
                  "ex->lse");
  /* the gradient is n·c·S values: one starting inside the logits' last sample overlaps them */
  ex.lse = lse;
  float big[48];
  memcpy(big, z, sizeof z);
  poison(big + 24, 24);
  assert_int_equal(clxent_softmax_xent_ex(ctx, n, c, big, labels, &o, &ex, loss, big + 20), CLXENT_ERR_INVALID_ARG);
  assert_true(is_poison(big + 24, 24));
#undef EXPECT_REJECTED
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rejected),          cmocka_unit_test(test_agrees_with_rows_layout),
      cmocka_unit_test(test_special_values),    cmocka_unit_test(test_options),
      cmocka_unit_test(test_storage_types),     cmocka_unit_test(test_blocks_of_whole_samples),
      cmocka_unit_test(test_shapes),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
