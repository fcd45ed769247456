/* ex->argmax and ex->correct (issue 15 §3) against the reference (reference.h: ref_argmax, the
 * first max of the raw logits, a row's first NaN before anything, 0 for a row of -inf only).
 *
 * Every call runs twice, without and with the two outputs, and the loss, lse and gradient must
 * be the same bits: the argmax rides along in the loss's own pass and changes nothing else.
 * argmax starts poisoned (-7) and correct at a value no count gives, so an unwritten one fails. */
#define CLXENT_EXPERIMENTAL_API /* clxent_tuning: the blocks test */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum grad_mode { GRAD_NONE, GRAD_SEPARATE, GRAD_IN_PLACE };
static const char *const grad_names[] = {"loss only", "separate gradient", "in-place gradient"};
static const char *const dtype_names[] = {"f32", "f16", "bf16"};
#define ARGMAX_POISON (-7)
#define CORRECT_POISON UINT64_C(0xDEADBEEFDEADBEEF)

/* One case: z [n][c] as floats (stored in `dtype`: the reference reads the stored values back),
 * hard labels or (labels NULL) soft targets. */
typedef struct argmax_case {
  size_t n, c;
  clxent_dtype dtype;
  const float *z, *targets;
  const int32_t *labels;
  clxent_opts o;
  enum grad_mode gm;
  int want_argmax, want_correct;
  const char *what;
} argmax_case;

/* The outputs of one call, poisoned before it. */
typedef struct outputs {
  float *loss, *lse;
  unsigned char *in, *grad; /* in: the stored logits (the gradient's home when in place) */
} outputs;

static void run(clxent_ctx *ctx, const argmax_case *k, const unsigned char *stored, const unsigned char *targets,
                int with_extras, int32_t *argmax, uint64_t *correct, outputs *out) {
  const size_t nc = k->n * k->c, eb = ref_dtype_bytes(k->dtype), nloss = k->o.reduction == CLXENT_NONE ? k->n : 1;
  out->in = xmalloc(nc * eb);
  memcpy(out->in, stored, nc * eb);
  out->loss = xmalloc(nloss * sizeof(float)), out->lse = xmalloc(k->n * sizeof(float));
  poison(out->loss, nloss), poison(out->lse, k->n);
  out->grad = k->gm == GRAD_SEPARATE ? xmalloc(nc * eb) : k->gm == GRAD_IN_PLACE ? out->in : NULL;
  if (k->gm == GRAD_SEPARATE) memset(out->grad, 0xFF, nc * eb);
  clxent_ex ex = clxent_ex_default();
  ex.dtype = k->dtype, ex.lse = out->lse;
  if (with_extras) {
    if (k->want_argmax) ex.argmax = argmax;
    if (k->want_correct) ex.correct = correct;
  }
  if (k->labels)
    ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, k->n, k->c, out->in, k->labels, &k->o, &ex, out->loss, out->grad));
  else
    ASSERT_OK(ctx, clxent_softmax_xent_soft_ex(ctx, k->n, k->c, out->in, targets, &k->o, &ex, out->loss, out->grad));
}

static void free_outputs(outputs *o, enum grad_mode gm) {
  if (gm == GRAD_SEPARATE) free(o->grad);
  free(o->in), free(o->loss), free(o->lse);
}

/* Element k of a and b (of type t) are the same bits, or both NaN: a compiler may propagate either
 * operand's NaN (sign and payload) and may commute an addition, so NaN bits are not the call's. */
static int same_values(const void *a, const void *b, size_t count, clxent_dtype t, size_t *at) {
  const size_t eb = ref_dtype_bytes(t);
  for (size_t k = 0; k < count; ++k)
    if (memcmp((const unsigned char *)a + k * eb, (const unsigned char *)b + k * eb, eb) &&
        !(isnan(ref_decode(a, k, t)) && isnan(ref_decode(b, k, t)))) {
      *at = k;
      return 0;
    }
  return 1;
}

