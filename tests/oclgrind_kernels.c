/* The work-group (GPU) variant's kernels on small shapes, and the row-per-item (CPU) variant's on
 * short and short-ish rows, for a device simulator (issue 13 §7).
 *
 * No GPU has run clxent; PoCL runs the group variant on the CPU, where local-memory races,
 * divergent barriers and out-of-bounds accesses go unseen. tests/oclgrind.sh runs this program
 * under Oclgrind (data races, API checks, uninitialised values, bounds), which reports them; the
 * program itself checks every result against the float64 reference (reference.h), so that it is a
 * real test on any device (./build/tests/oclgrind_kernels runs it on the default one).
 *
 * Every context is made in code: the group variant, zero-copy off (the pinned pipeline and its
 * device buffers run), no program cache (the simulator compiles the source), and
 *   - a row per group (T = G = 16): rows shorter than, as long as and longer than the group;
 *   - four rows per group (G = 32, T = 8) with 2 KiB blocks: partial groups, rows past the
 *     block's end, and batches streamed in several blocks (chunk sums continued across blocks);
 *   - G = 16 and G = 256 (the tuning table's GPU default) with T chosen from c per call, as a GPU
 *     runs them (rows of 8 to 16 classes through the group's local tile: 5 × 16, and 37 × 10 at
 *     G = 16). (Oclgrind's device reports every device type, CPU included, so the library's
 *     own choice would be the CPU row of the table: the group size is set here.)
 *   - the item variant, PoCL's, on rows of 10 to 300 classes: the short-row kernel (8 rows an
 *     item, its label gathers and scatters) and the row kernel's shortest rows, where an index
 *     bug would write into the next item's rows (a race Oclgrind reports; PoCL's results may
 *     still come out right).
 * On each: every loss and storage type and option, lse, argmax, correct and bias_grad, every
 * reduction, in-place gradients, a batch long enough for a two-stage reduction and several bias
 * chunks, the strided layout of ex->inner (softmax_strided.cl), and the _mem entries (label_stats,
 * bad labels counted on the device).
 *
 * After the five configurations, units of their own context each (configuration 5 for --config):
 * the fused linear + cross-entropy (clxent_linear_xent(_ex): kernels/linear_xent.cl and
 * linear_products.cl) on tiny shapes with blocks of logits of a few rows × classes, the blocks kept
 * from the forward pass (host/linear.c), float32 and 16-bit; and the vocabulary slices
 * (clxent_softmax_slice_stats/_grad: kernels/softmax_slice.cl) of a 37-class batch in several
 * streaming blocks. (clxent_softmax_xent_part launches softmax_xent.cl's kernels under NONE, as
 * the units above do: nothing of its own to run here.)
 *
 * Usage: oclgrind_kernels [--require-device NAME] [--config K | --unit K | --units | --units-uninitialized]
 *   --require-device  fail unless the device's name contains NAME (the wrapper: "Oclgrind")
 *   --config          run only configuration K (0-based), for debugging
 *   --unit            run only unit K, one call or a few (0-based; a fresh context, as run alone)
 *   --units           print the number of units
 *   --units-uninitialized  print the number of units that tests/oclgrind.sh's --uninitialized pass
 *                     runs: those of the group configurations, before the item configuration's
 *                     and the linear and slice units, on which Oclgrind 21.10's uninitialised-value
 *                     checker itself crashes (tests/oclgrind.sh)
 * Exit status 0: every result matched; 1: a mismatch or a failed call; 2: bad usage.
 */
#define CLXENT_EXPERIMENTAL_API /* clxent_tuning */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clxent_cl.h"
#include "reference.h"

static int failures;
static char what[256]; /* the case being run, for messages */

/* Everything the program reports goes to stdout: under Oclgrind, stderr carries Oclgrind's
 * messages alone, and tests/oclgrind.sh fails on any. */
#define FAIL(...)                         \
  do {                                    \
    ++failures;                           \
    printf("FAIL %s: ", what);            \
    printf(__VA_ARGS__);                  \
    putchar('\n');                        \
    fflush(stdout);                       \
  } while (0)

static void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    printf("malloc(%zu) failed\n", bytes);
    exit(1);
  }
  return p;
}

/* ---------------------------------------------------------------- deterministic inputs */

static uint64_t rng_state = 1;
static double uniform(double lo, double hi) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return lo + (hi - lo) * (double)(z >> 11) * 0x1p-53;
}
static uint32_t below(uint32_t bound) { return (uint32_t)uniform(0, bound) % bound; }

/* Rows of a probability distribution, about a third of them zero. */
static void distribution_rows(float *p, size_t n, size_t c) {
  for (size_t i = 0; i < n; ++i) {
    double s = 0;
    for (size_t j = 0; j < c; ++j) s += p[i * c + j] = uniform(0, 1) < 0.3 ? 0.0f : (float)uniform(0.01, 1);
    if (s == 0) p[i * c] = 1.0f, s = 1;
    for (size_t j = 0; j < c; ++j) p[i * c + j] = (float)(p[i * c + j] / s);
  }
}

/* ---------------------------------------------------------------- 16-bit storage, independently */

static double storage_rtol(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 1e-4 : t == CLXENT_FLOAT16 ? 1.5e-3 : 8e-3; }

/* ---------------------------------------------------------------- comparisons */

/* got[k] ≈ ref[k] within atol + rtol·|ref|, NaN only where ref is NaN; the first mismatch is named. */
static void check_close(const float *got, const double *ref, size_t k, double atol, double rtol, const char *name) {
  for (size_t i = 0; i < k; ++i) {
    const double g = got[i], r = ref[i];
    const int ok = isnan(r) ? isnan(g) : isinf(r) ? g == r : !isnan(g) && fabs(g - r) <= atol + rtol * fabs(r);
    if (!ok) {
      FAIL("%s[%zu]: got %.9g, reference %.9g (atol %g, rtol %g)", name, i, g, r, atol, rtol);
      return;
    }
  }
}

static void check_status(clxent_ctx *ctx, clxent_status st, const char *call) {
  if (st != CLXENT_OK) FAIL("%s: %s: %s", call, clxent_status_str(st), clxent_last_error(ctx));
}

/* ---------------------------------------------------------------- units */

/* Every call (or group of calls) is a unit, numbered in the order they run. --unit K runs unit K
 * alone: Oclgrind's --uninitialized check needs a process per unit (tests/oclgrind.sh). */
static long only_unit = -1; /* -1: every unit */
static long next_unit;
static int take_unit(void) { return only_unit < 0 || next_unit++ == only_unit; }

/* ---------------------------------------------------------------- the host-pointer losses */

enum kind { HARD, SOFT, SIGMOID, BCE };
enum grad_mode { GRAD_NONE, GRAD_SEPARATE, GRAD_IN_PLACE };
static const char *const kind_names[] = {"hard", "soft", "sigmoid", "bce"};
static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const reduction_names[] = {"mean", "sum", "none"};

typedef struct loss_case {
  enum kind kind;
  clxent_dtype dtype;
  clxent_reduction reduction;
  enum grad_mode gm;
  int weights, lse, bias; /* class_weight (softmax) or pos_weight (binary); the extra outputs */
  float smoothing, z_loss, softcap;
  int32_t ignore_index;
  int upstream; /* 1: opts->grad_output (one g, or NONE's per-value g_i); 2: also a mean_denominator */
} loss_case;

