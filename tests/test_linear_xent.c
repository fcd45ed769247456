/* clxent_linear_xent against a float64 reference: the logits z = hidden · weightᵀ + bias computed
 * in double and rounded to float, the reference softmax cross-entropy of reference.c on them
 * (every option), then grad_hidden = G · W, grad_weight = Gᵀ · H, grad_bias = Σ_i G in double.
 * Each gradient element is checked against the sum of its terms' magnitudes (what float32
 * arithmetic errs relative to). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLXENT_EXPERIMENTAL_API /* clxent_tuning: the block shape */
#include "support.h"
#include "clxent_cl.h"

static const char *const reduction_names[] = {"MEAN", "SUM", "NONE"};

typedef struct linear_ref {
  double *loss; /* n (NONE) or 1 */
  double *gh, *gw, *gb, *gh_abs, *gw_abs, *gb_abs;
} linear_ref;

static void ref_linear(size_t n, size_t d, size_t v, const float *h, const float *w, const float *b,
                       const int32_t *labels, const clxent_opts *o, linear_ref *out) {
  float *z = xmalloc(n * v * sizeof(float));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < v; ++j) {
      double acc = b ? b[j] : 0.0;
      for (size_t k = 0; k < d; ++k) acc += (double)h[i * d + k] * w[j * d + k];
      z[i * v + j] = (float)acc;
    }
  double *rows = xmalloc(n * sizeof(double)), *G = xmalloc(n * v * sizeof(double));
  ref_out r = {.rows = rows, .grad = G};
  ref_softmax_xent(n, v, z, labels, o, &r);
  if (o->reduction == CLXENT_NONE) memcpy(out->loss, rows, n * sizeof(double));
  else out->loss[0] = r.loss;
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < d; ++k) {
      double s = 0, a = 0;
      for (size_t j = 0; j < v; ++j) s += G[i * v + j] * w[j * d + k], a += fabs(G[i * v + j] * w[j * d + k]);
      out->gh[i * d + k] = s, out->gh_abs[i * d + k] = a;
    }
  for (size_t j = 0; j < v; ++j) {
    for (size_t k = 0; k < d; ++k) {
      double s = 0, a = 0;
      for (size_t i = 0; i < n; ++i) s += G[i * v + j] * h[i * d + k], a += fabs(G[i * v + j] * h[i * d + k]);
      out->gw[j * d + k] = s, out->gw_abs[j * d + k] = a;
    }
    double s = 0, a = 0;
    for (size_t i = 0; i < n; ++i) s += G[i * v + j], a += fabs(G[i * v + j]);
    out->gb[j] = s, out->gb_abs[j] = a;
  }
  free(z), free(rows), free(G);
}

/* got ≈ ref within rtol·(Σ|terms| + 1e-30) + atol; NaN only where the reference is NaN. */
static void check_grad(const float *got, const double *ref, const double *abs_sum, size_t k, const char *what) {
  for (size_t e = 0; e < k; ++e) {
    const double g = got[e], r = ref[e];
    const int ok = isnan(r) ? isnan(g) : !isnan(g) && fabs(g - r) <= 1e-4 * abs_sum[e] + 1e-7;
    if (!ok) fail_msg("%s[%zu]: got %.9g, reference %.9g (Σ|terms| %g)", what, e, g, r, abs_sum[e]);
  }
}

typedef struct problem {
  size_t n, d, v;
  float *h, *w, *b;
  int32_t *labels;
} problem;

static problem make_problem(size_t n, size_t d, size_t v, int with_bias, double ignore_fraction, uint64_t seed) {
  problem p = {n, d, v, xmalloc(n * d * sizeof(float)), xmalloc(v * d * sizeof(float)), NULL,
               xmalloc(n * sizeof(int32_t))};
  rng_seed(seed);
  fill_uniform(p.h, n * d, -1.0, 1.0);
  fill_uniform(p.w, v * d, -1.0, 1.0);
  if (with_bias) p.b = xmalloc(v * sizeof(float)), fill_uniform(p.b, v, -2.0, 2.0);
  for (size_t i = 0; i < n; ++i)
    p.labels[i] = rng_uniform(0, 1) < ignore_fraction ? -100 : (int32_t)rng_below((uint32_t)v);
  return p;
}

