/*
 * clxent_mpi under mpirun -np 1..4 (tests/CMakeLists.txt). Every rank builds the same global
 * batch, computes the one-process result itself on its own context (clxent_softmax_xent_ex on the
 * whole batch), and checks its share of the data-parallel result against it: the loss, the
 * gradient in its storage type and lse bit for bit, for every combination of the options (class
 * weights + z-loss + MEAN included) in float32, float16 and bfloat16. Splits: even, uneven, ranks
 * with no rows, and sizes that cross the reduction's blocks. The vocabulary-parallel path within
 * float32 rounding (its documented guarantee), the same bits on every rank and run to run.
 * Errors: a bad label, a bad option or options that differ on one rank give the same status on
 * every rank and leave every output untouched.
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
} config;

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

static size_t elem_size(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 4 : 2; }

/* Element k of an array of dtype t, as float. */
static float value_at(const void *a, size_t k, clxent_dtype t) {
  return t == CLXENT_FLOAT32 ? ((const float *)a)[k] : from_16(((const uint16_t *)a)[k], t);
}

/* One configuration's global batch, the same on every rank: n rows of c logits of dtype t in
 * [-4, 4], labels (20% ignored with cf->ignore, all with 2), class weights, per-row upstream
 * gradients. Weights 2: one tiny weight, so that Σ w_{y_i} rounds in double and the ranks share
 * their rows' weights; 3: every weight tiny, so that the divisor is below 2^-64 and the weights
 * are rescaled as the core does; 4: every weight 0, a MEAN of 0/0 (NaN loss, NaN gradient on the
 * rows counted). */
typedef struct batch {
  size_t n, c;
  clxent_dtype t;
  void *z;
  int32_t *y;
  float *w, *up;
  clxent_opts o; /* cf's options over w and up */
} batch;

static batch make_batch(size_t n, size_t c, const config *cf, clxent_dtype t) {
  batch b = {n, c, t, malloc(n * c * elem_size(t)), malloc(n * sizeof(int32_t)), malloc(c * sizeof(float)),
             malloc(n * sizeof(float)), CLXENT_OPTS_INIT};
  for (size_t k = 0; k < n * c; ++k) {
    const float v = (float)(uniform() * 8.0 - 4.0);
    if (t == CLXENT_FLOAT32) ((float *)b.z)[k] = v;
    else ((uint16_t *)b.z)[k] = to_16(v, t);
  }
  for (size_t i = 0; i < n; ++i) {
    b.y[i] = (int32_t)(uniform() * (double)c);
    if (cf->ignore && uniform() < 0.2) b.y[i] = -100;
    if (cf->ignore == 2) b.y[i] = -100;
    b.up[i] = (float)(uniform() + 0.5);
  }
  for (size_t j = 0; j < c; ++j) b.w[j] = (float)(uniform() * 2.0);
  if (cf->weights == 2) b.w[0] = 1e-30f;
  for (size_t j = 0; cf->weights >= 3 && j < c; ++j) b.w[j] = cf->weights == 3 ? b.w[j] * 1e-36f + 1e-37f : 0.0f;
  b.o.reduction = cf->reduction;
  if (cf->weights) b.o.class_weight = b.w;
  if (cf->smoothing) b.o.label_smoothing = 0.1f;
  if (cf->zloss) b.o.z_loss = 1e-3f;
  if (cf->softcap) b.o.softcap = 5.0f;
  if (cf->denominator) b.o.mean_denominator = 300.0;
  static const float g_one = 0.75f;
  if (cf->upstream) b.o.grad_output = cf->reduction == CLXENT_NONE ? b.up : &g_one;
  return b;
}

static void free_batch(batch *b) { free(b->z), free(b->y), free(b->w), free(b->up); }