/* Runs one call on random inputs and checks every output against the reference. */
static void run_loss(clxent_ctx *ctx, size_t n, size_t c, const loss_case *k, uint64_t seed) {
  const size_t nc = n * c, eb = ref_dtype_bytes(k->dtype);
  const int softmax = k->kind == HARD || k->kind == SOFT;
  snprintf(what, sizeof what, "%s %zux%zu %s %s grad=%s%s%s%s eps=%g z=%g cap=%g ignore=%d upstream=%d",
           kind_names[k->kind], n, c, dtype_names[k->dtype], reduction_names[k->reduction],
           k->gm == GRAD_NONE ? "none" : k->gm == GRAD_SEPARATE ? "separate" : "in-place", k->weights ? " weights" : "",
           k->lse ? " lse" : "", k->bias ? " bias" : "", (double)k->smoothing, (double)k->z_loss, (double)k->softcap,
           (int)k->ignore_index, k->upstream);
  rng_state = seed;
  unsigned char *in = xmalloc(nc * eb), *aux = k->kind == HARD ? NULL : xmalloc(nc * eb);
  float *x = xmalloc(nc * sizeof(float)), *t = aux ? xmalloc(nc * sizeof(float)) : NULL;
  int32_t *labels = k->kind == HARD ? xmalloc(n * sizeof(int32_t)) : NULL;
  for (size_t e = 0; e < nc; ++e) {
    ref_encode(in, e, (float)(k->kind == BCE ? uniform(0, 1) : uniform(-8, 8)), k->dtype);
    x[e] = ref_decode(in, e, k->dtype);
  }
  if (softmax && n > 2 && c > 1) /* argmax: a tie between the row's first and last values (the first wins) */
    for (size_t e = 2 * c; e < 3 * c; e += c - 1) ref_encode(in, e, 8.5f, k->dtype), x[e] = 8.5f;
  if (k->kind == SOFT) {
    float *p = xmalloc(nc * sizeof(float));
    distribution_rows(p, n, c);
    for (size_t e = 0; e < nc; ++e) ref_encode(aux, e, p[e], k->dtype), t[e] = ref_decode(aux, e, k->dtype);
    free(p);
  } else if (aux) {
    for (size_t e = 0; e < nc; ++e) ref_encode(aux, e, (float)uniform(0, 1), k->dtype), t[e] = ref_decode(aux, e, k->dtype);
  }
  if (labels) /* about one row in six ignored, the first row always (an ignored row in the first group) */
    for (size_t i = 0; i < n; ++i)
      labels[i] = (n > 2 && (i == 0 || uniform(0, 1) < 0.15)) ? k->ignore_index : (int32_t)below((uint32_t)c);
  float *w = NULL;
  if (k->weights) {
    w = xmalloc(c * sizeof(float));
    for (size_t j = 0; j < c; ++j) w[j] = (float)uniform(0.2, 3.0);
    if (c > 2) w[1] = 0.0f;
  }
  clxent_opts o = clxent_opts_default();
  o.reduction = k->reduction, o.ignore_index = k->ignore_index;
  o.label_smoothing = k->smoothing, o.z_loss = k->z_loss, o.softcap = k->softcap;
  if (softmax) o.class_weight = w; else o.pos_weight = w;
  float *g_up = NULL; /* the upstream gradient: of both signs and 0 */
  if (k->upstream) {
    const size_t count = k->reduction == CLXENT_NONE ? (softmax ? n : nc) : 1;
    g_up = xmalloc(count * sizeof(float));
    for (size_t e = 0; e < count; ++e) g_up[e] = e % 7 == 3 ? 0.0f : (float)uniform(-2, 2);
    o.grad_output = g_up;
  }
  if (k->upstream == 2) o.mean_denominator = 0.5 * (double)(softmax ? n : nc) + 3;

  const size_t loss_count = k->reduction == CLXENT_NONE ? (softmax ? n : nc) : 1;
  float *loss = xmalloc(loss_count * sizeof(float)), *lse = k->lse ? xmalloc(n * sizeof(float)) : NULL;
  float *bias = k->bias ? xmalloc(c * sizeof(float)) : NULL;
  /* the softmax cases with lse ask for the argmax too (and hard labels for correct) */
  int32_t *argmax = softmax && k->lse ? xmalloc(n * sizeof(int32_t)) : NULL;
  uint64_t correct = UINT64_MAX;
  if (argmax) for (size_t i = 0; i < n; ++i) argmax[i] = -7;
  unsigned char *grad = k->gm == GRAD_SEPARATE ? xmalloc(nc * eb) : k->gm == GRAD_IN_PLACE ? in : NULL;
  for (size_t i = 0; i < loss_count; ++i) loss[i] = NAN;
  if (lse) for (size_t i = 0; i < n; ++i) lse[i] = NAN;
  if (bias) for (size_t j = 0; j < c; ++j) bias[j] = NAN;
  if (k->gm == GRAD_SEPARATE) memset(grad, 0xFF, nc * eb); /* NaN in every type: an unwritten element fails */

  clxent_ex ex = clxent_ex_default();
  ex.dtype = k->dtype, ex.lse = lse, ex.bias_grad = bias, ex.argmax = argmax;
  if (argmax && k->kind == HARD) ex.correct = &correct;
  clxent_status st;
  switch (k->kind) {
    case HARD: st = clxent_softmax_xent_ex(ctx, n, c, in, labels, &o, &ex, loss, grad); break;
    case SOFT: st = clxent_softmax_xent_soft_ex(ctx, n, c, in, aux, &o, &ex, loss, grad); break;
    case SIGMOID: st = clxent_sigmoid_xent_ex(ctx, n, c, in, aux, &o, &ex, loss, grad); break;
    default: st = clxent_bce_ex(ctx, n, c, in, aux, &o, &ex, loss, grad); break;
  }
  check_status(ctx, st, "the call");
  if (st == CLXENT_OK) {
    ref_out r = {.rows = xmalloc((softmax ? n : nc) * sizeof(double)),
                 .grad = k->gm == GRAD_NONE ? NULL : xmalloc(nc * sizeof(double)),
                 .lse = lse ? xmalloc(n * sizeof(double)) : NULL,
                 .bias = bias ? xmalloc(c * sizeof(double)) : NULL};
    switch (k->kind) {
      case HARD: ref_softmax_xent(n, c, x, labels, &o, &r); break;
      case SOFT: ref_softmax_xent_soft(n, c, x, t, &o, &r); break;
      case SIGMOID: ref_sigmoid_xent(n, c, x, t, &o, &r); break;
      default: ref_bce(n, c, x, t, &o, &r); break;
    }
    if (r.grad && k->dtype == CLXENT_FLOAT16) /* beyond half's range the stored gradient is ±inf */
      for (size_t e = 0; e < nc; ++e)
        if (fabs(r.grad[e]) >= 65520.0) r.grad[e] = copysign(INFINITY, r.grad[e]);
    const double tol = 3e-5 * (1.0 + log((double)c)) * (1.0 + 20.0 * k->z_loss);
    if (k->reduction == CLXENT_NONE) check_close(loss, r.rows, loss_count, tol, tol, "loss");
    else check_close(loss, &r.loss, 1, tol, tol, "loss");
    if (lse) check_close(lse, r.lse, n, 1e-5, 1e-5, "lse");
    if (argmax) {
      int32_t *want = xmalloc(n * sizeof(int32_t));
      ref_argmax(n, c, x, want);
      for (size_t i = 0; i < n; ++i)
        if (argmax[i] != want[i]) {
          FAIL("argmax[%zu] = %d, reference %d", i, (int)argmax[i], (int)want[i]);
          break;
        }
      if (k->kind == HARD && correct != ref_correct(n, want, labels, k->ignore_index))
        FAIL("correct = %llu, reference %llu", (unsigned long long)correct,
             (unsigned long long)ref_correct(n, want, labels, k->ignore_index));
      free(want);
    }
    if (r.grad) {
      const double gmax = r.gscale * (1.0 + log((double)c));
      float *g = xmalloc(nc * sizeof(float));
      for (size_t e = 0; e < nc; ++e) g[e] = ref_decode(grad, e, k->dtype);
      check_close(g, r.grad, nc, 2e-6 * gmax + (k->dtype == CLXENT_FLOAT16 ? 6e-8 : 0), storage_rtol(k->dtype), "grad");
      if (bias) { /* Σ_i of the stored gradient, which the library sums in float32 */
        double *sum = xmalloc(c * sizeof(double));
        for (size_t j = 0; j < c; ++j) {
          sum[j] = 0;
          for (size_t i = 0; i < n; ++i) sum[j] += g[i * c + j];
        }
        check_close(bias, sum, c, 1e-6 * (double)n * gmax, 1e-4, "bias_grad");
        free(sum);
      }
      free(g);
    }
    free(r.rows), free(r.grad), free(r.lse), free(r.bias);
  }
  if (k->gm != GRAD_IN_PLACE)
    for (size_t e = 0; e < nc; ++e)
      if (ref_decode(in, e, k->dtype) != x[e]) {
        FAIL("input %zu modified", e);
        break;
      }
  free(in), free(aux), free(x), free(t), free(labels), free(w), free(loss), free(lse), free(bias), free(g_up),
      free(argmax);
  if (k->gm == GRAD_SEPARATE) free(grad);
}

/* The information measures (row_information): entropy, cross-entropy, KL, with zeros in p. */
static void run_information(clxent_ctx *ctx, size_t n, size_t c, uint64_t seed) {
  rng_state = seed;
  float *p = xmalloc(n * c * sizeof(float)), *q = xmalloc(n * c * sizeof(float)), *out = xmalloc(n * sizeof(float));
  double *ref = xmalloc(n * sizeof(double));
  distribution_rows(p, n, c);
  for (size_t e = 0; e < n * c; ++e) q[e] = (float)uniform(0.05, 1); /* q > 0: every measure finite */
  static const char *const names[] = {"entropy", "cross_entropy", "kl_div"};
  for (int m = 0; m < 3; ++m) {
    snprintf(what, sizeof what, "%s %zux%zu", names[m], n, c);
    for (size_t i = 0; i < n; ++i) out[i] = NAN;
    const clxent_status st = m == 0 ? clxent_entropy(ctx, n, c, p, out)
                             : m == 1 ? clxent_cross_entropy(ctx, n, c, p, q, out)
                                      : clxent_kl_div(ctx, n, c, p, q, out);
    check_status(ctx, st, "the call");
    if (st != CLXENT_OK) continue;
    ref_information((enum ref_information_kind)m, n, c, p, q, ref);
    check_close(out, ref, n, 1e-5 * (1.0 + log((double)c)), 1e-5, "out");
  }
  free(p), free(q), free(out), free(ref);
}