static void free_problem(problem *p) { free(p->h), free(p->w), free(p->b), free(p->labels); }

enum { WANT_LOSS = 1, WANT_GH = 2, WANT_GW = 4, WANT_GB = 8, WANT_ALL = 15 };

/* One call with the outputs in `want`, poisoned before, checked after; unwanted ones NULL. */
static void check_call(clxent_ctx *ctx, const problem *p, clxent_opts o, int want, const char *label) {
  const size_t n = p->n, d = p->d, v = p->v, nl = o.reduction == CLXENT_NONE ? n : 1;
  float *loss = xmalloc(nl * sizeof(float)), *gh = xmalloc(n * d * sizeof(float));
  float *gw = xmalloc(v * d * sizeof(float)), *gb = xmalloc(v * sizeof(float));
  poison(loss, nl), poison(gh, n * d), poison(gw, v * d), poison(gb, v);
  linear_ref r = {xmalloc(nl * sizeof(double)), xmalloc(n * d * sizeof(double)), xmalloc(v * d * sizeof(double)),
                  xmalloc(v * sizeof(double)), xmalloc(n * d * sizeof(double)), xmalloc(v * d * sizeof(double)),
                  xmalloc(v * sizeof(double))};
  ref_linear(n, d, v, p->h, p->w, p->b, p->labels, &o, &r);
  ASSERT_OK(ctx, clxent_linear_xent(ctx, n, d, v, p->h, p->w, p->b, p->labels, &o, want & WANT_LOSS ? loss : NULL,
                                    want & WANT_GH ? gh : NULL, want & WANT_GW ? gw : NULL,
                                    want & WANT_GB ? gb : NULL));
  char what[200];
  snprintf(what, sizeof what, "%s %zux%zux%zu %s want %d: loss", label, n, d, v, reduction_names[o.reduction], want);
  const double tol = 1e-4 * (1.0 + log((double)v));
  if (want & WANT_LOSS) assert_close(loss, r.loss, nl, tol, tol, what);
  else assert_true(is_poison(loss, nl));
  if (want & WANT_GH) {
    snprintf(what, sizeof what, "%s %zux%zux%zu %s: grad_hidden", label, n, d, v, reduction_names[o.reduction]);
    check_grad(gh, r.gh, r.gh_abs, n * d, what);
  } else assert_true(is_poison(gh, n * d));
  if (want & WANT_GW) {
    snprintf(what, sizeof what, "%s %zux%zux%zu %s: grad_weight", label, n, d, v, reduction_names[o.reduction]);
    check_grad(gw, r.gw, r.gw_abs, v * d, what);
  } else assert_true(is_poison(gw, v * d));
  if (want & WANT_GB) {
    snprintf(what, sizeof what, "%s %zux%zux%zu %s: grad_bias", label, n, d, v, reduction_names[o.reduction]);
    check_grad(gb, r.gb, r.gb_abs, v, what);
  } else assert_true(is_poison(gb, v));
  free(loss), free(gh), free(gw), free(gb);
  free(r.loss), free(r.gh), free(r.gw), free(r.gb), free(r.gh_abs), free(r.gw_abs), free(r.gb_abs);
}

/* Shapes from 1×1×1 up, odd, off the vector widths (4, 8, 16), v over a block of classes (512 on
 * CPUs) and n over a block of rows (256), every reduction, with and without bias. */