/* Runs the case without and with argmax/correct and checks everything. */
static void check_case(clxent_ctx *ctx, const argmax_case *k) {
  const size_t n = k->n, c = k->c, nc = n * c, eb = ref_dtype_bytes(k->dtype);
  const size_t nloss = k->o.reduction == CLXENT_NONE ? n : 1;
  unsigned char *stored = xmalloc(nc * eb), *targets = k->labels ? NULL : xmalloc(nc * eb);
  float *x = xmalloc(nc * sizeof(float));
  for (size_t e = 0; e < nc; ++e) ref_encode(stored, e, k->z[e], k->dtype), x[e] = ref_decode(stored, e, k->dtype);
  if (targets)
    for (size_t e = 0; e < nc; ++e) ref_encode(targets, e, k->targets[e], k->dtype);
  int32_t *argmax = xmalloc(n * sizeof(int32_t)), *want = xmalloc(n * sizeof(int32_t));
  for (size_t i = 0; i < n; ++i) argmax[i] = ARGMAX_POISON;
  uint64_t correct = CORRECT_POISON;
  outputs plain, extra;
  run(ctx, k, stored, targets, 0, NULL, NULL, &plain);
  run(ctx, k, stored, targets, 1, argmax, &correct, &extra);
  char what[256];
  snprintf(what, sizeof what, "%s: %s %zux%zu %s, %s, softcap %g%s%s", k->what, k->labels ? "hard" : "soft", n, c,
           dtype_names[k->dtype], grad_names[k->gm], (double)k->o.softcap, k->want_argmax ? ", argmax" : "",
           k->want_correct ? ", correct" : "");
  /* the other outputs: the bits of the call without argmax */
  size_t at = 0;
  if (!same_values(plain.loss, extra.loss, nloss, CLXENT_FLOAT32, &at))
    fail_msg("%s: loss[%zu] changed with argmax: %.9g, was %.9g", what, at, (double)extra.loss[at],
             (double)plain.loss[at]);
  if (!same_values(plain.lse, extra.lse, n, CLXENT_FLOAT32, &at))
    fail_msg("%s: lse[%zu] changed with argmax: %.9g, was %.9g", what, at, (double)extra.lse[at],
             (double)plain.lse[at]);
  if (k->gm != GRAD_NONE && !same_values(plain.grad, extra.grad, nc, k->dtype, &at))
    fail_msg("%s: grad[%zu] changed with argmax: %.9g, was %.9g", what, at, (double)ref_decode(extra.grad, at, k->dtype),
             (double)ref_decode(plain.grad, at, k->dtype));
  if (is_poison(extra.lse, 1)) fail_msg("%s: lse not written", what);
  ref_argmax(n, c, x, want);
  if (k->want_argmax) {
    for (size_t i = 0; i < n; ++i)
      if (argmax[i] != want[i]) fail_msg("%s: argmax[%zu] = %d, expected %d", what, i, (int)argmax[i], (int)want[i]);
  } else {
    for (size_t i = 0; i < n; ++i)
      if (argmax[i] != ARGMAX_POISON) fail_msg("%s: argmax[%zu] written though not asked for", what, i);
  }
  if (k->want_correct) {
    const uint64_t expected = ref_correct(n, want, k->labels, k->o.ignore_index);
    if (correct != expected)
      fail_msg("%s: correct = %llu, expected %llu", what, (unsigned long long)correct, (unsigned long long)expected);
  } else if (correct != CORRECT_POISON) {
    fail_msg("%s: correct written though not asked for", what);
  }
  free_outputs(&plain, k->gm), free_outputs(&extra, k->gm);
  free(stored), free(targets), free(x), free(argmax), free(want);
}

/* Labels: about a fifth ignored, about half of the rest the row's argmax (so that `correct`
 * counts something), the others random. */
static int32_t *make_labels(size_t n, size_t c, const float *z, clxent_dtype dtype, int32_t ignore_index) {
  int32_t *labels = xmalloc(n * sizeof(int32_t)), *best = xmalloc(n * sizeof(int32_t));
  float *x = xmalloc(c * sizeof(float));
  unsigned char *one = xmalloc(c * 4);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < c; ++j) ref_encode(one, j, z[i * c + j], dtype), x[j] = ref_decode(one, j, dtype);
    ref_argmax(1, c, x, &best[i]);
    const double r = rng_uniform(0, 1);
    labels[i] = r < 0.2 ? ignore_index : r < 0.6 ? best[i] : (int32_t)rng_below((uint32_t)c);
  }
  free(best), free(x), free(one);
  return labels;
}

static void fill_targets(float *t, size_t n, size_t c) { fill_distribution_rows(t, n, c, 0.3); }

/* Rows of every kind the kernels must get right, for any c ≥ 1 (positions scale with c, so long
 * rows put them in different chunks of CLXENT_ROW_CHUNK = 4096): row r of `rows`. */