/* Every loss, storage type and option on one shape. */
#define SHAPE_UNITS 15 /* the cases below and the information measures */
static void run_shape(clxent_ctx *ctx, size_t n, size_t c, uint64_t seed) {
  static const loss_case cases[] = {
      /* kind     dtype            reduction    grad           w  lse bias  eps    z      cap   ignore up */
      {HARD, CLXENT_FLOAT32, CLXENT_MEAN, GRAD_SEPARATE, 0, 1, 1, 0.0f, 0.0f, 0.0f, -100, 0},
      {HARD, CLXENT_FLOAT32, CLXENT_MEAN, GRAD_IN_PLACE, 1, 1, 1, 0.1f, 0.0f, 0.0f, 2, 2},
      {HARD, CLXENT_FLOAT16, CLXENT_SUM, GRAD_SEPARATE, 1, 0, 1, 0.05f, 1e-3f, 4.0f, -100, 1},
      {HARD, CLXENT_BFLOAT16, CLXENT_NONE, GRAD_IN_PLACE, 0, 1, 0, 0.0f, 1e-2f, 3.0f, -1, 1},
      {HARD, CLXENT_FLOAT32, CLXENT_NONE, GRAD_NONE, 1, 1, 0, 0.2f, 0.0f, 0.0f, -100, 0},
      {SOFT, CLXENT_FLOAT32, CLXENT_MEAN, GRAD_SEPARATE, 1, 1, 1, 0.1f, 0.0f, 0.0f, -100, 2},
      {SOFT, CLXENT_BFLOAT16, CLXENT_SUM, GRAD_IN_PLACE, 0, 1, 1, 0.0f, 1e-3f, 5.0f, -100, 1},
      {SOFT, CLXENT_FLOAT16, CLXENT_NONE, GRAD_NONE, 0, 1, 0, 0.0f, 0.0f, 0.0f, -100, 0},
      {SIGMOID, CLXENT_FLOAT32, CLXENT_MEAN, GRAD_SEPARATE, 1, 0, 1, 0.0f, 0.0f, 0.0f, -100, 2},
      {SIGMOID, CLXENT_FLOAT16, CLXENT_SUM, GRAD_IN_PLACE, 0, 0, 0, 0.0f, 0.0f, 0.0f, -100, 0},
      {SIGMOID, CLXENT_BFLOAT16, CLXENT_NONE, GRAD_SEPARATE, 1, 0, 1, 0.0f, 0.0f, 0.0f, -100, 1},
      {BCE, CLXENT_FLOAT32, CLXENT_MEAN, GRAD_SEPARATE, 0, 0, 1, 0.0f, 0.0f, 0.0f, -100, 0},
      {BCE, CLXENT_FLOAT16, CLXENT_NONE, GRAD_IN_PLACE, 1, 0, 0, 0.0f, 0.0f, 0.0f, -100, 1},
      {BCE, CLXENT_BFLOAT16, CLXENT_SUM, GRAD_NONE, 0, 0, 0, 0.0f, 0.0f, 0.0f, -100, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k)
    if (take_unit()) run_loss(ctx, n, c, &cases[k], seed * 100 + k);
  if (take_unit()) run_information(ctx, n, c, seed);
}

/* ---------------------------------------------------------------- the strided layout (ex->inner) */

/* A softmax loss (HARD or SOFT) on [n][c][S] (kernels/softmax_strided.cl and column_partial_strided),
 * against the reference of the transposed batch [n·S][c]. */
static void run_strided(clxent_ctx *ctx, size_t n, size_t c, size_t S, const loss_case *k, uint64_t seed) {
  const size_t rows = n * S, nc = rows * c, eb = ref_dtype_bytes(k->dtype);
  snprintf(what, sizeof what, "%s strided n=%zu c=%zu S=%zu %s %s grad=%s%s%s%s eps=%g z=%g cap=%g upstream=%d",
           kind_names[k->kind], n, c, S, dtype_names[k->dtype], reduction_names[k->reduction],
           k->gm == GRAD_NONE ? "none" : k->gm == GRAD_SEPARATE ? "separate" : "in-place", k->weights ? " weights" : "",
           k->lse ? " lse" : "", k->bias ? " bias" : "", (double)k->smoothing, (double)k->z_loss, (double)k->softcap,
           k->upstream);
  rng_state = seed;
  unsigned char *in = xmalloc(nc * eb), *aux = k->kind == SOFT ? xmalloc(nc * eb) : NULL;
  float *x = xmalloc(nc * sizeof(float)), *t = aux ? xmalloc(nc * sizeof(float)) : NULL; /* transposed */
  int32_t *labels = k->kind == HARD ? xmalloc(rows * sizeof(int32_t)) : NULL;
  float *p = aux ? xmalloc(nc * sizeof(float)) : NULL;
  if (p) distribution_rows(p, rows, c);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < c; ++j)
      for (size_t s = 0; s < S; ++s) {
        const size_t e = (i * c + j) * S + s, et = (i * S + s) * c + j;
        ref_encode(in, e, (float)uniform(-8, 8), k->dtype), x[et] = ref_decode(in, e, k->dtype);
        if (p) ref_encode(aux, e, p[et], k->dtype), t[et] = ref_decode(aux, e, k->dtype);
      }
  if (labels)
    for (size_t r = 0; r < rows; ++r)
      labels[r] = (r == 0 || uniform(0, 1) < 0.15) ? k->ignore_index : (int32_t)below((uint32_t)c);
  float *w = NULL;
  if (k->weights) {
    w = xmalloc(c * sizeof(float));
    for (size_t j = 0; j < c; ++j) w[j] = (float)uniform(0.2, 3.0);
  }
  clxent_opts o = clxent_opts_default();
  o.reduction = k->reduction, o.ignore_index = k->ignore_index, o.class_weight = w;
  o.label_smoothing = k->smoothing, o.z_loss = k->z_loss, o.softcap = k->softcap;
  float *g_up = NULL; /* the upstream gradient, one per row (r = i·S + s) under NONE */
  if (k->upstream) {
    const size_t count = k->reduction == CLXENT_NONE ? rows : 1;
    g_up = xmalloc(count * sizeof(float));
    for (size_t e = 0; e < count; ++e) g_up[e] = e % 7 == 3 ? 0.0f : (float)uniform(-2, 2);
    o.grad_output = g_up;
  }
  if (k->upstream == 2) o.mean_denominator = 0.5 * (double)rows + 3;
  const size_t loss_count = k->reduction == CLXENT_NONE ? rows : 1;
  float *loss = xmalloc(loss_count * sizeof(float)), *lse = k->lse ? xmalloc(rows * sizeof(float)) : NULL;
  float *bias = k->bias ? xmalloc(c * sizeof(float)) : NULL;
  unsigned char *grad = k->gm == GRAD_SEPARATE ? xmalloc(nc * eb) : k->gm == GRAD_IN_PLACE ? in : NULL;
  for (size_t r = 0; r < loss_count; ++r) loss[r] = NAN;
  if (lse) for (size_t r = 0; r < rows; ++r) lse[r] = NAN;
  if (bias) for (size_t j = 0; j < c; ++j) bias[j] = NAN;
  if (k->gm == GRAD_SEPARATE) memset(grad, 0xFF, nc * eb);
  clxent_ex ex = clxent_ex_default();
  ex.dtype = k->dtype, ex.lse = lse, ex.bias_grad = bias, ex.inner = S;
  const clxent_status st = k->kind == SOFT ? clxent_softmax_xent_soft_ex(ctx, n, c, in, aux, &o, &ex, loss, grad)
                                           : clxent_softmax_xent_ex(ctx, n, c, in, labels, &o, &ex, loss, grad);
  check_status(ctx, st, "the call");
  if (st == CLXENT_OK) {
    ref_out r = {.rows = xmalloc(rows * sizeof(double)), .grad = grad ? xmalloc(nc * sizeof(double)) : NULL,
                 .lse = lse ? xmalloc(rows * sizeof(double)) : NULL, .bias = bias ? xmalloc(c * sizeof(double)) : NULL};
    if (k->kind == SOFT) ref_softmax_xent_soft(rows, c, x, t, &o, &r);
    else ref_softmax_xent(rows, c, x, labels, &o, &r);
    const double tol = 3e-5 * (1.0 + log((double)c)) * (1.0 + 20.0 * k->z_loss);
    if (k->reduction == CLXENT_NONE) check_close(loss, r.rows, rows, tol, tol, "loss");
    else check_close(loss, &r.loss, 1, tol, tol, "loss");
    if (lse) check_close(lse, r.lse, rows, 1e-5, 1e-5, "lse");
    if (r.grad) {
      const double gmax = r.gscale * (1.0 + log((double)c));
      float *g = xmalloc(nc * sizeof(float));
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < c; ++j)
          for (size_t s = 0; s < S; ++s) g[(i * S + s) * c + j] = ref_decode(grad, (i * c + j) * S + s, k->dtype);
      check_close(g, r.grad, nc, 2e-6 * gmax + (k->dtype == CLXENT_FLOAT16 ? 6e-8 : 0), storage_rtol(k->dtype), "grad");
      if (bias) {
        double *sum = xmalloc(c * sizeof(double));
        for (size_t j = 0; j < c; ++j) {
          sum[j] = 0;
          for (size_t q = 0; q < rows; ++q) sum[j] += g[q * c + j];
        }
        check_close(bias, sum, c, 1e-6 * (double)rows * gmax, 1e-4, "bias_grad");
        free(sum);
      }
      free(g);
    }
    free(r.rows), free(r.grad), free(r.lse), free(r.bias);
  }
  free(in), free(aux), free(x), free(t), free(p), free(labels), free(w), free(loss), free(lse), free(bias), free(g_up);
  if (k->gm == GRAD_SEPARATE) free(grad);
}