static void test_shapes(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  static const size_t shapes[][3] = {{1, 1, 1},  {1, 1, 2},   {2, 3, 1},    {3, 5, 7},   {13, 17, 19},
                                     {9, 8, 16}, {8, 16, 32}, {7, 33, 1100}, {5, 9, 4099}, {300, 9, 40},
                                     {260, 20, 530}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
    for (int bias = 0; bias < 2; ++bias)
      for (int red = 0; red < 3; ++red) {
        problem p = make_problem(shapes[s][0], shapes[s][1], shapes[s][2], bias, 0.2, 100 + s);
        clxent_opts o = clxent_opts_default();
        o.reduction = (clxent_reduction)red;
        check_call(ctx, &p, o, WANT_ALL, bias ? "bias" : "no bias");
        free_problem(&p);
      }
}

/* A GPT-2 vocabulary, once, with a small n and d. */
static void test_vocabulary(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  problem p = make_problem(3, 4, 50257, 1, 0.0, 7);
  clxent_opts o = clxent_opts_default();
  o.label_smoothing = 0.1f;
  check_call(ctx, &p, o, WANT_ALL, "vocabulary");
  free_problem(&p);
}

/* Every option alone, then all together, on a shape spanning two class blocks, with ignored rows. */
static void test_options(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  problem p = make_problem(21, 11, 600, 1, 0.25, 11);
  float *cw = xmalloc(p.v * sizeof(float));
  rng_seed(12);
  fill_uniform(cw, p.v, 0.0, 2.0);
  cw[3] = 0.0f;
  int32_t *plain = p.labels, *five = xmalloc(p.n * sizeof(int32_t)); /* ignored rows labelled 5 */
  for (size_t i = 0; i < p.n; ++i) five[i] = plain[i] == -100 ? 5 : plain[i];
  for (int opt = 0; opt < 6; ++opt)
    for (int red = 0; red < 3; ++red) {
      clxent_opts o = clxent_opts_default();
      o.reduction = (clxent_reduction)red;
      if (opt == 0 || opt == 5) o.class_weight = cw;
      if (opt == 1 || opt == 5) o.label_smoothing = 0.2f;
      if (opt == 2 || opt == 5) o.z_loss = 1e-3f;
      if (opt == 3 || opt == 5) o.softcap = 3.0f;
      o.ignore_index = opt >= 4 ? 5 : -100; /* 5 is a valid class: rows labelled 5 are ignored */
      p.labels = opt >= 4 ? five : plain;
      char label[32];
      snprintf(label, sizeof label, "option %d", opt);
      check_call(ctx, &p, o, WANT_ALL, label);
    }
  p.labels = plain;
  free(cw), free(five);
  free_problem(&p);
}

/* Every row ignored: MEAN is NaN with zero gradients (PyTorch), SUM 0. */
static void test_all_ignored(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  problem p = make_problem(6, 5, 9, 1, 1.0, 13);
  for (int red = 0; red < 3; ++red) {
    clxent_opts o = clxent_opts_default();
    o.reduction = (clxent_reduction)red;
    check_call(ctx, &p, o, WANT_ALL, "all ignored");
  }
  free_problem(&p);
}

/* Every combination of wanted outputs, the others NULL and left untouched. */
static void test_null_outputs(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  problem p = make_problem(10, 12, 70, 1, 0.1, 17);
  for (int want = 1; want <= WANT_ALL; ++want) check_call(ctx, &p, clxent_opts_default(), want, "outputs");
  free_problem(&p);
}

/* Repeated calls give the same bits, over several row and class blocks, every option on. */
static void test_deterministic(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  problem p = make_problem(300, 24, 1030, 1, 0.1, 19);
  clxent_opts o = clxent_opts_default();
  o.label_smoothing = 0.1f, o.z_loss = 1e-4f, o.softcap = 20.0f;
  float *out[2][4];
  const size_t sizes[4] = {1, p.n * p.d, p.v * p.d, p.v};
  for (int t = 0; t < 2; ++t) {
    for (int a = 0; a < 4; ++a) out[t][a] = xmalloc(sizes[a] * sizeof(float));
    ASSERT_OK(ctx, clxent_linear_xent(ctx, p.n, p.d, p.v, p.h, p.w, p.b, p.labels, &o, out[t][0], out[t][1],
                                      out[t][2], out[t][3]));
  }
  for (int a = 0; a < 4; ++a) {
    assert_memory_equal(out[0][a], out[1][a], sizes[a] * sizeof(float));
    free(out[0][a]), free(out[1][a]);
  }
  free_problem(&p);
}

/* The block shape: other rows per block give the same bits (each row's softmax state and every
 * gradient sum run in the same order); other classes per block change where the online softmax
 * rescales, so the results agree to float tolerance, and each against the reference. */
static void test_block_shapes(void **state) {
  (void)state;
  problem p = make_problem(37, 19, 211, 1, 0.1, 29);
  clxent_opts o = clxent_opts_default();
  o.label_smoothing = 0.1f, o.z_loss = 1e-3f, o.softcap = 5.0f;
  static const size_t blocks[][2] = {{0, 0}, {1, 0}, {5, 0}, {37, 0}, {0, 1}, {0, 7}, {3, 64}, {64, 300}};
  const size_t sizes[4] = {1, p.n * p.d, p.v * p.d, p.v};
  float *first[4];
  for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; ++b) {
    clxent_tuning t = CLXENT_TUNING_INIT;
    t.linear_rows = blocks[b][0], t.linear_classes = blocks[b][1];
    clxent_ctx *ctx = support_create(NULL, &t, NULL);
    clxent_info info = CLXENT_INFO_INIT;
    ASSERT_OK(ctx, clxent_get_info(ctx, 0, &info));
    if (blocks[b][0]) assert_int_equal(info.linear_rows, blocks[b][0]);
    if (blocks[b][1]) assert_int_equal(info.linear_classes, blocks[b][1]);
    check_call(ctx, &p, o, WANT_ALL, "block shape");
    float *out[4];
    for (int a = 0; a < 4; ++a) out[a] = xmalloc(sizes[a] * sizeof(float));
    ASSERT_OK(ctx, clxent_linear_xent(ctx, p.n, p.d, p.v, p.h, p.w, p.b, p.labels, &o, out[0], out[1], out[2], out[3]));
    for (int a = 0; a < 4; ++a) {
      if (b == 0) first[a] = out[a];
      else {
        if (!blocks[b][1]) assert_memory_equal(first[a], out[a], sizes[a] * sizeof(float)); /* rows only */
        free(out[a]);
      }
    }
    clxent_destroy(ctx);
  }
  for (int a = 0; a < 4; ++a) free(first[a]);
  free_problem(&p);
}

