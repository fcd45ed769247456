/*
 * clxent_mpi under mpirun -np 1..4 (tests/CMakeLists.txt). Every rank builds the same global
 * batch, computes the one-process result itself on its own context (clxent_softmax_xent on the
 * whole batch), and checks its share of the data-parallel result against it: the loss and the
 * gradient bit for bit (the one documented exception: class weights + z-loss + MEAN, whose
 * gradient agrees within float rounding). Splits: even, uneven, ranks with no rows, and sizes
 * that cross the reduction's blocks. Errors: a bad label, a bad option or options that differ on
 * one rank give the same status on every rank and leave every output untouched.
 * Exit status 0 on every rank iff every check passed on every rank.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clxent_mpi.h"
#ifdef CLXENT_MPI_TEST_HOOKS
#include "clxent_mpi_hooks.h"
#endif

static int rank, ranks, failures;

#define EXPECT(cond, ...)                                  \
  do {                                                     \
    if (!(cond)) {                                         \
      ++failures;                                          \
      fprintf(stderr, "rank %d: %s:%d: ", rank, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fputc('\n', stderr);                                 \
    }                                                      \
  } while (0)

static uint64_t rng = 88172645463325252ull;
static double uniform(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) * 0x1p-53;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The rows of each rank for a split kind: 0 even, 1 uneven (rank r weighs r+1), 2 ranks 0 and
 * (if any) 2 empty, 3 everything on the last rank. */
static void split_rows(size_t n, int kind, size_t *start, size_t *count) {
  size_t w[64], total = 0;
  for (int q = 0; q < ranks; ++q) {
    w[q] = kind == 0 ? 1 : kind == 1 ? (size_t)q + 1 : kind == 2 ? (q == 0 || q == 2 ? 0 : 1) : (q == ranks - 1);
    total += w[q];
  }
  if (total == 0) w[ranks - 1] = total = 1;
  size_t at = 0;
  for (int q = 0; q < ranks; ++q) {
    const size_t k = q == ranks - 1 ? n - at : n * w[q] / total;
    if (q == rank) *start = at, *count = k;
    at += k;
  }
}

typedef struct config {
  const char *name;
  clxent_reduction reduction;
  int weights, ignore, smoothing, zloss, softcap, upstream, denominator;
  int grad_tolerance; /* class weights + z-loss + MEAN: the gradient within rounding */
} config;

static void run_case(clxent_ctx *ctx, size_t n, size_t c, int split, const config *cf) {
  float *z = malloc(n * c * sizeof *z), *g_ref = malloc(n * c * sizeof *g_ref), *w = malloc(c * sizeof *w);
  int32_t *y = malloc(n * sizeof *y);
  float *up = malloc(n * sizeof *up), *loss_ref = malloc(n * sizeof *loss_ref);
  for (size_t k = 0; k < n * c; ++k) z[k] = (float)(uniform() * 8.0 - 4.0);
  for (size_t i = 0; i < n; ++i) {
    y[i] = (int32_t)(uniform() * (double)c);
    if (cf->ignore && uniform() < 0.2) y[i] = -100;
    if (cf->ignore == 2) y[i] = -100; /* every row ignored */
    up[i] = (float)(uniform() + 0.5);
  }
  for (size_t j = 0; j < c; ++j) w[j] = (float)(uniform() * 2.0);
  /* weights 2: one tiny weight, so that Σ w_{y_i} rounds in double and the ranks share their
   * rows' weights; 3: every weight tiny, so that the divisor is below 2^-64 and the weights are
   * rescaled as the core does */
  if (cf->weights == 2) w[0] = 1e-30f;
  if (cf->weights == 3)
    for (size_t j = 0; j < c; ++j) w[j] = w[j] * 1e-36f + 1e-37f;
  clxent_opts o = CLXENT_OPTS_INIT;
  o.reduction = cf->reduction;
  if (cf->weights) o.class_weight = w;
  if (cf->smoothing) o.label_smoothing = 0.1f;
  if (cf->zloss) o.z_loss = 1e-3f;
  if (cf->softcap) o.softcap = 5.0f;
  if (cf->denominator) o.mean_denominator = 300.0;
  static const float g_one = 0.75f;
  if (cf->upstream) o.grad_output = cf->reduction == CLXENT_NONE ? up : &g_one;
  /* the one-process result on the whole batch */
  const clxent_status st_ref = clxent_softmax_xent(ctx, n, c, z, y, &o, loss_ref, g_ref);
  EXPECT(st_ref == CLXENT_OK, "%s: reference failed: %s", cf->name, clxent_last_error(ctx));

  size_t start = 0, count = 0;
  split_rows(n, split, &start, &count);
  float *g = malloc((count ? count : 1) * c * sizeof *g), *loss = malloc((count ? count : 1) * sizeof *loss);
  float one_loss = -1.0f;
  clxent_opts lo = o;
  if (cf->upstream && cf->reduction == CLXENT_NONE) lo.grad_output = up + start;
  const clxent_status st = clxent_mpi_softmax_xent(ctx, MPI_COMM_WORLD, count, c, count ? z + start * c : NULL,
                                                   count ? y + start : NULL, &lo,
                                                   cf->reduction == CLXENT_NONE ? loss : &one_loss, g);
  EXPECT(st == CLXENT_OK, "%s n=%zu c=%zu split %d: %s", cf->name, n, c, split, clxent_mpi_last_error());
  if (st == CLXENT_OK) {
    if (cf->reduction == CLXENT_NONE) {
      for (size_t i = 0; i < count; ++i)
        EXPECT(same_bits(loss[i], loss_ref[start + i]), "%s split %d: loss[%zu] %.9g vs %.9g", cf->name, split,
               start + i, (double)loss[i], (double)loss_ref[start + i]);
    } else {
      EXPECT(same_bits(one_loss, loss_ref[0]), "%s n=%zu c=%zu split %d: loss %.9g vs one process %.9g", cf->name, n, c,
             split, (double)one_loss, (double)loss_ref[0]);
    }
    size_t bad = 0, first_bad = 0;
    float gmax = 0.0f; /* the tolerance's scale: the largest gradient value (z-term and label terms cancel) */
    for (size_t k = 0; k < count * c; ++k) gmax = fmaxf(gmax, fabsf(g_ref[start * c + k]));
    for (size_t k = 0; k < count * c; ++k) {
      const float a = g[k], b = g_ref[start * c + k];
      const int ok = cf->grad_tolerance ? (same_bits(a, b) || fabsf(a - b) <= 1e-6f * gmax) : same_bits(a, b);
      if (!ok && bad++ == 0) first_bad = k;
    }
    EXPECT(bad == 0, "%s n=%zu c=%zu split %d: %zu gradient values differ, first at %zu: %.9g vs %.9g", cf->name, n, c,
           split, bad, first_bad, (double)g[first_bad], (double)g_ref[start * c + first_bad]);
  }
  free(z), free(g_ref), free(w), free(y), free(up), free(loss_ref), free(g), free(loss);
}