/* Strided units: S with a partial vector at its end, S = 3 (each item all tail), several vectors
 * and a tail; the 2 KiB blocks of configuration 1 cut the 200 rows of the first into 3 blocks. */
#define STRIDED_UNITS 3
static void run_strided_units(clxent_ctx *ctx, uint64_t seed) {
  static const loss_case cases[STRIDED_UNITS] = {
      /* kind     dtype            reduction    grad           w  lse bias  eps    z      cap   ignore upstream */
      {HARD, CLXENT_FLOAT32, CLXENT_MEAN, GRAD_SEPARATE, 1, 1, 1, 0.1f, 0.0f, 0.0f, -100, 2},
      {SOFT, CLXENT_BFLOAT16, CLXENT_NONE, GRAD_IN_PLACE, 1, 1, 1, 0.0f, 1e-3f, 4.0f, -100, 1},
      {HARD, CLXENT_FLOAT16, CLXENT_NONE, GRAD_IN_PLACE, 0, 1, 1, 0.0f, 1e-2f, 3.0f, 1, 1},
  };
  static const size_t shapes[STRIDED_UNITS][3] = {{40, 6, 5}, {2, 5, 3}, {3, 7, 19}};
  for (size_t k = 0; k < STRIDED_UNITS; ++k)
    if (take_unit()) run_strided(ctx, shapes[k][0], shapes[k][1], shapes[k][2], &cases[k], seed * 10 + k);
}

/* ---------------------------------------------------------------- the _mem entries */

static cl_context mem_context;
static cl_command_queue mem_queue;

static cl_mem upload(const void *data, size_t bytes) {
  cl_int err;
  cl_mem m = clCreateBuffer(mem_context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, (void *)data, &err);
  if (err != CL_SUCCESS) {
    printf("clCreateBuffer: %d\n", err);
    exit(1);
  }
  return m;
}
/* An output buffer, filled with NaN so that an element left unwritten fails. Filled from the host,
 * not by clEnqueueFillBuffer: after a fill, Oclgrind 21.10's --uninitialized takes the kernels'
 * later writes to the buffer for uninitialised (a 20-line OpenCL program shows it). */
static cl_mem output(size_t bytes) {
  float *nan = xmalloc(bytes);
  for (size_t k = 0; k < bytes / sizeof(float); ++k) nan[k] = NAN;
  cl_mem m = upload(nan, bytes);
  free(nan);
  return m;
}
static void download(cl_mem m, void *out, size_t bytes) {
  const cl_int err = clEnqueueReadBuffer(mem_queue, m, CL_TRUE, 0, bytes, out, 0, NULL, NULL);
  if (err != CL_SUCCESS) FAIL("clEnqueueReadBuffer: %d", err);
}

/* The _mem units: softmax_xent_mem with bad labels (found and counted on the device, by
 * label_stats): those rows NaN, the others as the reference with them ignored; the same labels
 * made good, in place; then softmax_xent_soft_mem, sigmoid_xent_mem and bce_mem. Every unit
 * makes its inputs from the seed alone, so that any one can run by itself (--unit). */
#define MEM_UNITS 5
static void run_mem(clxent_ctx *ctx, size_t n, size_t c, uint64_t seed) {
  mem_queue = clxent_queue(ctx);
  clGetCommandQueueInfo(mem_queue, CL_QUEUE_CONTEXT, sizeof mem_context, &mem_context, NULL);
  rng_state = seed;
  const size_t nc = n * c;
  float *z = xmalloc(nc * sizeof(float)), *t = xmalloc(nc * sizeof(float)), *g = xmalloc(nc * sizeof(float));
  float *w = xmalloc(c * sizeof(float)), *rows = xmalloc(n * sizeof(float)), *lse = xmalloc(n * sizeof(float));
  float *bias = xmalloc(c * sizeof(float)), *probs = xmalloc(nc * sizeof(float)), loss;
  int32_t *labels = xmalloc(n * sizeof(int32_t)), *good = xmalloc(n * sizeof(int32_t));
  for (size_t e = 0; e < nc; ++e) z[e] = (float)uniform(-8, 8), probs[e] = (float)uniform(0, 1);
  for (size_t j = 0; j < c; ++j) w[j] = (float)uniform(0.2, 3.0);
  distribution_rows(t, n, c); /* soft targets, and binary targets in [0, 1] */
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double u = uniform(0, 1);
    labels[i] = u < 0.15 ? -100 : (int32_t)below((uint32_t)c);
    if (i == 1 || (i > 3 && u > 0.9)) labels[i] = i % 2 ? (int32_t)c : -7; /* out of range: bad */
    good[i] = labels[i] < 0 || (size_t)labels[i] >= c ? -100 : labels[i];
    bad += good[i] != labels[i];
  }
  cl_mem zm = upload(z, nc * sizeof(float)), lm = upload(labels, n * sizeof(int32_t));
  cl_mem gm = output(nc * sizeof(float)), lossm = output(n * sizeof(float)), lsem = output(n * sizeof(float));
  cl_mem biasm = output(c * sizeof(float)), badm = output(sizeof(cl_uint));
  ref_out r = {.rows = xmalloc(nc * sizeof(double)), .grad = xmalloc(nc * sizeof(double)), .lse = xmalloc(n * sizeof(double)),
               .bias = xmalloc(c * sizeof(double))};
  clxent_opts o = clxent_opts_default();
  o.class_weight = w, o.label_smoothing = 0.1f;
  clxent_mem_ex x = clxent_mem_ex_default();
  x.lse = lsem, x.bias_grad = biasm, x.bad_labels = badm;
  cl_uint bad_count = 0;

  if (take_unit()) { /* MEAN with bad labels: the loss NaN, their rows NaN, the rest as with them ignored */
    snprintf(what, sizeof what, "softmax_xent_mem %zux%zu mean, %zu bad labels", n, c, bad);
    cl_event done = NULL;
    check_status(ctx, clxent_softmax_xent_mem(ctx, n, c, zm, lm, &o, &x, lossm, gm, 0, NULL, &done), "the call");
    if (done) clWaitForEvents(1, &done), clReleaseEvent(done);
    download(badm, &bad_count, sizeof bad_count);
    download(lossm, &loss, sizeof loss);
    download(gm, g, nc * sizeof(float));
    download(lsem, lse, n * sizeof(float));
    if (bad_count != bad) FAIL("bad_labels = %u, expected %zu", bad_count, bad);
    if (!isnan(loss)) FAIL("loss %g with bad labels, expected NaN", (double)loss);
    ref_softmax_xent(n, c, z, good, &o, &r);
    for (size_t i = 0; i < n; ++i)
      if (good[i] != labels[i]) { /* bad: NaN, as the header says */
        for (size_t j = 0; j < c; ++j) r.grad[i * c + j] = NAN;
        r.lse[i] = NAN;
      }
    check_close(g, r.grad, nc, 2e-6 * r.gscale * (1.0 + log((double)c)), 1e-4, "grad");
    check_close(lse, r.lse, n, 1e-5, 1e-5, "lse");
  }
  if (take_unit()) { /* the labels made good, NONE and in place: per-row losses, lse and bias gradient */
    snprintf(what, sizeof what, "softmax_xent_mem %zux%zu none in-place z-loss", n, c);
    cl_mem gl = upload(good, n * sizeof(int32_t)), zi = upload(z, nc * sizeof(float));
    o.reduction = CLXENT_NONE, o.z_loss = 1e-3f;
    check_status(ctx, clxent_softmax_xent_mem(ctx, n, c, zi, gl, &o, &x, lossm, zi, 0, NULL, NULL), "the call");
    download(badm, &bad_count, sizeof bad_count);
    download(lossm, rows, n * sizeof(float));
    download(zi, g, nc * sizeof(float));
    download(biasm, bias, c * sizeof(float));
    if (bad_count != 0) FAIL("bad_labels = %u, expected 0", bad_count);
    ref_softmax_xent(n, c, z, good, &o, &r);
    const double gmax = r.gscale * (1.0 + log((double)c));
    check_close(rows, r.rows, n, 1e-4, 1e-4, "loss");
    check_close(g, r.grad, nc, 2e-6 * gmax, 1e-4, "grad");
    check_close(bias, r.bias, c, 3e-6 * (double)n * gmax, 1e-4, "bias_grad");
    clReleaseMemObject(gl), clReleaseMemObject(zi);
  }
  /* soft targets, sigmoid on the logits and bce on probabilities: MEAN with the bias gradient,
   * separate gradient */
  cl_mem tm = upload(t, nc * sizeof(float)), pm = upload(probs, nc * sizeof(float));
  for (int kind = SOFT; kind <= BCE; ++kind) {
    if (!take_unit()) continue;
    snprintf(what, sizeof what, "%s_mem %zux%zu mean", kind_names[kind], n, c);
    clxent_opts ko = clxent_opts_default();
    clxent_mem_ex kx = clxent_mem_ex_default();
    kx.bias_grad = biasm;
    if (kind == SOFT) kx.lse = lsem, ko.class_weight = w, ko.softcap = 4.0f;
    else ko.pos_weight = w;
    const clxent_status st =
        kind == SOFT      ? clxent_softmax_xent_soft_mem(ctx, n, c, zm, tm, &ko, &kx, lossm, gm, 0, NULL, NULL)
        : kind == SIGMOID ? clxent_sigmoid_xent_mem(ctx, n, c, zm, tm, &ko, &kx, lossm, gm, 0, NULL, NULL)
                          : clxent_bce_mem(ctx, n, c, pm, tm, &ko, &kx, lossm, gm, 0, NULL, NULL);
    check_status(ctx, st, "the call");
    download(lossm, &loss, sizeof loss);
    download(gm, g, nc * sizeof(float));
    download(biasm, bias, c * sizeof(float));
    if (kind == SOFT) download(lsem, lse, n * sizeof(float));
    if (kind == SOFT) ref_softmax_xent_soft(n, c, z, t, &ko, &r);
    else if (kind == SIGMOID) ref_sigmoid_xent(n, c, z, t, &ko, &r);
    else ref_bce(n, c, probs, t, &ko, &r);
    const double gmax = r.gscale * (1.0 + log((double)c));
    check_close(&loss, &r.loss, 1, 1e-4, 1e-4, "loss");
    check_close(g, r.grad, nc, 2e-6 * gmax, 1e-4, "grad");
    check_close(bias, r.bias, c, 3e-6 * (double)n * gmax, 1e-4, "bias_grad");
    if (kind == SOFT) check_close(lse, r.lse, n, 1e-5, 1e-5, "lse");
  }
  clFinish(mem_queue);
  clReleaseMemObject(zm), clReleaseMemObject(lm), clReleaseMemObject(gm), clReleaseMemObject(lossm);
  clReleaseMemObject(lsem), clReleaseMemObject(biasm), clReleaseMemObject(badm), clReleaseMemObject(tm);
  clReleaseMemObject(pm);
  free(z), free(t), free(g), free(w), free(rows), free(lse), free(bias), free(probs), free(labels), free(good);
  free(r.rows), free(r.grad), free(r.lse), free(r.bias);
}