/* The call with each rows-per-block of `rows` (0: the table's) and `classes` classes per block:
 * loss and all three gradients the same bits every time; the calls whose bit is set in
 * `reference_mask` also checked against the float64 reference. */
static void same_bits_for_rows(const problem *p, clxent_opts o, const size_t *rows, size_t count, size_t classes,
                               unsigned reference_mask, const char *what) {
  const size_t sizes[4] = {1, p->n * p->d, p->v * p->d, p->v};
  float *first[4];
  for (size_t b = 0; b < count; ++b) {
    clxent_tuning t = CLXENT_TUNING_INIT;
    t.linear_rows = rows[b], t.linear_classes = classes;
    clxent_ctx *ctx = support_create(NULL, &t, NULL);
    if (reference_mask >> b & 1u) check_call(ctx, p, o, WANT_ALL, what);
    float *out[4];
    for (int a = 0; a < 4; ++a) out[a] = xmalloc(sizes[a] * sizeof(float));
    ASSERT_OK(ctx, clxent_linear_xent(ctx, p->n, p->d, p->v, p->h, p->w, p->b, p->labels, &o, out[0], out[1], out[2],
                                      out[3]));
    for (int a = 0; a < 4; ++a) {
      if (b == 0) first[a] = out[a];
      else {
        assert_memory_equal(first[a], out[a], sizes[a] * sizeof(float));
        free(out[a]);
      }
    }
    clxent_destroy(ctx);
  }
  for (int a = 0; a < 4; ++a) free(first[a]);
}