/* A float in [-8, 8] as a float16 (truncated; tiny values to 0) or bfloat16 (truncated). */
static uint16_t to_16(float v, clxent_dtype t) {
  uint32_t b;
  memcpy(&b, &v, sizeof b);
  if (t == CLXENT_BFLOAT16) return (uint16_t)(b >> 16);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const int e = (int)((b >> 23) & 0xff) - 127 + 15;
  if (e <= 0) return (uint16_t)sign;
  return (uint16_t)(sign | (uint32_t)e << 10 | (b >> 13 & 0x3ffu));
}

/* clxent_mpi_softmax_xent_ex on 16-bit storage with ex->lse: the loss, the 16-bit gradient and
 * lse have the bits of one process's clxent_softmax_xent_ex on the concatenated batch. */
static void run_case_16(clxent_ctx *ctx, size_t n, size_t c, int split, const config *cf, clxent_dtype t) {
  uint16_t *z = malloc(n * c * sizeof *z), *g_ref = malloc(n * c * sizeof *g_ref), *g = malloc(n * c * sizeof *g);
  float *w = malloc(c * sizeof *w), *loss_ref = malloc(n * sizeof *loss_ref), *loss = malloc(n * sizeof *loss);
  float *lse_ref = malloc(n * sizeof *lse_ref), *lse = malloc(n * sizeof *lse);
  int32_t *y = malloc(n * sizeof *y);
  for (size_t k = 0; k < n * c; ++k) z[k] = to_16((float)(uniform() * 8.0 - 4.0), t);
  for (size_t i = 0; i < n; ++i) y[i] = cf->ignore && uniform() < 0.2 ? -100 : (int32_t)(uniform() * (double)c);
  for (size_t j = 0; j < c; ++j) w[j] = (float)(uniform() * 2.0);
  clxent_opts o = CLXENT_OPTS_INIT;
  o.reduction = cf->reduction;
  if (cf->weights) o.class_weight = w;
  if (cf->smoothing) o.label_smoothing = 0.1f;
  if (cf->zloss) o.z_loss = 1e-3f;
  if (cf->softcap) o.softcap = 5.0f;
  clxent_ex x = CLXENT_EX_INIT;
  x.dtype = t, x.lse = lse_ref;
  EXPECT(clxent_softmax_xent_ex(ctx, n, c, z, y, &o, &x, loss_ref, g_ref) == CLXENT_OK, "16-bit %s: reference failed: %s",
         cf->name, clxent_last_error(ctx));
  size_t start = 0, count = 0;
  split_rows(n, split, &start, &count);
  x.lse = lse; /* asked for on every rank, also one without rows (the outputs must agree) */
  const clxent_status st = clxent_mpi_softmax_xent_ex(ctx, MPI_COMM_WORLD, count, c, count ? z + start * c : NULL,
                                                      count ? y + start : NULL, &o, &x, loss, g);
  EXPECT(st == CLXENT_OK, "16-bit %s split %d: %s", cf->name, split, clxent_mpi_last_error());
  if (st == CLXENT_OK) {
    const size_t nl = cf->reduction == CLXENT_NONE ? count : 1;
    const float *want = cf->reduction == CLXENT_NONE ? loss_ref + start : loss_ref;
    EXPECT(!memcmp(loss, want, nl * sizeof *loss), "16-bit %s n=%zu c=%zu split %d dtype %d: loss %.9g vs %.9g", cf->name,
           n, c, split, (int)t, (double)loss[0], (double)want[0]);
    EXPECT(!memcmp(g, g_ref + start * c, count * c * sizeof *g), "16-bit %s split %d dtype %d: gradient bits differ",
           cf->name, split, (int)t);
    EXPECT(!memcmp(lse, lse_ref + start, count * sizeof *lse), "16-bit %s split %d dtype %d: lse differs", cf->name,
           split, (int)t);
  }
  free(z), free(g_ref), free(g), free(w), free(loss_ref), free(loss), free(lse_ref), free(lse), free(y);
}