/* ---------------------------------------------------------------- configurations */

typedef struct config_case {
  const char *name;
  size_t group_size, row_threads; /* 0: the library's choice */
  uint64_t block_bytes;           /* 0: the library's choice */
  int item;                       /* the row-per-item variant (the CPU's) instead of the group one */
} config_case;

static const config_case configs[] = {
    {"G = 16, a row per group (T = 16)", 16, 16, 0, 0},
    {"G = 32, 4 rows per group (T = 8), 2 KiB blocks", 32, 8, 2048, 0},
    {"G = 16, T from c", 16, 0, 0, 0},
    {"G = 256 (the GPU default), T from c", 256, 0, 0, 0},
    {"the item variant (CPU): short rows (c <= 64, softcap c <= 32) and the row kernel", 0, 0, 0, 1},
};
#define CONFIGS (sizeof configs / sizeof configs[0])

/* Configuration k's shapes for group size G and row threads T: rows shorter than, as long as and
 * longer than a row's items and the group; n never a multiple of the rows per group. */
static size_t config_shapes(size_t k, size_t G, size_t T, size_t shapes[][2]) {
  if (configs[k].item) { /* short rows, 8 per item: partial items, c past 32 (softcap: the row
                          * kernel), the longest short rows and the row kernel's shortest */
    const size_t item[][2] = {{37, 10}, {13, 33}, {11, 64}, {5, 65}, {2, 300}};
    memcpy(shapes, item, sizeof item);
    return sizeof item / sizeof item[0];
  }
  const size_t base[][2] = {{5, 1}, {7, 3}, {3, 17}, {5, T}, {3, T + 5}, {2, 2 * G + 3}};
  size_t count = sizeof base / sizeof base[0];
  memcpy(shapes, base, sizeof base);
  /* ten bias chunks (column_sum_group's tiles hold 8 at G = 16), two reduce stages (G·16 = 256 < 1800 values) */
  if (k == 0) shapes[count][0] = 600, shapes[count++][1] = 3;
  if (k == 1) shapes[count][0] = 70, shapes[count++][1] = 13; /* 27-row blocks: chunks cut by block ends */
  if (k == 2) shapes[count][0] = 37, shapes[count++][1] = 10; /* T = 1, the local tile (softmax_xent_hard_tile): two whole groups and a partial one */
  if (k == 3) shapes[count][0] = 2, shapes[count++][1] = 16 * G + 7; /* T = G: the longest rows */
  return count;
}
static size_t config_units(size_t k) {
  size_t shapes[8][2];
  return config_shapes(k, 1, 1, shapes) * SHAPE_UNITS + STRIDED_UNITS + MEM_UNITS;
}

static void run_config(size_t index, const char *require) {
  if (only_unit >= 0 && (only_unit < next_unit || only_unit >= next_unit + (long)config_units(index))) {
    next_unit += (long)config_units(index); /* the unit asked for is elsewhere: no context here */
    return;
  }
  const config_case *cc = &configs[index];
  clxent_tuning tuning = CLXENT_TUNING_INIT;
  const clxent_variant variant = cc->item ? CLXENT_VARIANT_ITEM : CLXENT_VARIANT_GROUP;
  tuning.variant = variant, tuning.zero_copy = CLXENT_OFF;
  tuning.group_size = cc->group_size, tuning.row_threads = cc->row_threads, tuning.block_bytes = cc->block_bytes;
  clxent_config config = CLXENT_CONFIG_INIT;
  config.cache = CLXENT_OFF, config.tuning = &tuning;
  clxent_ctx *ctx;
  snprintf(what, sizeof what, "config %zu (%s): clxent_create_ex", index, cc->name);
  const clxent_status st = clxent_create_ex(&ctx, NULL, &config);
  if (st != CLXENT_OK) {
    FAIL("%s: %s", clxent_status_str(st), clxent_last_error(NULL));
    return;
  }
  clxent_info info = CLXENT_INFO_INIT;
  clxent_get_info(ctx, 0, &info);
  printf("config %zu: %s on %s: variant %s, group size %zu, row threads %zu, zero-copy %d, from cache %d\n", index,
         cc->name, clxent_device_name(ctx), info.variant == CLXENT_VARIANT_GROUP ? "group" : "item", info.group_size,
         info.row_threads, info.zero_copy, info.program_from_cache);
  fflush(stdout);
  if (require && !strstr(clxent_device_name(ctx), require))
    FAIL("the device is \"%s\", not one named \"%s\"", clxent_device_name(ctx), require);
  if (info.variant != variant || info.zero_copy || info.program_from_cache)
    FAIL("the context is not the %s variant, copying, compiled from source", cc->item ? "item" : "group");
  const size_t G = info.group_size, T = cc->row_threads ? cc->row_threads : G;
  size_t shapes[8][2];
  const size_t count = config_shapes(index, G, T, shapes);
  for (size_t s = 0; s < count; ++s) {
    const clock_t t0 = clock();
    run_shape(ctx, shapes[s][0], shapes[s][1], 1000 * index + s);
    if (only_unit < 0)
      printf("  %zu x %zu: %.1f s CPU\n", shapes[s][0], shapes[s][1], (double)(clock() - t0) / CLOCKS_PER_SEC);
    fflush(stdout);
  }
  run_strided_units(ctx, 55 + index);
  /* label_stats: n > G; the item configuration's _mem call on short rows (T + 1 = 65 would be the
   * row kernel), where a bad label's lane gets NaN from the short kernel itself */
  run_mem(ctx, index == 0 ? 300 : 9, index == 0 ? 3 : cc->item ? 10 : T + 1, 77 + index);
  clxent_destroy(ctx);
}