/* Blocks kept from the forward pass for the backward (host/linear.c, kept_blocks): how many of a
 * row chunk's class chunks fit in 4.5% of n·v floats beside the rest of the scratch depends on the
 * rows per block. At 64 × 8 × 3000 in class chunks of 64 (47 chunks), 64 rows per block keep none,
 * 16 keep 3, 4 keep about 20, 1 keeps all 47 (with 8-float vectors; other widths move these a
 * little): the same bits each time, since a kept logit is the one the backward would compute,
 * and each against the reference. */
static void test_kept_blocks(void **state) {
  (void)state;
  problem p = make_problem(64, 8, 3000, 1, 0.1, 31);
  clxent_opts o = clxent_opts_default();
  o.label_smoothing = 0.05f, o.z_loss = 1e-4f;
  static const size_t rows[] = {64, 16, 4, 1};
  same_bits_for_rows(&p, o, rows, 4, 64, 0x5u, "kept blocks");
  free_problem(&p);
}

/* Rows per block chosen by the call (host/linear.c, rows_per_block): with the table's rows (256 on
 * CPUs) a row chunk of 4096 × 8 × 1100 keeps none of its 3 blocks of 512 classes, with 64 rows it
 * keeps all three, so a context left to the table takes 64 for the gradients. The results are the
 * bits of a context told 256 rows, and of one told 64, and match the reference; the loss alone
 * keeps the table's rows. */
static void test_rows_for_kept(void **state) {
  (void)state;
  problem p = make_problem(4096, 8, 1100, 1, 0.05, 37);
  clxent_opts o = clxent_opts_default();
  o.label_smoothing = 0.1f, o.softcap = 15.0f;
  static const size_t rows[] = {0, 256, 64};
  same_bits_for_rows(&p, o, rows, 3, 0, 0x1u, "rows for kept blocks");
  free_problem(&p);
}

/* 16-bit storage: hidden, weight and bias rounded to the type; the call on them gives exactly the
 * float32 call's loss on the same values and its gradients rounded once to the type (both sum in
 * float32 in the same order), and the lse matches the reference on every row, ignored ones too. */