enum { SPECIAL_ROWS = 15 };
static void special_row(float *z, size_t c, int kind) {
  const size_t a = c / 7, b = c / 2, d = c > 2 ? c - 2 : c - 1, e = c - 1;
  for (size_t j = 0; j < c; ++j) z[j] = (float)rng_uniform(-3, 3);
  switch (kind) {
    case 0: z[b] = 5; break;                                    /* max in a later chunk */
    case 1: z[a] = 5; break;                                    /* max early */
    case 2: z[a] = z[b] = z[e] = 7; break;                      /* ties across chunks: the first */
    case 3: z[b] = z[d] = 7, z[a] = 6; break;                   /* a later tie beats an earlier max */
    case 4: for (size_t j = 0; j < c; ++j) z[j] = -INFINITY; break; /* all -inf: 0 */
    case 5: for (size_t j = 0; j < b; ++j) z[j] = -INFINITY; break; /* -inf leading */
    case 6: z[a] = 9, z[d] = NAN; break;                        /* NaN after the max */
    case 7: z[0] = INFINITY, z[b] = NAN, z[d] = NAN; break;     /* +inf, then two NaNs: the first */
    case 8: z[a] = INFINITY, z[d] = INFINITY; break;            /* two +inf: the first */
    case 9: z[a] = INFINITY, z[e] = NAN; break;                 /* +inf, NaN at the very end */
    case 10: for (size_t j = 0; j < c; ++j) z[j] = (float)rng_uniform(-1e4, 1e4); break;
    case 11: for (size_t j = 0; j < c; ++j) z[j] = -INFINITY; z[d] = NAN; break; /* -inf and a NaN */
    case 12: z[e] = 4; break;                                   /* the last element */
    case 13: z[0] = NAN; break;                                 /* NaN first */
    default: for (size_t j = 0; j < c; ++j) z[j] = j % 3 ? -INFINITY : -1e4f; break; /* masked, ties */
  }
}

/* Every storage type and gradient mode, with and without softcap, over row lengths around the
 * vector widths (4, 8, 16), the short-row kernel (c ≤ 64, with softcap ≤ 32), and rows of several chunks; random rows
 * and the special ones. Hard labels (argmax and correct) and soft targets (argmax). */
static void test_shapes_and_special_rows(void **state) {
  static const size_t shapes[][2] = {{1, 1}, {5, 1}, {3, 2}, {13, 3}, {9, 4}, {17, 7}, {11, 8}, {10, 9},
                                     {4, 15}, {6, 16}, {7, 17}, {13, 31}, {9, 32}, {8, 33}, {9, 64}, {7, 65}, {5, 100}, {3, 1023},
                                     {3, 4096}, {4, 4097}, {2, 3 * 4096 + 5}};
  clxent_ctx *ctx = test_ctx(state);
  rng_seed(1501);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
    const size_t c = shapes[s][1], n = shapes[s][0] + SPECIAL_ROWS, nc = n * c;
    float *z = xmalloc(nc * sizeof(float)), *t = xmalloc(nc * sizeof(float));
    for (int r = 0; r < SPECIAL_ROWS; ++r) special_row(z + (size_t)r * c, c, r);
    fill_uniform(z + SPECIAL_ROWS * c, (n - SPECIAL_ROWS) * c, -8, 8);
    fill_targets(t, n, c);
    for (int dt = CLXENT_FLOAT32; dt <= CLXENT_BFLOAT16; ++dt)
      for (int capped = 0; capped < 2; ++capped) {
        clxent_opts o = clxent_opts_default();
        o.reduction = CLXENT_NONE, o.ignore_index = s % 2 ? -100 : 0; /* a valid class ignored, too */
        o.softcap = capped ? 2.0f : 0.0f;                              /* saturates: u ties, z does not */
        int32_t *labels = make_labels(n, c, z, (clxent_dtype)dt, o.ignore_index);
        argmax_case k = {.n = n, .c = c, .dtype = (clxent_dtype)dt, .z = z, .labels = labels, .o = o,
                         .gm = (enum grad_mode)((s + (size_t)dt + (size_t)capped) % 3), .want_argmax = 1,
                         .want_correct = 1, .what = "shapes"};
        check_case(ctx, &k);
        k.labels = NULL, k.targets = t, k.want_correct = 0, k.gm = (enum grad_mode)((s + (size_t)dt) % 3);
        check_case(ctx, &k);
        free(labels);
      }
    free(z), free(t);
  }
}

/* Softcap saturates: every u is exactly s, so the softmax sees ties everywhere; the argmax is that
 * of z. With a row's max in its last element and in its first. */