/* How many of count elements (elem bytes each) differ in their bits; *first the first. */
static size_t bits_differ(const void *a, const void *b, size_t count, size_t elem, size_t *first) {
  size_t bad = 0;
  for (size_t k = 0; k < count; ++k)
    if (memcmp((const char *)a + k * elem, (const char *)b + k * elem, elem) && bad++ == 0) *first = k;
  return bad;
}

/* clxent_mpi_softmax_xent_ex, this rank's rows of a split, with ex->lse on every rank (also one
 * without rows: the outputs asked for must agree), against one process's clxent_softmax_xent_ex
 * on the whole batch: the loss, the gradient (in its storage type) and lse bit for bit. */
static void run_case(clxent_ctx *ctx, size_t n, size_t c, int split, const config *cf, clxent_dtype t) {
  batch b = make_batch(n, c, cf, t);
  const size_t es = elem_size(t);
  void *g_ref = malloc(n * c * es), *g = malloc(n * c * es);
  float *loss_ref = malloc(n * sizeof(float)), *loss = malloc(n * sizeof(float));
  float *lse_ref = malloc(n * sizeof(float)), *lse = malloc(n * sizeof(float));
  clxent_ex x = CLXENT_EX_INIT;
  x.dtype = t, x.lse = lse_ref;
  EXPECT(clxent_softmax_xent_ex(ctx, n, c, b.z, b.y, &b.o, &x, loss_ref, g_ref) == CLXENT_OK,
         "%s dtype %d: reference failed: %s", cf->name, (int)t, clxent_last_error(ctx));
  if (cf->weights >= 3 && cf->reduction == CLXENT_MEAN) { /* that the case reaches what it is for */
    double divisor = 0.0;
    for (size_t i = 0; i < n; ++i) divisor += b.y[i] == -100 ? 0.0 : b.w[b.y[i]];
    EXPECT(cf->weights == 3 ? divisor > 0.0 && divisor < 0x1p-64 : divisor == 0.0 && isnan(loss_ref[0]),
           "%s: the divisor %g does not make the case", cf->name, divisor);
  }
  size_t start = 0, count = 0;
  split_rows(n, split, &start, &count);
  clxent_opts lo = b.o;
  if (cf->upstream && cf->reduction == CLXENT_NONE) lo.grad_output = b.up + start;
  x.lse = lse;
  const clxent_status st =
      clxent_mpi_softmax_xent_ex(ctx, MPI_COMM_WORLD, count, c, count ? (char *)b.z + start * c * es : NULL,
                                 count ? b.y + start : NULL, &lo, &x, loss, g);
  EXPECT(st == CLXENT_OK, "%s n=%zu c=%zu split %d dtype %d: %s", cf->name, n, c, split, (int)t,
         clxent_mpi_last_error());
  if (st == CLXENT_OK) {
    const int none = cf->reduction == CLXENT_NONE;
    const size_t losses = none ? count : 1;
    const float *want = none ? loss_ref + start : loss_ref;
    size_t k = 0, bad = bits_differ(loss, want, losses, sizeof(float), &k);
    EXPECT(!bad, "%s n=%zu c=%zu split %d dtype %d: %zu losses differ, first [%zu] %.9g vs one process %.9g", cf->name,
           n, c, split, (int)t, bad, k, (double)loss[k], (double)want[k]);
    bad = bits_differ(g, (char *)g_ref + start * c * es, count * c, es, &k);
    EXPECT(!bad, "%s n=%zu c=%zu split %d dtype %d: %zu gradient values differ, first at %zu: %.9g vs %.9g", cf->name,
           n, c, split, (int)t, bad, k, (double)value_at(g, k, t), (double)value_at(g_ref, start * c + k, t));
    bad = bits_differ(lse, lse_ref + start, count, sizeof(float), &k);
    EXPECT(!bad, "%s n=%zu c=%zu split %d dtype %d: %zu lse values differ", cf->name, n, c, split, (int)t, bad);
  }
  free_batch(&b);
  free(g_ref), free(g), free(loss_ref), free(loss), free(lse_ref), free(lse);
}
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