static void test_storage(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  problem p = make_problem(70, 19, 600, 1, 0.2, 31);
  const size_t n = p.n, d = p.d, v = p.v;
  clxent_opts o = clxent_opts_default();
  o.label_smoothing = 0.1f, o.z_loss = 1e-3f;
  for (int t = CLXENT_FLOAT16; t <= CLXENT_BFLOAT16; ++t) {
    const clxent_dtype dt = (clxent_dtype)t;
    uint16_t *h = xmalloc(n * d * 2), *w = xmalloc(v * d * 2), *b = xmalloc(v * 2);
    uint16_t *gh = xmalloc(n * d * 2), *gw = xmalloc(v * d * 2), *gb = xmalloc(v * 2);
    float *hf = xmalloc(n * d * 4), *wf = xmalloc(v * d * 4), *bf = xmalloc(v * 4);
    float *gh32 = xmalloc(n * d * 4), *gw32 = xmalloc(v * d * 4), *gb32 = xmalloc(v * 4), *lse = xmalloc(n * 4);
    for (size_t e = 0; e < n * d; ++e) ref_encode(h, e, p.h[e], dt), hf[e] = ref_decode(h, e, dt);
    for (size_t e = 0; e < v * d; ++e) ref_encode(w, e, p.w[e], dt), wf[e] = ref_decode(w, e, dt);
    for (size_t e = 0; e < v; ++e) ref_encode(b, e, p.b[e], dt), bf[e] = ref_decode(b, e, dt);
    float loss16, loss32;
    clxent_ex x = clxent_ex_default();
    x.dtype = dt, x.lse = lse;
    poison(lse, n);
    ASSERT_OK(ctx, clxent_linear_xent_ex(ctx, n, d, v, h, w, b, p.labels, &o, &x, &loss16, gh, gw, gb));
    ASSERT_OK(ctx, clxent_linear_xent(ctx, n, d, v, hf, wf, bf, p.labels, &o, &loss32, gh32, gw32, gb32));
    assert_memory_equal(&loss16, &loss32, sizeof(float));
    for (size_t e = 0; e < n * d; ++e)
      if (gh[e] != (dt == CLXENT_FLOAT16 ? ref_to_f16(gh32[e]) : ref_to_bf16(gh32[e])))
        fail_msg("%s grad_hidden[%zu] is not the float32 one rounded once", t == 1 ? "f16" : "bf16", e);
    for (size_t e = 0; e < v * d; ++e)
      if (gw[e] != (dt == CLXENT_FLOAT16 ? ref_to_f16(gw32[e]) : ref_to_bf16(gw32[e])))
        fail_msg("%s grad_weight[%zu] is not the float32 one rounded once", t == 1 ? "f16" : "bf16", e);
    for (size_t e = 0; e < v; ++e)
      if (gb[e] != (dt == CLXENT_FLOAT16 ? ref_to_f16(gb32[e]) : ref_to_bf16(gb32[e])))
        fail_msg("%s grad_bias[%zu] is not the float32 one rounded once", t == 1 ? "f16" : "bf16", e);
    /* the lse against the reference's, on the rounded inputs */
    float *z = xmalloc(n * v * 4);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < v; ++j) {
        double acc = bf[j];
        for (size_t k = 0; k < d; ++k) acc += (double)hf[i * d + k] * wf[j * d + k];
        z[i * v + j] = (float)acc;
      }
    double *ref_lse = xmalloc(n * sizeof(double));
    ref_out r = {.lse = ref_lse};
    ref_softmax_xent(n, v, z, p.labels, &o, &r);
    assert_close(lse, ref_lse, n, 1e-4, 1e-5, "lse");
    free(z), free(ref_lse);
    free(h), free(w), free(b), free(gh), free(gw), free(gb), free(hf), free(wf), free(bf);
    free(gh32), free(gw32), free(gb32), free(lse);
  }
  free_problem(&p);
}

/* The device-buffer form on the context's queue: the host form's results (the MEAN divisor comes
 * from the device's count of the labels, so the scales may differ in the last bit), then a label out
 * of range: its row NaN, the loss NaN, one bad label counted. */
static cl_mem buffer(cl_context cc, size_t bytes, const void *host) {
  cl_int err;
  cl_mem m = clCreateBuffer(cc, host ? CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR : CL_MEM_READ_WRITE, bytes,
                            (void *)(uintptr_t)host, &err);
  if (err != CL_SUCCESS) fail_msg("clCreateBuffer: %d", (int)err);
  return m;
}

static void read_back(cl_command_queue q, cl_mem m, size_t bytes, void *to) {
  if (clEnqueueReadBuffer(q, m, CL_TRUE, 0, bytes, to, 0, NULL, NULL) != CL_SUCCESS) fail_msg("clEnqueueReadBuffer");
}