/* ---------------------------------------------------------------- fused linear + cross-entropy */

/* clxent_linear_xent(_ex) (kernels/linear_xent.cl, linear_products.cl; host/linear.c) against the
 * float64 reference of tests/test_linear_xent.c: z = hidden · weightᵀ + bias in double rounded to
 * float, the reference softmax cross-entropy on it, then grad_hidden = G · W, grad_weight = Gᵀ · H,
 * grad_bias = Σ_i G in double, each element within 1e-4 of the sum of its terms' magnitudes
 * (plus the storage type's rounding). Each unit has a context of its own, the group variant as
 * above, with the block of logits (rows × classes) set small so that a call runs several row and
 * class blocks, or 0 (the tuning table's: one block at these shapes). */
enum { WANT_LOSS = 1, WANT_GH = 2, WANT_GW = 4, WANT_GB = 8, WANT_ALL = 15 };

typedef struct linear_case {
  size_t n, d, v;
  int bias, want; /* want: WANT_* (the others NULL) */
  clxent_dtype dtype;
  clxent_reduction reduction;
  int opts;             /* 0: none; 1: class weights (one 0), smoothing, z-loss, softcap, ignore_index 5; 2: smoothing */
  size_t rows, classes; /* tuning.linear_rows, linear_classes (0: the table's) */
  const char *note;
} linear_case;

static void run_linear(clxent_ctx *ctx, const linear_case *k, uint64_t seed) {
  const size_t n = k->n, d = k->d, v = k->v, eb = ref_dtype_bytes(k->dtype);
  snprintf(what, sizeof what, "linear %zux%zux%zu %s %s bias=%d want=%d opts=%d block %zux%zu%s%s", n, d, v,
           dtype_names[k->dtype], reduction_names[k->reduction], k->bias, k->want, k->opts, k->rows, k->classes,
           k->note ? ": " : "", k->note ? k->note : "");
  rng_state = seed;
  unsigned char *h = xmalloc(n * d * eb), *w = xmalloc(v * d * eb), *b = k->bias ? xmalloc(v * eb) : NULL;
  float *hf = xmalloc(n * d * sizeof(float)), *wf = xmalloc(v * d * sizeof(float)), *bf = xmalloc(v * sizeof(float));
  for (size_t e = 0; e < n * d; ++e) ref_encode(h, e, (float)uniform(-1, 1), k->dtype), hf[e] = ref_decode(h, e, k->dtype);
  for (size_t e = 0; e < v * d; ++e) ref_encode(w, e, (float)uniform(-1, 1), k->dtype), wf[e] = ref_decode(w, e, k->dtype);
  for (size_t j = 0; j < v; ++j) {
    bf[j] = 0.0f;
    if (b) ref_encode(b, j, (float)uniform(-2, 2), k->dtype), bf[j] = ref_decode(b, j, k->dtype);
  }
  const int32_t ignore = k->opts == 1 && v > 5 ? 5 : -100; /* 5: a valid class, its rows ignored */
  int32_t *labels = xmalloc(n * sizeof(int32_t));
  for (size_t i = 0; i < n; ++i) /* about one row in six ignored, the first always where n > 2 */
    labels[i] = (n > 2 && (i == 0 || uniform(0, 1) < 0.15)) ? ignore : (int32_t)below((uint32_t)v);
  float *cw = NULL;
  clxent_opts o = clxent_opts_default();
  o.reduction = k->reduction;
  if (k->opts == 1) {
    cw = xmalloc(v * sizeof(float));
    for (size_t j = 0; j < v; ++j) cw[j] = (float)uniform(0.2, 2.0);
    if (v > 3) cw[3] = 0.0f;
    o.class_weight = cw, o.label_smoothing = 0.1f, o.z_loss = 1e-3f, o.softcap = 4.0f, o.ignore_index = ignore;
  } else if (k->opts == 2) {
    o.label_smoothing = 0.2f;
  }
  const size_t nl = k->reduction == CLXENT_NONE ? n : 1;
  float *loss = xmalloc(nl * sizeof(float)), *lse = xmalloc(n * sizeof(float));
  unsigned char *gh = xmalloc(n * d * eb), *gw = xmalloc(v * d * eb), *gb = xmalloc(v * eb);
  for (size_t i = 0; i < nl; ++i) loss[i] = NAN;
  for (size_t i = 0; i < n; ++i) lse[i] = NAN;
  memset(gh, 0xFF, n * d * eb), memset(gw, 0xFF, v * d * eb), memset(gb, 0xFF, v * eb); /* NaN in every type */
  clxent_ex ex = clxent_ex_default();
  ex.dtype = k->dtype, ex.lse = lse;
  float *gh_out = k->want & WANT_GH ? (float *)(void *)gh : NULL; /* for the float32 entry */
  clxent_status st;
  if (k->dtype == CLXENT_FLOAT32 && !(k->want & WANT_LOSS)) /* the plain entry too (no lse) */
    st = clxent_linear_xent(ctx, n, d, v, hf, wf, b ? bf : NULL, labels, &o, NULL, gh_out,
                            k->want & WANT_GW ? (float *)(void *)gw : NULL, k->want & WANT_GB ? (float *)(void *)gb : NULL);
  else
    st = clxent_linear_xent_ex(ctx, n, d, v, h, w, b, labels, &o, &ex, k->want & WANT_LOSS ? loss : NULL,
                               k->want & WANT_GH ? gh : NULL, k->want & WANT_GW ? gw : NULL, k->want & WANT_GB ? gb : NULL);
  check_status(ctx, st, "the call");
  if (st == CLXENT_OK) {
    float *z = xmalloc(n * v * sizeof(float));
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < v; ++j) {
        double acc = bf[j];
        for (size_t q = 0; q < d; ++q) acc += (double)hf[i * d + q] * wf[j * d + q];
        z[i * v + j] = (float)acc;
      }
    ref_out r = {.rows = xmalloc(n * sizeof(double)), .grad = xmalloc(n * v * sizeof(double)),
                 .lse = xmalloc(n * sizeof(double))};
    ref_softmax_xent(n, v, z, labels, &o, &r);
    const double tol = 1e-4 * (1.0 + log((double)v));
    if (k->want & WANT_LOSS) {
      if (k->reduction == CLXENT_NONE) check_close(loss, r.rows, n, tol, tol, "loss");
      else check_close(loss, &r.loss, 1, tol, tol, "loss");
    }
    if ((k->want & WANT_LOSS || k->dtype != CLXENT_FLOAT32)) check_close(lse, r.lse, n, 1e-4, 1e-5, "lse");
    const double *G = r.grad;
    const double rt = k->dtype == CLXENT_FLOAT32 ? 0.0 : storage_rtol(k->dtype);
    /* three products: out[a][b] = Σ_c L[a][c] R[c][b] over the reference's G, checked elementwise */
    for (int p = 0; p < 3; ++p) {
      const int bit = p == 0 ? WANT_GH : p == 1 ? WANT_GW : WANT_GB;
      const size_t count = p == 0 ? n * d : p == 1 ? v * d : v;
      const unsigned char *out = p == 0 ? gh : p == 1 ? gw : gb;
      static const char *const names[] = {"grad_hidden", "grad_weight", "grad_bias"};
      if (!(k->want & bit)) { /* unwanted: untouched (still NaN) */
        for (size_t e = 0; e < count; ++e)
          if (!isnan(ref_decode(out, e, k->dtype))) {
            FAIL("%s written though not wanted (element %zu)", names[p], e);
            break;
          }
        continue;
      }
      for (size_t e = 0; e < count; ++e) {
        double s = 0, a = 0;
        if (p == 0) { /* row i, k: Σ_j G_ij w_jk */
          const size_t i = e / d, q = e % d;
          for (size_t j = 0; j < v; ++j) s += G[i * v + j] * wf[j * d + q], a += fabs(G[i * v + j] * wf[j * d + q]);
        } else if (p == 1) { /* class j, k: Σ_i G_ij h_ik */
          const size_t j = e / d, q = e % d;
          for (size_t i = 0; i < n; ++i) s += G[i * v + j] * hf[i * d + q], a += fabs(G[i * v + j] * hf[i * d + q]);
        } else {
          for (size_t i = 0; i < n; ++i) s += G[i * v + e], a += fabs(G[i * v + e]);
        }
        const double g = ref_decode(out, e, k->dtype);
        if (!(isnan(s) ? isnan(g) : !isnan(g) && fabs(g - s) <= 1e-4 * a + 1e-7 + rt * (fabs(s) + 1e-4 * a))) {
          FAIL("%s[%zu]: got %.9g, reference %.9g (sum of |terms| %g)", names[p], e, g, s, a);
          break;
        }
      }
    }
    free(z), free(r.rows), free(r.grad), free(r.lse);
  }
  free(h), free(w), free(b), free(hf), free(wf), free(bf), free(labels), free(cw), free(loss), free(lse), free(gh),
      free(gw), free(gb);
}