/* A call that one rank gets wrong: every rank returns `want`, and nothing is written. */
static void error_case(clxent_ctx *ctx, const char *what, clxent_status want) {
  const size_t n = 5, c = 4;
  float z[20], g[20], loss = 123.0f, w[4] = {1, 1, 1, 1};
  int32_t y[5] = {0, 1, 2, 3, 1};
  for (int k = 0; k < 20; ++k) z[k] = (float)k * 0.1f, g[k] = 42.0f;
  clxent_opts o = CLXENT_OPTS_INIT;
  const int culprit = ranks - 1;
  if (!strcmp(what, "label") && rank == culprit) y[2] = 4;
  if (!strcmp(what, "option") && rank == culprit) o.label_smoothing = 1.5f;
  if (!strcmp(what, "mismatch") && rank == culprit) o.z_loss = 1e-4f;
  if (!strcmp(what, "weights") && rank == culprit) w[1] = 2.0f, o.class_weight = w;
  if (!strcmp(what, "weights") && rank != culprit) o.class_weight = w;
  const clxent_status st = clxent_mpi_softmax_xent(ctx, MPI_COMM_WORLD, n, c, z, y, &o, &loss, g);
  EXPECT(st == want, "error case %s: status %d, want %d (%s)", what, (int)st, (int)want, clxent_mpi_last_error());
  char rank_word[32];
  snprintf(rank_word, sizeof rank_word, "rank %d", culprit);
  EXPECT(strstr(clxent_mpi_last_error(), rank_word) != NULL, "error case %s: message '%s' names no %s", what,
         clxent_mpi_last_error(), rank_word);
  int untouched = loss == 123.0f;
  for (int k = 0; k < 20; ++k) untouched &= g[k] == 42.0f;
  EXPECT(untouched, "error case %s: outputs were written", what);
}

/* The columns of each rank: 0 even, 1 uneven, 2 rank 0 takes one column (c_local = 1). */
static void split_cols(size_t c, int kind, size_t *off, size_t *width) {
  size_t at = 0;
  for (int q = 0; q < ranks; ++q) {
    size_t k;
    if (q == ranks - 1) k = c - at;
    else if (kind == 0) k = c / (size_t)ranks;
    else if (kind == 1) k = c * (size_t)(q + 1) / ((size_t)ranks * (size_t)(ranks + 1) / 2);
    else k = q == 0 ? 1 : (c - 1) / (size_t)(ranks - 1);
    if (k == 0) k = 1;
    if (q == rank) *off = at, *width = k;
    at += k;
  }
}