static void test_softcap_saturation(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 3, C = 100 };
  float z[N * C], t[N * C];
  for (int j = 0; j < C; ++j) z[j] = 40.0f + 0.5f * (float)j, z[C + j] = 90.0f - 0.5f * (float)j, z[2 * C + j] = 60.0f;
  z[2 * C + 57] = 61.0f;
  fill_targets(t, N, C);
  const int32_t labels[N] = {C - 1, 5, 57};
  clxent_opts o = clxent_opts_default();
  o.softcap = 1.0f, o.reduction = CLXENT_NONE;
  for (int gm = GRAD_NONE; gm <= GRAD_IN_PLACE; ++gm) {
    argmax_case k = {.n = N, .c = C, .z = z, .labels = labels, .o = o, .gm = (enum grad_mode)gm, .want_argmax = 1,
                     .want_correct = 1, .what = "saturated softcap"};
    check_case(ctx, &k);
    k.labels = NULL, k.targets = t, k.want_correct = 0;
    check_case(ctx, &k);
  }
  /* by hand as well: the reference is not the only judge */
  int32_t argmax[N];
  uint64_t correct = 0;
  clxent_ex ex = clxent_ex_default();
  ex.argmax = argmax, ex.correct = &correct;
  float loss;
  o.reduction = CLXENT_SUM;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, N, C, z, labels, &o, &ex, &loss, NULL));
  assert_int_equal(argmax[0], C - 1);
  assert_int_equal(argmax[1], 0);
  assert_int_equal(argmax[2], 57);
  assert_int_equal(correct, 2);
}

/* correct alone (the library's own scratch for the argmax), with argmax, with every option; every
 * row ignored counts 0; the reduction and the options change nothing of it. */
static void test_correct(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const size_t n = 301, c = 53;
  float *z = xmalloc(n * c * sizeof(float)), *w = xmalloc(c * sizeof(float));
  rng_seed(15);
  fill_uniform(z, n * c, -5, 5);
  fill_uniform(w, c, 0.5, 2);
  clxent_opts o = clxent_opts_default();
  int32_t *labels = make_labels(n, c, z, CLXENT_FLOAT32, o.ignore_index), *argmax = xmalloc(n * sizeof(int32_t));
  int32_t *want = xmalloc(n * sizeof(int32_t));
  ref_argmax(n, c, z, want);
  const uint64_t expected = ref_correct(n, want, labels, o.ignore_index);
  assert_true(expected > 50 && expected < n); /* the case counts something */
  for (int variant = 0; variant < 4; ++variant) {
    o = clxent_opts_default();
    if (variant == 1) o.reduction = CLXENT_SUM, o.label_smoothing = 0.1f, o.class_weight = w;
    if (variant == 2) o.reduction = CLXENT_NONE, o.z_loss = 1e-3f, o.softcap = 3.0f;
    argmax_case k = {.n = n, .c = c, .z = z, .labels = labels, .o = o, .gm = (enum grad_mode)(variant % 3),
                     .want_argmax = variant != 3, .want_correct = 1, .what = "correct"};
    check_case(ctx, &k);
    /* correct without argmax: the same count */
    uint64_t got = CORRECT_POISON;
    clxent_ex ex = clxent_ex_default();
    ex.correct = &got;
    float *loss = xmalloc(n * sizeof(float));
    ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, loss, NULL));
    assert_int_equal(got, expected);
    free(loss);
  }
  /* every row ignored: 0, and the argmax is still every row's */
  for (size_t i = 0; i < n; ++i) labels[i] = -100;
  uint64_t got = CORRECT_POISON;
  clxent_ex ex = clxent_ex_default();
  ex.correct = &got, ex.argmax = argmax;
  float loss, *grad = xmalloc(n * c * sizeof(float));
  o = clxent_opts_default();
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &o, &ex, &loss, grad));
  assert_int_equal(got, 0);
  assert_memory_equal(argmax, want, n * sizeof(int32_t));
  free(z), free(w), free(labels), free(argmax), free(want), free(grad);
}