/* ---------------------------------------------------------------- vocabulary slices */

/* clxent_softmax_slice_stats and clxent_softmax_slice_grad (kernels/softmax_slice.cl, host/slice.c)
 * as tests/test_slice.c checks them: rows of c classes cut into slices; each slice's statistics
 * against float64 sums over its columns, the slices' statistics combined (as clxent_mpi combines
 * them) into each row's lse and loss against the reference of the whole rows, and each slice's
 * gradient, given the reference's lse and the batch's scales, against the reference gradient's
 * columns. */
typedef struct slice_case {
  clxent_dtype dtype;
  clxent_reduction reduction;
  int weights, smoothing, zloss, softcap, upstream, ignore, in_place;
} slice_case;

static void run_slice(clxent_ctx *ctx, size_t n, size_t c, const size_t *cut, size_t slices, const slice_case *f,
                      uint64_t seed) {
  const size_t eb = ref_dtype_bytes(f->dtype);
  const int before = failures;
  snprintf(what, sizeof what, "slices of %zux%zu %s %s weights=%d eps=%d z=%d cap=%d upstream=%d ignore=%d%s", n, c,
           dtype_names[f->dtype], reduction_names[f->reduction], f->weights, f->smoothing, f->zloss, f->softcap,
           f->upstream, f->ignore, f->in_place ? " in place" : "");
  rng_state = seed;
  float *z = xmalloc(n * c * sizeof(float)), *w = xmalloc(c * sizeof(float)), *up = xmalloc(n * sizeof(float));
  int32_t *y = xmalloc(n * sizeof(int32_t));
  for (size_t e = 0; e < n * c; ++e) z[e] = (float)uniform(-6, 6);
  if (f->dtype != CLXENT_FLOAT32) /* the values the 16-bit type holds */
    for (size_t e = 0; e < n * c; ++e) z[e] = f->dtype == CLXENT_FLOAT16 ? ref_from_f16(ref_to_f16(z[e])) : ref_from_bf16(ref_to_bf16(z[e]));
  for (size_t j = 0; j < c; ++j) w[j] = (float)uniform(0.1, 2.0);
  if (f->weights) w[1] = 0.0f; /* a zero weight: skipped by the smoothing term */
  for (size_t i = 0; i < n; ++i) {
    y[i] = f->ignore && (i == 0 || uniform(0, 1) < 0.2) ? -100 : (int32_t)below((uint32_t)c);
    up[i] = (float)uniform(0.5, 1.5);
  }
  clxent_opts o = clxent_opts_default();
  o.reduction = f->reduction;
  if (f->weights) o.class_weight = w;
  if (f->smoothing) o.label_smoothing = 0.1f;
  if (f->zloss) o.z_loss = 1e-3f;
  if (f->softcap) o.softcap = 4.0f;
  if (f->upstream) o.grad_output = up;
  double *rows = xmalloc(n * sizeof(double)), *lse = xmalloc(n * sizeof(double)), *grad = xmalloc(n * c * sizeof(double));
  ref_out r_rows = {.rows = rows, .lse = lse}, r_grad = {.grad = grad};
  clxent_opts o_none = o;
  o_none.reduction = CLXENT_NONE, o_none.grad_output = NULL;
  ref_softmax_xent(n, c, z, y, &o_none, &r_rows);
  ref_softmax_xent(n, c, z, y, &o, &r_grad);
  float *lse_f = xmalloc(n * sizeof(float)), *wy = xmalloc(n * sizeof(float)); /* as a caller of the grad entry */
  const ref_slice_scales sc = ref_slice_batch(n, c, y, f->weights ? w : NULL, f->reduction, lse, lse_f, wy);
  const double W = sc.W;
  const float S = sc.S, Sz = sc.Sz;
  double *m = xmalloc(n * sizeof(double)), *s = xmalloc(n * sizeof(double)), *dd = xmalloc(n * sizeof(double));
  double *uy = xmalloc(n * sizeof(double)), wprev = 0.0;
  for (size_t i = 0; i < n; ++i) m[i] = -INFINITY, s[i] = dd[i] = uy[i] = 0.0;
  float *st = xmalloc(n * CLXENT_SLICE_VALUES * sizeof(float));
  for (size_t k = 0; k < slices && failures == before; ++k) {
    const size_t off = cut[k], width = cut[k + 1] - cut[k];
    unsigned char *zl = xmalloc(n * width * eb), *g = xmalloc(n * width * eb);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < width; ++j) ref_encode(zl, i * width + j, z[i * c + off + j], f->dtype);
    clxent_opts ol = o;
    if (f->weights) ol.class_weight = w + off;
    for (size_t e = 0; e < n * CLXENT_SLICE_VALUES; ++e) st[e] = NAN;
    clxent_status status = clxent_softmax_slice_stats(ctx, n, width, off, c, f->dtype, zl, y, &ol, st);
    check_status(ctx, status, "clxent_softmax_slice_stats");
    double wsl = 0.0;
    for (size_t j = off; j < off + width; ++j) wsl += f->weights ? w[j] : 1.0;
    for (size_t i = 0; i < n && status == CLXENT_OK; ++i) { /* the slice's own statistics, in double */
      const float *sr = st + i * CLXENT_SLICE_VALUES;
      double want[5];
      ref_slice_row(z + i * c, off, width, y[i], f->weights ? w : NULL, o.softcap, f->smoothing, want);
      const int q = ref_slice_row_mismatch(sr, want, width);
      if (q >= 0) FAIL("slice %zu row %zu value %d: %.9g, reference %.9g", k, i, q, (double)sr[q], want[q]);
      const double mk = sr[0]; /* combined as clxent_mpi does */
      if (mk > m[i]) {
        if (m[i] != -INFINITY) s[i] *= exp(m[i] - mk), dd[i] += wprev * (mk - m[i]);
        m[i] = mk;
      }
      s[i] += sr[1] * exp(mk - m[i]);
      dd[i] += sr[2] + wsl * (m[i] - mk);
      uy[i] += sr[3];
    }
    wprev += wsl;
    unsigned char *gout = f->in_place ? zl : g;
    if (!f->in_place) memset(g, 0xFF, n * width * eb); /* NaN in every type */
    status = clxent_softmax_slice_grad(ctx, n, width, off, c, f->dtype, zl, y, &ol, lse_f, f->weights ? wy : NULL,
                                       (float)W, S, Sz, gout);
    check_status(ctx, status, "clxent_softmax_slice_grad");
    if (status == CLXENT_OK) {
      float *got = xmalloc(n * width * sizeof(float));
      double *gref = xmalloc(n * width * sizeof(double));
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < width; ++j)
          got[i * width + j] = ref_decode(gout, i * width + j, f->dtype), gref[i * width + j] = grad[i * c + off + j];
      char name[32];
      snprintf(name, sizeof name, "slice %zu grad", k);
      check_close(got, gref, n * width, 2e-5 * r_grad.gscale + (f->dtype == CLXENT_FLOAT16 ? 6e-8 : 0),
                  f->dtype == CLXENT_FLOAT32 ? 1e-4 : storage_rtol(f->dtype), name);
      free(got), free(gref);
    }
    free(zl), free(g);
  }
  const double eps = o.label_smoothing; /* each row's lse and loss from the combined statistics */
  for (size_t i = 0; i < n && failures == before; ++i) {
    const double lse_i = m[i] + log(s[i]);
    if (!(fabs(lse_i - lse[i]) <= 1e-5 * (1.0 + fabs(lse[i])))) {
      FAIL("row %zu: lse %.9g from the slices, reference %.9g", i, lse_i, lse[i]);
      break;
    }
    if (y[i] == -100) continue;
    const double l = (1.0 - eps) * wy[i] * (lse_i - uy[i]) + eps / (double)c * (dd[i] + W * log(s[i])) +
                     o.z_loss * lse_i * lse_i;
    if (!(fabs(l - rows[i]) <= 2e-5 * (1.0 + fabs(rows[i])))) {
      FAIL("row %zu: loss %.9g from the slices, reference %.9g", i, l, rows[i]);
      break;
    }
  }
  free(z), free(w), free(up), free(y), free(rows), free(lse), free(grad), free(lse_f), free(wy), free(m), free(s),
      free(dd), free(uy), free(st);
}

