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
  static const size_t shapes[][2] = {{1, 5}, {37, 7}, {300, 40}, {70, 300}, {5000, 3}, {20011, 9}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; ++k)
      for (int split = 0; split < 4; ++split) {
        if (shapes[s][0] > 1000 && split != 1 && split != 2) continue; /* big batches: two splits */
        run_case(ctx, shapes[s][0], shapes[s][1], split, &configs[k]);
      }
  static const size_t vocab_shapes[][2] = {{1, 5}, {33, 17}, {40, 300}, {9000, 8}};
  for (size_t s = 0; s < sizeof vocab_shapes / sizeof vocab_shapes[0]; ++s)
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; ++k)
      for (int split = 0; split < 3; ++split) {
        if ((size_t)ranks > vocab_shapes[s][1]) continue;
        vocab_case(ctx, vocab_shapes[s][0], vocab_shapes[s][1], split, &configs[k]);
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