static void test_device_buffers(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  cl_command_queue q = clxent_queue(ctx);
  cl_context cc;
  assert_int_equal(clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof cc, &cc, NULL), CL_SUCCESS);
  problem p = make_problem(40, 13, 300, 1, 0.2, 37);
  const size_t n = p.n, d = p.d, v = p.v;
  float *cw = xmalloc(v * sizeof(float));
  rng_seed(38);
  fill_uniform(cw, v, 0.5, 2.0);
  clxent_opts o = clxent_opts_default();
  o.class_weight = cw, o.label_smoothing = 0.1f, o.z_loss = 1e-3f;
  float loss, *gh = xmalloc(n * d * 4), *gw = xmalloc(v * d * 4), *gb = xmalloc(v * 4), *lse = xmalloc(n * 4);
  clxent_ex hx = clxent_ex_default();
  hx.lse = lse;
  ASSERT_OK(ctx, clxent_linear_xent_ex(ctx, n, d, v, p.h, p.w, p.b, p.labels, &o, &hx, &loss, gh, gw, gb));
  cl_mem H = buffer(cc, n * d * 4, p.h), W = buffer(cc, v * d * 4, p.w), B = buffer(cc, v * 4, p.b);
  cl_mem Y = buffer(cc, n * 4, p.labels), L = buffer(cc, 4, NULL), GH = buffer(cc, n * d * 4, NULL);
  cl_mem GW = buffer(cc, v * d * 4, NULL), GB = buffer(cc, v * 4, NULL), LSE = buffer(cc, n * 4, NULL);
  const cl_uint zero = 0;
  cl_mem BAD = buffer(cc, sizeof zero, &zero);
  clxent_mem_ex x = clxent_mem_ex_default();
  x.lse = LSE, x.bad_labels = BAD;
  float *out = xmalloc(v * d * 4);
  double *ref = xmalloc(v * d * sizeof(double));
  for (int round = 0; round < 2; ++round) { /* 0: as the host call; 1: labels[3] out of range */
    cl_event done;
    ASSERT_OK(ctx, clxent_linear_xent_mem(ctx, n, d, v, H, W, B, Y, &o, &x, L, GH, GW, GB, 0, NULL, &done));
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);
    float got;
    cl_uint bad;
    read_back(q, L, 4, &got);
    read_back(q, BAD, sizeof bad, &bad);
    if (round == 0) {
      const double want = loss;
      assert_close(&got, &want, 1, 1e-6, 1e-5, "mem loss");
      assert_int_equal(bad, 0);
      const struct { cl_mem m; const float *host; size_t k; const char *what; } g[] = {
          {GH, gh, n * d, "mem grad_hidden"}, {GW, gw, v * d, "mem grad_weight"}, {GB, gb, v, "mem grad_bias"},
          {LSE, lse, n, "mem lse"}};
      for (int a = 0; a < 4; ++a) {
        read_back(q, g[a].m, g[a].k * 4, out);
        for (size_t e = 0; e < g[a].k; ++e) ref[e] = g[a].host[e];
        assert_close(out, ref, g[a].k, 1e-7, 1e-5, g[a].what);
      }
      p.labels[3] = (int32_t)v;
      assert_int_equal(clEnqueueWriteBuffer(q, Y, CL_TRUE, 0, n * 4, p.labels, 0, NULL, NULL), CL_SUCCESS);
    } else {
      assert_true(isnan(got));
      assert_int_equal(bad, 1);
      read_back(q, GH, n * d * 4, out);
      for (size_t k = 0; k < d; ++k) assert_true(isnan(out[3 * d + k]));
      assert_false(isnan(out[2 * d]));
      read_back(q, LSE, n * 4, out);
      assert_true(isnan(out[3]) && !isnan(out[2]));
    }
  }
  cl_mem all[] = {H, W, B, Y, L, GH, GW, GB, LSE, BAD};
  for (size_t k = 0; k < sizeof all / sizeof all[0]; ++k) clReleaseMemObject(all[k]);
  free(cw), free(gh), free(gw), free(gb), free(lse), free(out), free(ref);
  free_problem(&p);
}

/* A rejected call writes nothing and says why. */
static void expect_rejected(clxent_ctx *ctx, clxent_status want, const char *needle, size_t n, size_t d, size_t v,
                            const float *h, const float *w, const float *b, const int32_t *labels,
                            const clxent_opts *o, float *loss, float *gh, float *gw, float *gb) {
  const clxent_status st = clxent_linear_xent(ctx, n, d, v, h, w, b, labels, o, loss, gh, gw, gb);
  if (st != want) fail_msg("expected %s, got %s: %s", clxent_status_str(want), clxent_status_str(st),
                           clxent_last_error(ctx));
  if (!strstr(clxent_last_error(ctx), needle))
    fail_msg("message \"%s\" does not name \"%s\"", clxent_last_error(ctx), needle);
}