/* Where the outputs do not apply, the call is rejected naming the field, and writes nothing. */
static void test_rejections(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 4, C = 3 };
  float z[N * C], targets[N * C], loss[N * C], grad[N * C], lse[N];
  int32_t labels[N] = {0, 1, 2, 0}, argmax[N];
  uint64_t correct = CORRECT_POISON;
  rng_seed(3);
  fill_uniform(z, N * C, 0.05, 0.95);
  fill_uniform(targets, N * C, 0, 1);
  for (int which = 0; which < 7; ++which) {
    clxent_ex ex = clxent_ex_default();
    const char *field = which < 4 ? "ex->argmax" : "ex->correct";
    if (which < 4) ex.argmax = argmax;
    else ex.correct = &correct;
    if (which == 3) ex.argmax = (int32_t *)lse, ex.lse = lse, field = "ex->argmax overlaps ex->lse";
    poison(loss, N * C), poison(grad, N * C), poison(lse, N);
    for (int i = 0; i < N; ++i) argmax[i] = ARGMAX_POISON;
    clxent_status st;
    clxent_opts o = clxent_opts_default();
    switch (which) {
      case 0: case 4: st = clxent_sigmoid_xent_ex(ctx, N, C, z, targets, &o, &ex, loss, grad); break;
      case 1: case 5: st = clxent_bce_ex(ctx, N, C, z, targets, &o, &ex, loss, grad); break;
      case 6: st = clxent_softmax_xent_soft_ex(ctx, N, C, z, targets, &o, &ex, loss, grad); break;
      case 2: /* argmax overlapping the loss */
        ex.argmax = (int32_t *)loss, field = "ex->argmax overlaps loss", o.reduction = CLXENT_NONE;
        st = clxent_softmax_xent_ex(ctx, N, C, z, labels, &o, &ex, loss, grad);
        break;
      default: st = clxent_softmax_xent_ex(ctx, N, C, z, labels, &o, &ex, loss, grad); break;
    }
    if (st != CLXENT_ERR_INVALID_ARG || !strstr(clxent_last_error(ctx), field))
      fail_msg("case %d: %s: \"%s\"; expected CLXENT_ERR_INVALID_ARG naming %s", which, clxent_status_str(st),
               clxent_last_error(ctx), field);
    if (!is_poison(loss, N * C) || !is_poison(grad, N * C) || (which != 3 && !is_poison(lse, N)))
      fail_msg("case %d: the rejected call wrote an output", which);
    if (which != 2 && which != 3)
      for (int i = 0; i < N; ++i) assert_int_equal(argmax[i], ARGMAX_POISON);
    assert_true(correct == CORRECT_POISON);
  }
}

/* Batches streamed in blocks of a few rows (the per-row argmax lands at each block's offset),
 * through the context's own path and through device buffers. */
static void test_blocks(void **state) {
  (void)state;
  const size_t n = 203;
  static const size_t cs[] = {5, 37, 4099};
  for (int pipelined = 0; pipelined < 2; ++pipelined)
    for (size_t s = 0; s < sizeof cs / sizeof cs[0]; ++s) {
      const size_t c = cs[s];
      clxent_tuning t = CLXENT_TUNING_INIT;
      t.block_bytes = 3 * c * sizeof(float) + 4; /* 3 rows a block */
      if (pipelined) t.zero_copy = CLXENT_OFF;
      clxent_ctx *ctx = support_create(NULL, &t, NULL);
      float *z = xmalloc(n * c * sizeof(float)), *targets = xmalloc(n * c * sizeof(float));
      rng_seed(40 + s);
      fill_uniform(z, n * c, -4, 4);
      for (int r = 0; r < SPECIAL_ROWS; ++r) special_row(z + (size_t)(3 * r + 1) * c, c, r);
      fill_targets(targets, n, c);
      clxent_opts o = clxent_opts_default();
      int32_t *labels = make_labels(n, c, z, CLXENT_FLOAT32, o.ignore_index);
      argmax_case k = {.n = n, .c = c, .z = z, .labels = labels, .o = o, .gm = (enum grad_mode)((s + 1) % 3),
                       .want_argmax = 1, .want_correct = 1, .what = pipelined ? "3-row blocks, pipelined" : "3-row blocks"};
      check_case(ctx, &k);
      k.labels = NULL, k.targets = targets, k.want_correct = 0;
      check_case(ctx, &k);
      free(z), free(targets), free(labels);
      clxent_destroy(ctx);
    }
}

/* A vocabulary of 250000 classes (61 chunks): the max in the last chunk, in the first, and a tie
 * between the two, in place. */
static void test_large_vocabulary(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 3 };
  const size_t c = 250000;
  float *z = xmalloc(N * c * sizeof(float));
  rng_seed(250);
  fill_uniform(z, N * c, -10, 10);
  z[c - 3] = 11, z[c + 17] = 11, z[2 * c + 5] = z[2 * c + c - 1] = 12;
  const int32_t labels[N] = {(int32_t)c - 3, 4, 5};
  clxent_opts o = clxent_opts_default();
  argmax_case k = {.n = N, .c = c, .z = z, .labels = labels, .o = o, .gm = GRAD_IN_PLACE, .want_argmax = 1,
                   .want_correct = 1, .what = "250000 classes"};
  check_case(ctx, &k);
  free(z);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shapes_and_special_rows), cmocka_unit_test(test_softcap_saturation),
      cmocka_unit_test(test_correct),                 cmocka_unit_test(test_rejections),
      cmocka_unit_test(test_blocks),                  cmocka_unit_test(test_large_vocabulary),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