static void vocab_case(clxent_ctx *ctx, size_t n, size_t c, int split, const config *cf) {
  float *z = malloc(n * c * sizeof *z), *g_ref = malloc(n * c * sizeof *g_ref), *w = malloc(c * sizeof *w);
  int32_t *y = malloc(n * sizeof *y);
  float *up = malloc(n * sizeof *up), *loss_ref = malloc(n * sizeof *loss_ref);
  for (size_t k = 0; k < n * c; ++k) z[k] = (float)(uniform() * 8.0 - 4.0);
  for (size_t i = 0; i < n; ++i) {
    y[i] = (int32_t)(uniform() * (double)c);
    if (cf->ignore && uniform() < 0.2) y[i] = -100;
    if (cf->ignore == 2) y[i] = -100;
    up[i] = (float)(uniform() + 0.5);
  }
  for (size_t j = 0; j < c; ++j) w[j] = (float)(uniform() * 2.0);
  clxent_opts o = CLXENT_OPTS_INIT;
  o.reduction = cf->reduction;
  if (cf->weights) o.class_weight = w;
  if (cf->smoothing) o.label_smoothing = 0.1f;
  if (cf->zloss) o.z_loss = 1e-3f;
  if (cf->softcap) o.softcap = 5.0f;
  if (cf->denominator) o.mean_denominator = 300.0;
  static const float g_one = 0.75f;
  if (cf->upstream) o.grad_output = cf->reduction == CLXENT_NONE ? up : &g_one;
  EXPECT(clxent_softmax_xent(ctx, n, c, z, y, &o, loss_ref, g_ref) == CLXENT_OK, "vocab %s: reference failed", cf->name);
  size_t off = 0, width = 0;
  split_cols(c, split, &off, &width);
  float *zl = malloc(n * width * sizeof *zl), *g = malloc(n * width * sizeof *g), *g2 = malloc(n * width * sizeof *g2);
  float *loss = malloc(n * sizeof *loss), *loss2 = malloc(n * sizeof *loss2);
  for (size_t i = 0; i < n; ++i) memcpy(zl + i * width, z + i * c + off, width * sizeof *zl);
  clxent_opts lo = o;
  if (cf->weights) lo.class_weight = w + off;
  clxent_status st = clxent_mpi_softmax_xent_vocab(ctx, MPI_COMM_WORLD, n, width, off, c, zl, y, &lo, loss, g);
  EXPECT(st == CLXENT_OK, "vocab %s n=%zu c=%zu split %d: %s", cf->name, n, c, split, clxent_mpi_last_error());
  if (st == CLXENT_OK) {
    const size_t nl = cf->reduction == CLXENT_NONE ? n : 1;
    for (size_t i = 0; i < nl; ++i) {
      const float a = loss[i], b = loss_ref[i];
      EXPECT(same_bits(a, b) || fabsf(a - b) <= 2e-5f * fabsf(b) + 1e-6f, "vocab %s n=%zu c=%zu split %d: loss[%zu] %.9g vs %.9g",
             cf->name, n, c, split, i, (double)a, (double)b);
    }
    /* every rank holds the same loss bits */
    uint32_t bits, lo_bits, hi_bits;
    memcpy(&bits, &loss[0], sizeof bits);
    MPI_Allreduce(&bits, &lo_bits, 1, MPI_UINT32_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&bits, &hi_bits, 1, MPI_UINT32_T, MPI_MAX, MPI_COMM_WORLD);
    EXPECT(lo_bits == hi_bits, "vocab %s: the ranks hold different losses", cf->name);
    float gmax = 0.0f;
    for (size_t k = 0; k < n * c; ++k) gmax = fmaxf(gmax, fabsf(g_ref[k]));
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < width; ++j) {
        const float a = g[i * width + j], b = g_ref[i * c + off + j];
        if (!(same_bits(a, b) || fabsf(a - b) <= 1e-5f * gmax) && bad++ == 0) first_bad = i * width + j;
      }
    EXPECT(bad == 0, "vocab %s n=%zu c=%zu split %d: %zu gradient values differ, first at %zu", cf->name, n, c, split,
           bad, first_bad);
    /* run to run: the same bits */
    st = clxent_mpi_softmax_xent_vocab(ctx, MPI_COMM_WORLD, n, width, off, c, zl, y, &lo, loss2, g2);
    EXPECT(st == CLXENT_OK && !memcmp(loss, loss2, nl * sizeof *loss) && !memcmp(g, g2, n * width * sizeof *g),
           "vocab %s: a second run differs", cf->name);
  }
  free(z), free(g_ref), free(w), free(y), free(up), free(loss_ref), free(zl), free(g), free(g2), free(loss), free(loss2);
}

static float from_16(uint16_t h, clxent_dtype t) {
  uint32_t b;
  if (t == CLXENT_BFLOAT16) {
    b = (uint32_t)h << 16;
  } else {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) return (sign ? -1.0f : 1.0f) * ldexpf((float)m, -24);
    b = sign | (e == 31 ? 0xffu : e - 15 + 127) << 23 | m << 13;
  }
  float v;
  memcpy(&v, &b, sizeof v);
  return v;
}

/* clxent_mpi_softmax_xent_vocab_ex on 16-bit logits and gradient, with ex->lse, against one
 * process's clxent_softmax_xent_ex on the full rows: the loss and lse within float32 rounding,
 * the gradient within one 16-bit ulp (each side rounds its own float32 value once). */