/* ---------------------------------------------------------------- the linear and slice units */

/* A context as run_config's (the group variant, G = 16, copying, compiled from source) with the
 * linear block and streaming block given; NULL (a failure counted) if it cannot be made. */
static clxent_ctx *unit_context(const char *require, size_t rows, size_t classes, uint64_t block_bytes) {
  clxent_tuning tuning = CLXENT_TUNING_INIT;
  tuning.variant = CLXENT_VARIANT_GROUP, tuning.zero_copy = CLXENT_OFF, tuning.group_size = 16;
  tuning.linear_rows = rows, tuning.linear_classes = classes, tuning.block_bytes = block_bytes;
  clxent_config config = CLXENT_CONFIG_INIT;
  config.cache = CLXENT_OFF, config.tuning = &tuning;
  clxent_ctx *ctx;
  const clxent_status st = clxent_create_ex(&ctx, NULL, &config);
  if (st != CLXENT_OK) {
    FAIL("clxent_create_ex: %s: %s", clxent_status_str(st), clxent_last_error(NULL));
    return NULL;
  }
  clxent_info info = CLXENT_INFO_INIT;
  clxent_get_info(ctx, 0, &info);
  if (require && !strstr(clxent_device_name(ctx), require))
    FAIL("the device is \"%s\", not one named \"%s\"", clxent_device_name(ctx), require);
  if (info.variant != CLXENT_VARIANT_GROUP || info.zero_copy || info.program_from_cache ||
      (rows && info.linear_rows != rows) || (classes && info.linear_classes != classes))
    FAIL("the context is not the group variant, copying, compiled from source, with the block asked for");
  return ctx;
}

/* Shapes n in {1, 5, 19}, d in {1, 7, 33}, v in {1, 9, 70}, with and without bias, every reduction,
 * gradients wanted or not, the options, float32 and both 16-bit types; blocks of 1 to 8 rows and
 * 1 to 16 classes: several row and class blocks (partial ones at the ends). The last three keep
 * blocks of logits from the forward pass for the backward (host/linear.c, kept_blocks: as many as
 * fit in 4.5% of n·v floats beside the other scratch, which needs n·v larger than the rest):
 * some of a row chunk's class chunks (the others computed again, in the one slot left), then all
 * of them (no slot left). */
static const linear_case linear_cases[] = {
    /* n  d   v  bias want      dtype            reduction    opts rows classes */
    {1, 1, 1, 1, WANT_ALL, CLXENT_FLOAT32, CLXENT_MEAN, 0, 0, 0, "the table's block"},
    {5, 7, 9, 0, WANT_ALL, CLXENT_FLOAT32, CLXENT_SUM, 0, 2, 4, NULL},
    {19, 33, 70, 1, WANT_ALL, CLXENT_FLOAT32, CLXENT_MEAN, 1, 4, 16, NULL},
    {19, 7, 70, 1, WANT_LOSS, CLXENT_FLOAT32, CLXENT_NONE, 1, 8, 16, NULL},
    {19, 7, 9, 0, WANT_GH | WANT_GW, CLXENT_FLOAT32, CLXENT_MEAN, 2, 4, 4, NULL},
    {5, 33, 70, 1, WANT_GW | WANT_GB, CLXENT_FLOAT32, CLXENT_SUM, 2, 1, 16, NULL},
    {1, 33, 9, 1, WANT_LOSS | WANT_GH, CLXENT_FLOAT32, CLXENT_NONE, 1, 1, 1, NULL},
    {19, 1, 70, 0, WANT_ALL, CLXENT_FLOAT32, CLXENT_NONE, 0, 0, 0, "the table's block"},
    {5, 33, 70, 1, WANT_ALL, CLXENT_FLOAT16, CLXENT_MEAN, 1, 2, 16, NULL},
    {19, 7, 9, 1, WANT_ALL, CLXENT_BFLOAT16, CLXENT_NONE, 2, 4, 4, NULL},
    {19, 7, 70, 0, WANT_LOSS | WANT_GH, CLXENT_FLOAT16, CLXENT_SUM, 0, 8, 16, NULL},
    {64, 1, 640, 1, WANT_ALL, CLXENT_FLOAT32, CLXENT_MEAN, 1, 8, 16, "some blocks kept"},
    {200, 1, 512, 1, WANT_ALL, CLXENT_FLOAT32, CLXENT_MEAN, 2, 4, 64, "every block kept"},
    {100, 1, 640, 1, WANT_ALL, CLXENT_FLOAT16, CLXENT_SUM, 0, 8, 16, "some blocks kept"},
};
#define LINEAR_UNITS (sizeof linear_cases / sizeof linear_cases[0])

/* 37 classes in 3 uneven slices (one narrower than a vector), 40 rows; the streaming blocks of
 * 2 KiB cut each slice's rows into several blocks. */
static const slice_case slice_cases[] = {
    /* dtype           reduction    w  eps z cap up ign in-place */
    {CLXENT_FLOAT32, CLXENT_MEAN, 0, 0, 0, 0, 0, 0, 0},
    {CLXENT_FLOAT32, CLXENT_MEAN, 1, 1, 1, 1, 0, 1, 1},
    {CLXENT_FLOAT32, CLXENT_NONE, 1, 1, 1, 1, 1, 1, 0},
    {CLXENT_FLOAT16, CLXENT_SUM, 1, 1, 1, 0, 1, 1, 1},
    {CLXENT_BFLOAT16, CLXENT_MEAN, 0, 1, 1, 1, 0, 1, 0},
};
#define SLICE_UNITS (sizeof slice_cases / sizeof slice_cases[0])

static void run_new_units(const char *require) {
  for (size_t k = 0; k < LINEAR_UNITS; ++k) {
    if (!take_unit()) continue;
    const linear_case *lc = &linear_cases[k];
    clxent_ctx *ctx = unit_context(require, lc->rows, lc->classes, 0);
    if (!ctx) continue;
    const clock_t t0 = clock();
    run_linear(ctx, lc, 5000 + k);
    if (only_unit < 0) printf("  %s: %.1f s CPU\n", what, (double)(clock() - t0) / CLOCKS_PER_SEC);
    fflush(stdout);
    clxent_destroy(ctx);
  }
  static const size_t cut[] = {0, 3, 20, 37};
  for (size_t k = 0; k < SLICE_UNITS; ++k) {
    if (!take_unit()) continue;
    clxent_ctx *ctx = unit_context(require, 0, 0, 2048);
    if (!ctx) continue;
    const clock_t t0 = clock();
    run_slice(ctx, 40, 37, cut, 3, &slice_cases[k], 6000 + k);
    if (only_unit < 0) printf("  %s: %.1f s CPU\n", what, (double)(clock() - t0) / CLOCKS_PER_SEC);
    fflush(stdout);
    clxent_destroy(ctx);
  }
}

int main(int argc, char **argv) {
  const char *require = NULL;
  long only_config = -1;
  for (int a = 1; a < argc; ++a) {
    if (!strcmp(argv[a], "--require-device") && a + 1 < argc) require = argv[++a];
    else if (!strcmp(argv[a], "--config") && a + 1 < argc) only_config = strtol(argv[++a], NULL, 10);
    else if (!strcmp(argv[a], "--unit") && a + 1 < argc) only_unit = strtol(argv[++a], NULL, 10);
    else if (!strcmp(argv[a], "--units")) {
      size_t units = 0;
      for (size_t k = 0; k < CONFIGS; ++k) units += config_units(k);
      units += LINEAR_UNITS + SLICE_UNITS;
      printf("%zu\n", units);
      return 0;
    } else if (!strcmp(argv[a], "--units-uninitialized")) { /* the group configurations' units: those */
      size_t units = 0;                                          /* before the item, linear and slice ones */
      for (size_t k = 0; k < CONFIGS && !configs[k].item; ++k) units += config_units(k);
      printf("%zu\n", units);
      return 0;
    } else {
      fprintf(stderr, "usage: %s [--require-device NAME] [--config K | --unit K | --units | --units-uninitialized]\n", argv[0]);
      return 2;
    }
  }
  for (size_t k = 0; k < CONFIGS; ++k)
    if (only_config < 0 || (size_t)only_config == k) run_config(k, require);
  if (only_config < 0 || (size_t)only_config == CONFIGS) run_new_units(require);
  if (failures) {
    printf("oclgrind_kernels: %d failure(s)\n", failures);
    return 1;
  }
  if (only_unit < 0) printf("oclgrind_kernels: every result matched the reference\n");
  return 0;
}