/* a within tol of r; NaN where r is NaN, whatever its sign (a MEAN of 0/0 on both sides) */
static int near(float a, float r, float tol) { return same_bits(a, r) || (isnan(a) && isnan(r)) || fabsf(a - r) <= tol; }

/* clxent_mpi_softmax_xent_vocab_ex, this rank's columns, against one process's
 * clxent_softmax_xent_ex on the full rows: the loss and lse within float32 rounding, the gradient
 * within float32 rounding plus, for 16-bit storage, one ulp of its type (each side rounds its own
 * float32 value once); the same loss bits on every rank, and a second run's bits equal to the first. */
static void vocab_case(clxent_ctx *ctx, size_t n, size_t c, int split, const config *cf, clxent_dtype t) {
  batch b = make_batch(n, c, cf, t);
  const size_t es = elem_size(t);
  void *g_ref = malloc(n * c * es);
  float *loss_ref = malloc(n * sizeof(float)), *lse_ref = malloc(n * sizeof(float));
  clxent_ex x = CLXENT_EX_INIT;
  x.dtype = t, x.lse = lse_ref;
  EXPECT(clxent_softmax_xent_ex(ctx, n, c, b.z, b.y, &b.o, &x, loss_ref, g_ref) == CLXENT_OK,
         "vocab %s dtype %d: reference failed: %s", cf->name, (int)t, clxent_last_error(ctx));
  size_t off = 0, width = 0;
  split_cols(c, split, &off, &width);
  void *zl = malloc(n * width * es), *g = malloc(n * width * es), *g2 = malloc(n * width * es);
  float *loss = malloc(n * sizeof(float)), *loss2 = malloc(n * sizeof(float));
  float *lse = malloc(n * sizeof(float)), *lse2 = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; ++i) memcpy((char *)zl + i * width * es, (char *)b.z + (i * c + off) * es, width * es);
  clxent_opts lo = b.o;
  if (cf->weights) lo.class_weight = b.w + off;
  x.lse = lse;
  clxent_status st = clxent_mpi_softmax_xent_vocab_ex(ctx, MPI_COMM_WORLD, n, width, off, c, zl, b.y, &lo, &x, loss, g);
  EXPECT(st == CLXENT_OK, "vocab %s n=%zu c=%zu split %d dtype %d: %s", cf->name, n, c, split, (int)t,
         clxent_mpi_last_error());
  if (st == CLXENT_OK) {
    const size_t losses = cf->reduction == CLXENT_NONE ? n : 1;
    for (size_t i = 0; i < losses; ++i)
      EXPECT(near(loss[i], loss_ref[i], 2e-5f * fabsf(loss_ref[i]) + 1e-6f),
             "vocab %s n=%zu c=%zu split %d dtype %d: loss[%zu] %.9g vs %.9g", cf->name, n, c, split, (int)t, i,
             (double)loss[i], (double)loss_ref[i]);
    for (size_t i = 0; i < n; ++i)
      EXPECT(near(lse[i], lse_ref[i], 1e-5f * fabsf(lse_ref[i]) + 1e-6f),
             "vocab %s dtype %d: lse[%zu] %.9g vs %.9g", cf->name, (int)t, i, (double)lse[i], (double)lse_ref[i]);
    /* every rank holds the same loss bits */
    uint32_t bits, lo_bits, hi_bits;
    memcpy(&bits, &loss[0], sizeof bits);
    MPI_Allreduce(&bits, &lo_bits, 1, MPI_UINT32_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&bits, &hi_bits, 1, MPI_UINT32_T, MPI_MAX, MPI_COMM_WORLD);
    EXPECT(lo_bits == hi_bits, "vocab %s dtype %d: the ranks hold different losses", cf->name, (int)t);
    const float ulp = t == CLXENT_FLOAT16 ? 0x1p-10f : t == CLXENT_BFLOAT16 ? 0x1p-7f : 0.0f;
    float gmax = 0.0f;
    for (size_t k = 0; k < n * c; ++k) gmax = fmaxf(gmax, fabsf(value_at(g_ref, k, t)));
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < width; ++j) {
        const float a = value_at(g, i * width + j, t), r = value_at(g_ref, i * c + off + j, t);
        if (!near(a, r, ulp * fabsf(r) + 1e-5f * gmax) && bad++ == 0) first_bad = i * width + j;
      }
    EXPECT(bad == 0, "vocab %s n=%zu c=%zu split %d dtype %d: %zu gradient values differ, first at %zu", cf->name, n, c,
           split, (int)t, bad, first_bad);
    /* run to run: the same bits */
    x.lse = lse2;
    st = clxent_mpi_softmax_xent_vocab_ex(ctx, MPI_COMM_WORLD, n, width, off, c, zl, b.y, &lo, &x, loss2, g2);
    EXPECT(st == CLXENT_OK && !memcmp(loss, loss2, losses * sizeof *loss) && !memcmp(g, g2, n * width * es) &&
               !memcmp(lse, lse2, n * sizeof *lse),
           "vocab %s dtype %d: a second run differs", cf->name, (int)t);
  }
  free_batch(&b);
  free(g_ref), free(loss_ref), free(lse_ref), free(zl), free(g), free(g2), free(loss), free(loss2), free(lse), free(lse2);
}
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
      {"plain mean", CLXENT_MEAN, 0, 0, 0, 0, 0, 0, 0},
      {"ignore_index", CLXENT_MEAN, 0, 1, 0, 0, 0, 0, 0},
      {"class weights", CLXENT_MEAN, 1, 1, 0, 0, 0, 0, 0},
      {"smoothing+weights", CLXENT_MEAN, 1, 1, 1, 0, 0, 0, 0},
      {"z-loss", CLXENT_MEAN, 0, 1, 0, 1, 0, 0, 0},
      {"softcap+smoothing+z", CLXENT_MEAN, 0, 1, 1, 1, 1, 0, 0},
      {"weights+z-loss", CLXENT_MEAN, 1, 1, 1, 1, 1, 0, 0},
      {"weights+z-loss+grad_output", CLXENT_MEAN, 1, 1, 0, 1, 0, 1, 0},
      {"mean_denominator+weights+z", CLXENT_MEAN, 1, 1, 1, 1, 0, 0, 1},
      {"grad_output mean", CLXENT_MEAN, 1, 1, 0, 0, 1, 1, 0},
      {"sum", CLXENT_SUM, 1, 1, 1, 1, 0, 0, 0},
      {"sum grad_output", CLXENT_SUM, 0, 1, 0, 1, 1, 1, 0},
      {"none", CLXENT_NONE, 1, 1, 1, 1, 1, 0, 0},
      {"none grad_output", CLXENT_NONE, 0, 1, 0, 0, 0, 1, 0},
      {"all ignored", CLXENT_MEAN, 0, 2, 0, 0, 0, 0, 0},
      {"all ignored, weights+z", CLXENT_MEAN, 1, 2, 0, 1, 0, 0, 0},
      {"tiny weight (weights shared)", CLXENT_MEAN, 2, 1, 1, 1, 0, 0, 0},
      {"tiny weights (rescaled)", CLXENT_MEAN, 3, 1, 1, 1, 0, 0, 0},
      {"zero weights (0/0)", CLXENT_MEAN, 4, 1, 0, 1, 0, 0, 0},
  };
  enum { CONFIGS = sizeof configs / sizeof configs[0] };
  static const clxent_dtype dtypes[] = {CLXENT_FLOAT32, CLXENT_FLOAT16, CLXENT_BFLOAT16};
  for (int split = 0; split < 4; ++split) binade_case(ctx, split);