static void vocab_case_16(clxent_ctx *ctx, size_t n, size_t c, int split, const config *cf, clxent_dtype t) {
  uint16_t *z = malloc(n * c * sizeof *z), *g_ref = malloc(n * c * sizeof *g_ref);
  float *w = malloc(c * sizeof *w), *loss_ref = malloc(n * sizeof *loss_ref), *lse_ref = malloc(n * sizeof *lse_ref);
  int32_t *y = malloc(n * sizeof *y);
  for (size_t k = 0; k < n * c; ++k) z[k] = to_16((float)(uniform() * 8.0 - 4.0), t);
  for (size_t i = 0; i < n; ++i) y[i] = cf->ignore && uniform() < 0.2 ? -100 : (int32_t)(uniform() * (double)c);
  for (size_t j = 0; j < c; ++j) w[j] = (float)(uniform() * 2.0);
  clxent_opts o = CLXENT_OPTS_INIT;
  o.reduction = cf->reduction;
  if (cf->weights) o.class_weight = w;
  if (cf->smoothing) o.label_smoothing = 0.1f;
  if (cf->zloss) o.z_loss = 1e-3f;
  if (cf->softcap) o.softcap = 5.0f;
  clxent_ex x = CLXENT_EX_INIT;
  x.dtype = t, x.lse = lse_ref;
  EXPECT(clxent_softmax_xent_ex(ctx, n, c, z, y, &o, &x, loss_ref, g_ref) == CLXENT_OK, "vocab 16-bit %s: reference failed",
         cf->name);
  size_t off = 0, width = 0;
  split_cols(c, split, &off, &width);
  uint16_t *zl = malloc(n * width * sizeof *zl), *g = malloc(n * width * sizeof *g);
  float *loss = malloc(n * sizeof *loss), *lse = malloc(n * sizeof *lse);
  for (size_t i = 0; i < n; ++i) memcpy(zl + i * width, z + i * c + off, width * sizeof *zl);
  clxent_opts lo = o;
  if (cf->weights) lo.class_weight = w + off;
  x.lse = lse;
  const clxent_status st = clxent_mpi_softmax_xent_vocab_ex(ctx, MPI_COMM_WORLD, n, width, off, c, zl, y, &lo, &x, loss, g);
  EXPECT(st == CLXENT_OK, "vocab 16-bit %s split %d: %s", cf->name, split, clxent_mpi_last_error());
  if (st == CLXENT_OK) {
    const size_t nl = cf->reduction == CLXENT_NONE ? n : 1;
    for (size_t i = 0; i < nl; ++i)
      EXPECT(fabsf(loss[i] - loss_ref[i]) <= 2e-5f * fabsf(loss_ref[i]) + 1e-6f, "vocab 16-bit %s split %d: loss[%zu] %.9g vs %.9g",
             cf->name, split, i, (double)loss[i], (double)loss_ref[i]);
    for (size_t i = 0; i < n; ++i)
      EXPECT(fabsf(lse[i] - lse_ref[i]) <= 1e-5f * fabsf(lse_ref[i]) + 1e-6f, "vocab 16-bit %s: lse[%zu] %.9g vs %.9g",
             cf->name, i, (double)lse[i], (double)lse_ref[i]);
    const float ulp = t == CLXENT_FLOAT16 ? 0x1p-10f : 0x1p-7f;
    float gmax = 0.0f;
    for (size_t k = 0; k < n * c; ++k) gmax = fmaxf(gmax, fabsf(from_16(g_ref[k], t)));
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < width; ++j) {
        const float a = from_16(g[i * width + j], t), b = from_16(g_ref[i * c + off + j], t);
        if (!(fabsf(a - b) <= ulp * fabsf(b) + 1e-5f * gmax) && bad++ == 0) first_bad = i * width + j;
      }
    EXPECT(bad == 0, "vocab 16-bit %s split %d dtype %d: %zu gradient values differ, first at %zu", cf->name, split,
           (int)t, bad, first_bad);
  }
  free(z), free(g_ref), free(w), free(loss_ref), free(lse_ref), free(y), free(zl), free(g), free(loss), free(lse);
}

/* Vocabulary-parallel calls one rank gets wrong: the same status everywhere, nothing written. */
static void vocab_error_case(clxent_ctx *ctx, const char *what, clxent_status want) {
  const size_t n = 4, width = 2, c = 2 * (size_t)ranks;
  float z[8], g[8], loss = 123.0f;
  int32_t y[4] = {0, 1, (int32_t)c - 1, 1};
  for (int k = 0; k < 8; ++k) z[k] = (float)k * 0.1f, g[k] = 42.0f;
  clxent_opts o = CLXENT_OPTS_INIT;
  const int culprit = ranks - 1;
  size_t n_mine = n, off = 2 * (size_t)rank;
  if (!strcmp(what, "label") && rank == culprit) y[1] = (int32_t)c;
  if (!strcmp(what, "n") && rank == culprit) n_mine = 3;
  if (!strcmp(what, "tiling") && rank == culprit) off = rank ? off - 1 : 1;
  const clxent_status st = clxent_mpi_softmax_xent_vocab(ctx, MPI_COMM_WORLD, n_mine, width, off, c, z, y, &o, &loss, g);
  EXPECT(st == want, "vocab error case %s: status %d, want %d (%s)", what, (int)st, (int)want, clxent_mpi_last_error());
  int untouched = loss == 123.0f;
  for (int k = 0; k < 8; ++k) untouched &= g[k] == 42.0f;
  EXPECT(untouched, "vocab error case %s: outputs were written", what);
}