static void test_rejected(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  problem p = make_problem(4, 3, 5, 1, 0.0, 23);
  float loss, gh[12], gw[15], gb[5];
  poison(&loss, 1), poison(gh, 12), poison(gw, 15), poison(gb, 5);
  const clxent_opts def = clxent_opts_default();
  p.labels[2] = 5;
  expect_rejected(ctx, CLXENT_ERR_LABEL_RANGE, "labels[2] = 5", 4, 3, 5, p.h, p.w, p.b, p.labels, &def, &loss, gh,
                  gw, gb);
  p.labels[2] = -1;
  expect_rejected(ctx, CLXENT_ERR_LABEL_RANGE, "labels[2] = -1", 4, 3, 5, p.h, p.w, p.b, p.labels, &def, &loss, gh,
                  gw, gb);
  p.labels[2] = 1;
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "hidden is NULL", 4, 3, 5, NULL, p.w, p.b, p.labels, &def, &loss, gh,
                  gw, gb);
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "weight is NULL", 4, 3, 5, p.h, NULL, p.b, p.labels, &def, &loss, gh,
                  gw, gb);
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "d (hidden size) is 0", 4, 0, 5, p.h, p.w, p.b, p.labels, &def, &loss,
                  gh, gw, gb);
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "all NULL", 4, 3, 5, p.h, p.w, p.b, p.labels, &def, NULL, NULL, NULL,
                  NULL);
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "grad_hidden overlaps hidden", 4, 3, 5, p.h, p.w, p.b, p.labels, &def,
                  &loss, p.h, gw, gb);
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "grad_weight overlaps grad_hidden", 4, 3, 5, p.h, p.w, p.b, p.labels,
                  &def, &loss, gh, gh, gb);
  clxent_opts o = def;
  o.label_smoothing = 1.0f;
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "label_smoothing", 4, 3, 5, p.h, p.w, p.b, p.labels, &o, &loss, gh, gw,
                  gb);
  o = def;
  o.pos_weight = gb;
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "pos_weight", 4, 3, 5, p.h, p.w, p.b, p.labels, &o, &loss, gh, gw, gb);
  o = def;
  const float g = 1.0f;
  o.grad_output = &g;
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "grad_output", 4, 3, 5, p.h, p.w, p.b, p.labels, &o, &loss, gh, gw, gb);
  o = def;
  float cw[5] = {1, 1, -1, 1, 1};
  o.class_weight = cw;
  expect_rejected(ctx, CLXENT_ERR_INVALID_ARG, "class_weight[2]", 4, 3, 5, p.h, p.w, p.b, p.labels, &o, &loss, gh, gw,
                  gb);
  clxent_ex x = clxent_ex_default();
  x.bias_grad = gb;
  assert_int_equal(clxent_linear_xent_ex(ctx, 4, 3, 5, p.h, p.w, p.b, p.labels, &def, &x, &loss, gh, gw, NULL),
                   CLXENT_ERR_INVALID_ARG);
  x = clxent_ex_default();
  x.dtype = (clxent_dtype)7;
  assert_int_equal(clxent_linear_xent_ex(ctx, 4, 3, 5, p.h, p.w, p.b, p.labels, &def, &x, &loss, gh, gw, gb),
                   CLXENT_ERR_INVALID_ARG);
  assert_true(is_poison(&loss, 1) && is_poison(gh, 12) && is_poison(gw, 15) && is_poison(gb, 5));
  free_problem(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shapes),       cmocka_unit_test(test_vocabulary),    cmocka_unit_test(test_options),
      cmocka_unit_test(test_all_ignored),  cmocka_unit_test(test_null_outputs),  cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_rejected),     cmocka_unit_test(test_block_shapes),  cmocka_unit_test(test_kept_blocks),
      cmocka_unit_test(test_rows_for_kept),  cmocka_unit_test(test_storage),
      cmocka_unit_test(test_device_buffers),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