#ifdef CLXENT_MPI_TEST_HOOKS
  /* the test build: the allocation failures, and the path the weight cases take */
  for (int mode = 0; mode < 4; ++mode)
    for (int culprit = 0; culprit < ranks; culprit += ranks > 1 ? ranks - 1 : 1) fault_sweep(ctx, mode, culprit);
  run_case(ctx, 300, 40, 1, &configs[2], CLXENT_FLOAT32);
  EXPECT(!(clxent_mpi_test_paths() & CLXENT_MPI_PATH_WEIGHTS_SHARED), "ordinary weights: the weights were shared");
  const int hooks_only = 1;
#else
  const int hooks_only = 0;
#endif
  /* the named configurations: every shape and split in float32 (big batches, which cross the
   * reduction's blocks: two splits), two shapes in each 16-bit type */
  static const size_t shapes[][2] = {{1, 5}, {37, 7}, {300, 40}, {70, 300}, {5000, 3}, {20011, 9}};
  for (size_t s = 0; !hooks_only && s < sizeof shapes / sizeof shapes[0]; ++s)
    for (size_t k = 0; k < CONFIGS; ++k)
      for (int split = 0; split < 4; ++split) {
        if (shapes[s][0] > 1000 && split != 1 && split != 2) continue;
        run_case(ctx, shapes[s][0], shapes[s][1], split, &configs[k], CLXENT_FLOAT32);
      }
  for (size_t k = 0; !hooks_only && k < CONFIGS; ++k)
    for (int split = 0; split < 4; ++split) {
      run_case(ctx, 300, 40, split, &configs[k], split % 2 ? CLXENT_FLOAT16 : CLXENT_BFLOAT16);
      run_case(ctx, 2100, 9, split, &configs[k], split % 2 ? CLXENT_BFLOAT16 : CLXENT_FLOAT16);
    }
  /* every combination of the options, in every storage type, on an uneven split and on one with
   * ranks of no rows: reduction × class weights × ignore_index × label smoothing × z-loss ×
   * softcap × grad_output (× mean_denominator for MEAN) */
  for (int combo = 0; !hooks_only && combo < 3 * 128; ++combo) {
    const clxent_reduction r = (clxent_reduction)(combo / 128);
    const int bit = combo % 128;
    if (r != CLXENT_MEAN && (bit & 64)) continue; /* mean_denominator: MEAN only */
    char name[96];
    snprintf(name, sizeof name, "combination %d (reduction %d, option bits %#x)", combo, (int)r, bit);
    const config cf = {name, r, bit & 1, (bit >> 1) & 1, (bit >> 2) & 1, (bit >> 3) & 1, (bit >> 4) & 1,
                       (bit >> 5) & 1, (bit >> 6) & 1};
    for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; ++t)
      for (int split = 1; split <= 2; ++split) run_case(ctx, 61, 13, split, &cf, dtypes[t]);
  }
  static const size_t vocab_shapes[][2] = {{1, 5}, {33, 17}, {40, 300}, {9000, 8}};
  for (size_t s = 0; !hooks_only && s < sizeof vocab_shapes / sizeof vocab_shapes[0]; ++s)
    for (size_t k = 0; k < CONFIGS; ++k)
      for (int split = 0; split < 3; ++split) {
        if ((size_t)ranks > vocab_shapes[s][1]) continue;
        vocab_case(ctx, vocab_shapes[s][0], vocab_shapes[s][1], split, &configs[k], CLXENT_FLOAT32);
      }
  for (size_t k = 0; !hooks_only && k < CONFIGS; ++k) {
    if (configs[k].upstream || configs[k].weights > 1) continue;
    for (int split = 0; split < 3; ++split) {
      if ((size_t)ranks > 17) continue;
      vocab_case(ctx, 33, 17, split, &configs[k], split % 2 ? CLXENT_FLOAT16 : CLXENT_BFLOAT16);
      vocab_case(ctx, 40, 300, split, &configs[k], split % 2 ? CLXENT_BFLOAT16 : CLXENT_FLOAT16);
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