/* Class weights spanning 84 binades: rows 0 and 1 weigh 2^60 and 2^36, the other n-2 weigh 1.
 * In row order (one process) Σ w_{y_i} in double is 2^60 + 2^36 exactly (each 1 is under half an
 * ulp of it and lost), which float rounds to even: 2^60. Summed per rank, a rank holding more
 * than 128 of the 1s adds them first and pushes the total past the tie: float 2^60 + 2^37, a
 * different divisor. So the ranks must share their rows' weights (the fallback), and the loss
 * keeps one process's bits only if they do. */
static void binade_case(clxent_ctx *ctx, int split) {
  const size_t n = 400, c = 3;
  float *z = malloc(n * c * sizeof *z), *g_ref = malloc(n * c * sizeof *g_ref), *g = malloc(n * c * sizeof *g);
  int32_t *y = malloc(n * sizeof *y);
  const float w[3] = {0x1p60f, 0x1p36f, 1.0f};
  for (size_t k = 0; k < n * c; ++k) z[k] = (float)(uniform() * 8.0 - 4.0);
  for (size_t i = 0; i < n; ++i) y[i] = i < 2 ? (int32_t)i : 2;
  clxent_opts o = CLXENT_OPTS_INIT;
  o.class_weight = w;
  float loss_ref = 0.0f, loss = -1.0f;
  EXPECT(clxent_softmax_xent(ctx, n, c, z, y, &o, &loss_ref, g_ref) == CLXENT_OK, "binades: reference failed");
  size_t start = 0, count = 0;
  split_rows(n, split, &start, &count);
  /* the divisor the ranks would get without sharing their weights, as a check that the case bites */
  double row_order = 0.0, rank_order = 0.0;
  for (size_t i = 0; i < n; ++i) row_order += w[y[i]];
  for (int q = 0; q < ranks; ++q) {
    const int keep = rank;
    size_t s0, c0;
    rank = q, split_rows(n, split, &s0, &c0), rank = keep;
    double part = 0.0;
    for (size_t i = s0; i < s0 + c0; ++i) part += w[y[i]];
    rank_order += part;
  }
  const int bites = (float)row_order != (float)rank_order;
  const clxent_status st = clxent_mpi_softmax_xent(ctx, MPI_COMM_WORLD, count, c, count ? z + start * c : NULL,
                                                   count ? y + start : NULL, &o, &loss, g);
  EXPECT(st == CLXENT_OK, "binades split %d: %s", split, clxent_mpi_last_error());
  EXPECT(same_bits(loss, loss_ref), "binades split %d (%s): loss %.9g vs one process %.9g", split,
         bites ? "rank-order divisor differs" : "rank-order divisor equal", (double)loss, (double)loss_ref);
  EXPECT(count == 0 || !memcmp(g, g_ref + start * c, count * c * sizeof *g), "binades split %d: gradient differs", split);
#ifdef CLXENT_MPI_TEST_HOOKS
  EXPECT(clxent_mpi_test_paths() & CLXENT_MPI_PATH_WEIGHTS_SHARED, "binades: the weights were not shared");
#endif
  if (ranks > 1 && split == 1) EXPECT(bites, "binades: the case does not tell the fallback from its absence");
  free(z), free(g_ref), free(g), free(y);
}

#ifdef CLXENT_MPI_TEST_HOOKS
/* Allocation failures (the test build's hook): the culprit rank's nth allocation fails, for every
 * n until a call allocates fewer. Every rank must return the same status (OUT_OF_MEMORY when an
 * allocation failed, else OK), none may hang (ctest's timeout), and a failure before the first
 * output is computed — the agreement records, the shared weights, any of the vocabulary path's —
 * must leave every output untouched on every rank. mode: 0 data-parallel MEAN, 1 NONE, 2 MEAN
 * with weights that must be shared, 3 vocabulary-parallel. */
static void fault_sweep(clxent_ctx *ctx, int mode, int culprit) {
  const size_t n = 300, c = 2 * (size_t)ranks + 3;
  float *z = malloc(n * c * sizeof *z), *g = malloc(n * c * sizeof *g), *loss = malloc(n * sizeof *loss);
  int32_t *y = malloc(n * sizeof *y);
  float w[64];
  for (size_t k = 0; k < n * c; ++k) z[k] = (float)(uniform() * 8.0 - 4.0);
  for (size_t i = 0; i < n; ++i) y[i] = mode == 2 ? (i < 2 ? (int32_t)i : 2) : (int32_t)(i % c);
  for (size_t j = 0; j < c; ++j) w[j] = 1.0f + (float)j;
  if (mode == 2) w[0] = 0x1p60f, w[1] = 0x1p36f, w[2] = 1.0f;
  clxent_opts o = CLXENT_OPTS_INIT;
  if (mode == 1) o.reduction = CLXENT_NONE;
  if (mode == 2) o.class_weight = w;
  size_t start = 0, count = n, off = 0, width = c;
  if (mode == 3) split_cols(c, 0, &off, &width);
  else split_rows(n, 1, &start, &count);
  int fired_any = 1;
  for (long nth = 1; fired_any && nth < 64; ++nth) {
    for (size_t k = 0; k < n * c; ++k) g[k] = 42.0f;
    for (size_t i = 0; i < n; ++i) loss[i] = 42.0f;
    clxent_mpi_test_fail_alloc(rank == culprit ? nth : 0);
    clxent_status st;
    if (mode == 3) {
      float *zl = malloc(n * width * sizeof *zl);
      for (size_t i = 0; i < n; ++i) memcpy(zl + i * width, z + i * c + off, width * sizeof *zl);
      st = clxent_mpi_softmax_xent_vocab(ctx, MPI_COMM_WORLD, n, width, off, c, zl, y, &o, loss, g);
      free(zl);
    } else {
      st = clxent_mpi_softmax_xent(ctx, MPI_COMM_WORLD, count, c, count ? z + start * c : NULL,
                                   count ? y + start : NULL, &o, loss, g);
    }
    const char *site = clxent_mpi_test_failed_site();
    clxent_mpi_test_fail_alloc(0);
    const int fired = site != NULL;
    const int early = fired && (mode == 3 || !strncmp(site, "agreement", 9) || !strncmp(site, "shared weights", 14));
    int flags[2] = {fired, early}, any[2], lo_st, hi_st;
    MPI_Allreduce(flags, any, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&(int){(int)st}, &lo_st, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&(int){(int)st}, &hi_st, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    fired_any = any[0];
    EXPECT(lo_st == hi_st, "fault mode %d, allocation %ld on rank %d: the ranks returned %d and %d", mode, nth, culprit,
           lo_st, hi_st);
    const clxent_status want = fired_any ? CLXENT_ERR_OUT_OF_MEMORY : CLXENT_OK;
    EXPECT(st == want, "fault mode %d, allocation %ld on rank %d (%s): status %d, want %d (%s)", mode, nth, culprit,
           site ? site : "-", (int)st, (int)want, clxent_mpi_last_error());
    if (any[1]) {
      int untouched = 1;
      const size_t cells = mode == 3 ? n * width : count * c, losses = mode == 1 ? count : 1;
      for (size_t k = 0; k < cells; ++k) untouched &= g[k] == 42.0f;
      for (size_t i = 0; i < losses; ++i) untouched &= loss[i] == 42.0f;
      EXPECT(untouched, "fault mode %d, allocation %ld on rank %d: outputs written after an early failure", mode, nth,
             culprit);
    }
    if (fired && rank == culprit) {
      char rank_word[32];
      snprintf(rank_word, sizeof rank_word, "rank %d", culprit);
      EXPECT(strstr(clxent_mpi_last_error(), rank_word) != NULL, "fault mode %d: message '%s' names no %s", mode,
             clxent_mpi_last_error(), rank_word);
    }
  }
  EXPECT(!fired_any, "fault mode %d: the sweep did not reach a call without failures", mode);
  free(z), free(g), free(loss), free(y);
}
#endif

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  clxent_ctx *ctx = NULL;
  if (clxent_create(&ctx, "cpu") != CLXENT_OK) {
    fprintf(stderr, "rank %d: no CPU device: %s\n", rank, clxent_last_error(NULL));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  static const config configs[] = {
      {"plain mean", CLXENT_MEAN, 0, 0, 0, 0, 0, 0, 0, 0},
      {"ignore_index", CLXENT_MEAN, 0, 1, 0, 0, 0, 0, 0, 0},
      {"class weights", CLXENT_MEAN, 1, 1, 0, 0, 0, 0, 0, 0},
      {"smoothing+weights", CLXENT_MEAN, 1, 1, 1, 0, 0, 0, 0, 0},
      {"z-loss", CLXENT_MEAN, 0, 1, 0, 1, 0, 0, 0, 0},
      {"softcap+smoothing+z", CLXENT_MEAN, 0, 1, 1, 1, 1, 0, 0, 0},
      {"weights+z-loss", CLXENT_MEAN, 1, 1, 1, 1, 1, 0, 0, 1},
      {"mean_denominator+weights+z", CLXENT_MEAN, 1, 1, 1, 1, 0, 0, 1, 0},
      {"grad_output mean", CLXENT_MEAN, 1, 1, 0, 0, 1, 1, 0, 0},
      {"sum", CLXENT_SUM, 1, 1, 1, 1, 0, 0, 0, 0},
      {"sum grad_output", CLXENT_SUM, 0, 1, 0, 1, 1, 1, 0, 0},
      {"none", CLXENT_NONE, 1, 1, 1, 1, 1, 0, 0, 0},
      {"none grad_output", CLXENT_NONE, 0, 1, 0, 0, 0, 1, 0, 0},
      {"all ignored", CLXENT_MEAN, 0, 2, 0, 0, 0, 0, 0, 0},
      {"tiny weight (weights shared)", CLXENT_MEAN, 2, 1, 1, 0, 0, 0, 0, 0},
      {"tiny weights (rescaled)", CLXENT_MEAN, 3, 1, 1, 0, 0, 0, 0, 0},
  };
  for (int split = 0; split < 4; ++split) binade_case(ctx, split);
#ifdef CLXENT_MPI_TEST_HOOKS
  /* the test build: the allocation failures, and the paths the weight cases take */
  for (int mode = 0; mode < 4; ++mode)
    for (int culprit = 0; culprit < ranks; culprit += ranks > 1 ? ranks - 1 : 1) fault_sweep(ctx, mode, culprit);
  run_case(ctx, 300, 40, 1, &configs[15]); /* tiny weights: the divisor below 2^-64 */
  EXPECT(clxent_mpi_test_paths() & CLXENT_MPI_PATH_RESCALED, "tiny weights: the weights were not rescaled");
  run_case(ctx, 300, 40, 1, &configs[2]);
  EXPECT(!(clxent_mpi_test_paths() & (CLXENT_MPI_PATH_RESCALED | CLXENT_MPI_PATH_WEIGHTS_SHARED)),
         "ordinary weights: a fallback path was taken");
  const int hooks_only = 1;
#else
  const int hooks_only = 0;
#endif
  static const size_t shapes[][2] = {{1, 5}, {37, 7}, {300, 40}, {70, 300}, {5000, 3}, {20011, 9}};
  for (size_t s = 0; !hooks_only && s < sizeof shapes / sizeof shapes[0]; ++s)
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; ++k)
      for (int split = 0; split < 4; ++split) {
        if (shapes[s][0] > 1000 && split != 1 && split != 2) continue; /* big batches: two splits */
        run_case(ctx, shapes[s][0], shapes[s][1], split, &configs[k]);
      }
  for (size_t k = 0; !hooks_only && k < sizeof configs / sizeof configs[0]; ++k) {
    if (configs[k].grad_tolerance || configs[k].upstream || configs[k].weights > 1) continue;
    for (int split = 0; split < 4; ++split) {
      run_case_16(ctx, 300, 40, split, &configs[k], split % 2 ? CLXENT_FLOAT16 : CLXENT_BFLOAT16);
      run_case_16(ctx, 2100, 9, split, &configs[k], split % 2 ? CLXENT_BFLOAT16 : CLXENT_FLOAT16);
    }
  }
  static const size_t vocab_shapes[][2] = {{1, 5}, {33, 17}, {40, 300}, {9000, 8}};
  for (size_t s = 0; !hooks_only && s < sizeof vocab_shapes / sizeof vocab_shapes[0]; ++s)
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; ++k)
      for (int split = 0; split < 3; ++split) {
        if ((size_t)ranks > vocab_shapes[s][1]) continue;
        vocab_case(ctx, vocab_shapes[s][0], vocab_shapes[s][1], split, &configs[k]);
      }
  for (size_t k = 0; !hooks_only && k < sizeof configs / sizeof configs[0]; ++k) {
    if (configs[k].upstream || configs[k].weights > 1) continue;
    for (int split = 0; split < 3; ++split) {
      if ((size_t)ranks > 17) continue;
      vocab_case_16(ctx, 33, 17, split, &configs[k], split % 2 ? CLXENT_FLOAT16 : CLXENT_BFLOAT16);
      vocab_case_16(ctx, 40, 300, split, &configs[k], split % 2 ? CLXENT_BFLOAT16 : CLXENT_FLOAT16);
    }
  }
  vocab_error_case(ctx, "label", CLXENT_ERR_LABEL_RANGE);
  vocab_error_case(ctx, "tiling", CLXENT_ERR_INVALID_ARG);
  if (ranks > 1) vocab_error_case(ctx, "n", CLXENT_ERR_INVALID_ARG);
  error_case(ctx, "label", CLXENT_ERR_LABEL_RANGE);
  error_case(ctx, "option", CLXENT_ERR_INVALID_ARG);
  if (ranks > 1) {
    error_case(ctx, "mismatch", CLXENT_ERR_INVALID_ARG);
    error_case(ctx, "weights", CLXENT_ERR_INVALID_ARG);
  }
  clxent_destroy(ctx);
  int all = 0;
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("test_mpi: %d ranks, %s (%d failures)\n", ranks, all ? "FAILED" : "passed", all);
  MPI_Finalize();
  return all ? 1 : 0;
}
