/*
 * clxent over MPI (include/clxent_mpi.h). Built on the public API of the core (and its
 * experimental clxent_get_info, for the reduction's group size), so the core never sees MPI.
 *
 * Data-parallel, one call:
 *   1. every rank checks its own arguments on the host (the checks of the core that can fail a
 *      call: shapes, pointers, struct sizes, option values, labels, grad_output) and hashes what
 *      must be the same everywhere (c, options, class weights); one MPI_Allgather of a small
 *      record per rank (status, message, n_local, counted rows, Σ w_{y_i}, hash) lets every rank
 *      compute the same verdict and the same global divisor, in rank order. A failure anywhere is
 *      returned everywhere before anything is written.
 *   2. each rank runs its rows through clxent_softmax_xent_ex() with reduction NONE and
 *      grad_output = the global MEAN scale per row (a product with 1 in the kernel: the bits of
 *      one process's scale), its per-row losses into a scratch array.
 *   3. the global loss is the core's fixed reduction (host/reduce.c, kernels/reduce.cl) over the
 *      concatenated per-row losses: its first stage sums aligned blocks of SPAN = G·16 values, and
 *      only those blocks decide the order. Each rank sums the blocks that lie wholly in its rows,
 *      and one MPI_Allgatherv carries those block sums, the loose per-row values of the (at most
 *      two) blocks it shares with other ranks, and its compute status. Every rank then finishes
 *      the same stages in the same order: the one-process bits, on every rank.
 */
#define CLXENT_EXPERIMENTAL_API /* clxent_get_info: the reduction's group size */
#include "clxent_mpi.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDUCE_ITEMS 16 /* CLXENT_REDUCE_ITEMS of kernels/clxent_defs.h: the reduction's shape */
#define MSG_MAX 200

static _Thread_local char last_error[MSG_MAX + 64 + MPI_MAX_ERROR_STRING];

const char *clxent_mpi_last_error(void) { return last_error; }

/* What the calling thread's last call spent: its collectives' time and bytes, and its total. */
static _Thread_local clxent_mpi_stats last_stats;

clxent_mpi_stats clxent_mpi_last_stats(void) { return last_stats; }

/* A collective, timed, its bytes counted (sent by this rank, received by it). */
#define TIMED(call, sent, received)                  \
  do {                                               \
    const double t0_ = MPI_Wtime();                  \
    err = (call);                                    \
    last_stats.comm_s += MPI_Wtime() - t0_;          \
    last_stats.bytes_sent += (uint64_t)(sent);       \
    last_stats.bytes_received += (uint64_t)(received); \
    ++last_stats.collectives;                        \
  } while (0)

/* What a rank tells every other before anything is written. */
typedef struct agree_rec {
  int32_t status;
  uint32_t group_size;
  uint64_t n_local;
  uint64_t counted;
  uint64_t hash;
  double weighted;  /* Σ w_{y_i} over this rank's counted rows, in row order */
  int32_t ulp_exp;  /* the smallest ulp exponent among those weights (INT32_MAX: none) */
  int32_t pad;
  char msg[MSG_MAX];
} agree_rec;

/* A local failure's status and message, before the ranks agree. */
typedef struct local_check {
  clxent_status st;
  char msg[MSG_MAX];
} local_check;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(local_check *lc, clxent_status st, const char *fmt, ...) {
  if (lc->st != CLXENT_OK) return 1;
  lc->st = st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(lc->msg, sizeof lc->msg, fmt, ap);
  va_end(ap);
  return 1;
}

static uint64_t fnv(uint64_t h, const void *p, size_t bytes) {
  const unsigned char *b = p;
  for (size_t k = 0; k < bytes; ++k) h = (h ^ b[k]) * 0x100000001b3ull;
  return h;
}

/* The caller's sized clxent_opts / clxent_ex over the defaults (fields past its size keep them). */
static int read_sized(local_check *lc, const char *what, const void *caller, void *known, size_t known_size) {
  size_t size;
  memcpy(&size, caller, sizeof size);
  if (size < sizeof(size_t)) return fail(lc, CLXENT_ERR_INVALID_ARG, "%s->size = %zu is too small", what, size);
  const unsigned char *c = caller;
  for (size_t k = known_size; k < size; ++k)
    if (c[k]) return fail(lc, CLXENT_ERR_INVALID_ARG, "%s has a field this library does not know set (byte %zu)", what, k);
  memcpy((unsigned char *)known + sizeof(size_t), c + sizeof(size_t), (size < known_size ? size : known_size) - sizeof(size_t));
  memcpy(known, &known_size, sizeof known_size);
  return 0;
}

static int bad_scalar(float v, float lo, float hi, int hi_open) {
  return !(isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi));
}

static size_t dtype_size(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 4 : 2; }

/* The host checks of one rank (the core's, for the arguments a data-parallel call can get wrong),
 * its label statistics and its hash of what must agree. */
static void check_local(local_check *lc, agree_rec *r, clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                        const int32_t *labels, const clxent_opts *o, const clxent_ex *x, const float *loss,
                        const void *grad) {
  r->ulp_exp = INT32_MAX;
  if (!ctx) {
    fail(lc, CLXENT_ERR_INVALID_ARG, "ctx is NULL");
    return;
  }
  clxent_info info = CLXENT_INFO_INIT;
  if (clxent_get_info(ctx, 0, &info) != CLXENT_OK) fail(lc, CLXENT_ERR_INVALID_ARG, "clxent_get_info failed");
  r->group_size = (uint32_t)info.group_size;
  if (c == 0) fail(lc, CLXENT_ERR_INVALID_ARG, "c (classes) is 0");
  else if (n > SIZE_MAX / c / 4) fail(lc, CLXENT_ERR_INVALID_ARG, "n_local * c overflows");
  if (n && !logits) fail(lc, CLXENT_ERR_INVALID_ARG, "logits is NULL");
  if (n && !labels) fail(lc, CLXENT_ERR_INVALID_ARG, "labels is NULL");
  if (!loss && !grad) fail(lc, CLXENT_ERR_INVALID_ARG, "loss and grad are both NULL");
  if (x->bias_grad || x->argmax || x->correct || x->inner > 1)
    fail(lc, CLXENT_ERR_INVALID_ARG, "ex->bias_grad, argmax, correct and inner are not supported by clxent_mpi");
  if ((unsigned)x->dtype > (unsigned)CLXENT_BFLOAT16) fail(lc, CLXENT_ERR_INVALID_ARG, "ex->dtype = %d is unknown", (int)x->dtype);
  if ((unsigned)o->reduction > (unsigned)CLXENT_NONE)
    fail(lc, CLXENT_ERR_INVALID_ARG, "opts->reduction = %d is not a clxent_reduction", (int)o->reduction);
  if (o->pos_weight) fail(lc, CLXENT_ERR_INVALID_ARG, "opts->pos_weight applies to the binary losses only");
  if (bad_scalar(o->label_smoothing, 0.0f, 1.0f, 1)) fail(lc, CLXENT_ERR_INVALID_ARG, "opts->label_smoothing = %g is outside [0, 1)", (double)o->label_smoothing);
  if (bad_scalar(o->z_loss, 0.0f, INFINITY, 1)) fail(lc, CLXENT_ERR_INVALID_ARG, "opts->z_loss = %g is outside [0, inf)", (double)o->z_loss);
  if (bad_scalar(o->softcap, 0.0f, INFINITY, 1)) fail(lc, CLXENT_ERR_INVALID_ARG, "opts->softcap = %g is outside [0, inf)", (double)o->softcap);
  for (size_t j = 0; o->class_weight && j < c; ++j)
    if (!isfinite(o->class_weight[j]) || o->class_weight[j] < 0.0f) {
      fail(lc, CLXENT_ERR_INVALID_ARG, "opts->class_weight[%zu] = %g must be finite and >= 0", j, (double)o->class_weight[j]);
      break;
    }
  const size_t upstream = !o->grad_output ? 0 : o->reduction == CLXENT_NONE ? n : 1;
  for (size_t k = 0; k < upstream; ++k)
    if (!isfinite(o->grad_output[k])) {
      fail(lc, CLXENT_ERR_INVALID_ARG, "opts->grad_output[%zu] = %g must be finite", k, (double)o->grad_output[k]);
      break;
    }
  const double d = o->mean_denominator;
  if (d != 0.0 && o->reduction != CLXENT_MEAN) fail(lc, CLXENT_ERR_INVALID_ARG, "opts->mean_denominator applies to CLXENT_MEAN only");
  if (d != 0.0 && !(d >= FLT_MIN && d <= FLT_MAX))
    fail(lc, CLXENT_ERR_INVALID_ARG, "opts->mean_denominator = %g must be 0 or a finite positive float", d);
  /* labels: the core's check, with the statistics the global divisor needs */
  uint64_t counted = 0;
  double weighted = 0.0;
  for (size_t i = 0; lc->st == CLXENT_OK && i < n; ++i) {
    const int32_t y = labels[i];
    if (y == o->ignore_index) continue;
    if (y < 0 || (size_t)y >= c) {
      fail(lc, CLXENT_ERR_LABEL_RANGE, "labels[%zu] = %d is outside [0, %zu) and is not ignore_index (%d)", i, (int)y, c,
           (int)o->ignore_index);
      break;
    }
    ++counted;
    if (o->class_weight) {
      const float w = o->class_weight[y];
      weighted += w;
      if (w > 0.0f) {
        int e;
        frexpf(w, &e);
        if (e - 24 < r->ulp_exp) r->ulp_exp = e - 24;
      }
    }
  }
  r->counted = counted;
  r->weighted = weighted;
  r->n_local = n;
  /* what must be the same on every rank */
  uint64_t h = 0xcbf29ce484222325ull;
  const uint64_t cc = c;
  const int32_t flags[] = {(int32_t)o->reduction, o->ignore_index, o->class_weight != NULL, o->grad_output != NULL,
                           loss != NULL, grad != NULL, (int32_t)x->dtype, x->lse != NULL};
  h = fnv(h, &cc, sizeof cc);
  h = fnv(h, flags, sizeof flags);
  h = fnv(h, &o->label_smoothing, sizeof(float));
  h = fnv(h, &o->z_loss, sizeof(float));
  h = fnv(h, &o->softcap, sizeof(float));
  h = fnv(h, &o->mean_denominator, sizeof(double));
  if (o->grad_output && o->reduction != CLXENT_NONE && lc->st == CLXENT_OK) h = fnv(h, o->grad_output, sizeof(float));
  if (o->class_weight && lc->st == CLXENT_OK) h = fnv(h, o->class_weight, c * sizeof(float));
  r->hash = h;
}

/* ---------------------------------------------------------------- the core's reduction order */

/* One group of reduce_sum (kernels/reduce.cl, host/reduce.c's host_reduce) over the cnt ≤ G·R
 * values of its span: item i adds w[k·G + i] for k = 0.. in order from 0, then the fixed tree. */
static float group_sum(const float *w, size_t cnt, size_t G, float *lane) {
  for (size_t i = 0; i < G; ++i) lane[i] = 0.0f;
  for (size_t k = 0; k < REDUCE_ITEMS; ++k) {
    const size_t start = k * G;
    if (start >= cnt) break;
    const size_t items = cnt - start < G ? cnt - start : G;
    for (size_t i = 0; i < items; ++i) lane[i] += w[start + i];
  }
  for (size_t step = G / 2; step > 0; step /= 2)
    for (size_t i = 0; i < step; ++i) lane[i] += lane[i + step];
  return lane[0];
}

/* The stages after the first: host_reduce of host/reduce.c over v[0..count), count > 1. */
static float later_stages(float *v, size_t count, size_t G, float divisor, float *lane) {
  const size_t span = G * REDUCE_ITEMS;
  do {
    const size_t groups = (count + span - 1) / span;
    const float d = groups == 1 ? divisor : 1.0f;
    for (size_t g = 0; g < groups; ++g) {
      const size_t cnt = count - g * span < span ? count - g * span : span;
      v[g] = group_sum(v + g * span, cnt, G, lane) / d;
    }
    count = groups;
  } while (count > 1);
  return v[0];
}

/* How rank rows [a, e) of the global N meet the first stage's blocks: blocks [b0, b1] (b1 < b0
 * when the rank has no rows); a block is the rank's own when it lies wholly in [a, e). */
static int own_block(size_t b, size_t a, size_t e, size_t N, size_t span) {
  const size_t lo = b * span, hi = (b + 1) * span < N ? (b + 1) * span : N;
  return lo >= a && hi <= e;
}

/* The number of floats rank [a, e) contributes: 1 per own block, its rows of the others, and
 * its status (first). */
static size_t contribution(size_t a, size_t e, size_t N, size_t span) {
  size_t k = 1;
  if (e == a) return k;
  for (size_t b = a / span; b <= (e - 1) / span; ++b) {
    if (own_block(b, a, e, N, span)) ++k;
    else {
      const size_t lo = b * span > a ? b * span : a, hi = (b + 1) * span < e ? (b + 1) * span : e;
      k += hi - lo;
    }
  }
  return k;
}

/* ---------------------------------------------------------------- data-parallel */

static clxent_status finish(clxent_status st, int rank, const char *msg) {
  if (st != CLXENT_OK) snprintf(last_error, sizeof last_error, "rank %d: %s", rank, msg);
  return st;
}

static clxent_status mpi_fail(int err, const char *what) {
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(err, s, &len);
  snprintf(last_error, sizeof last_error, "%s failed: %s", what, s);
  return CLXENT_ERR_OPENCL; /* the communication failed: an "other failure" of the call */
}

static clxent_status data_parallel(clxent_ctx *ctx, MPI_Comm comm, size_t n_local, size_t c,
                                         const void *logits, const int32_t *labels, const clxent_opts *opts,
                                         const clxent_ex *ex, float *loss, void *grad) {
  last_error[0] = '\0';
  int rank = 0, ranks = 1, err;
  if ((err = MPI_Comm_rank(comm, &rank)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Comm_rank");
  if ((err = MPI_Comm_size(comm, &ranks)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Comm_size");

  local_check lc = {CLXENT_OK, ""};
  clxent_opts o = clxent_opts_default();
  clxent_ex x = clxent_ex_default();
  if (opts) read_sized(&lc, "opts", opts, &o, sizeof o);
  if (ex) read_sized(&lc, "ex", ex, &x, sizeof x);
  agree_rec mine;
  memset(&mine, 0, sizeof mine);
  if (lc.st == CLXENT_OK) check_local(&lc, &mine, ctx, n_local, c, logits, labels, &o, &x, loss, grad);
  mine.status = (int32_t)lc.st;
  memcpy(mine.msg, lc.msg, sizeof mine.msg);

  /* collective 1: every rank's verdict and statistics */
  agree_rec *all = malloc((size_t)ranks * sizeof *all);
  int *counts = malloc((size_t)ranks * sizeof *counts), *displs = malloc((size_t)ranks * sizeof *displs);
  if (!all || !counts || !displs) { /* a few bytes per rank: without them this rank cannot take part */
    free(all), free(counts), free(displs);
    snprintf(last_error, sizeof last_error, "rank %d: malloc of the agreement records failed", rank);
    return CLXENT_ERR_OUT_OF_MEMORY;
  }
  clxent_status st = CLXENT_OK;
  float *rows = NULL, *scale_rows = NULL, *scaled_weights = NULL, *gathered = NULL, *lane = NULL, *block = NULL;
  TIMED(MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, comm), sizeof mine,
        (size_t)ranks * sizeof mine);
  if (err != MPI_SUCCESS) {
    st = mpi_fail(err, "MPI_Allgather");
    goto out;
  }
  for (int q = 0; q < ranks; ++q)
    if (all[q].status != CLXENT_OK) {
      st = (clxent_status)all[q].status;
      snprintf(last_error, sizeof last_error, "rank %d: %s", q, all[q].msg);
      goto out;
    }
  for (int q = 1; q < ranks; ++q)
    if (all[q].hash != all[0].hash) {
      st = CLXENT_ERR_INVALID_ARG;
      snprintf(last_error, sizeof last_error,
               "rank %d: c, the options or the outputs asked for differ from rank 0's (every rank must pass the same)", q);
      goto out;
    }

  /* the global batch: offsets, counts and the divisor, in rank order (the same on every rank) */
  size_t N = 0, first = 0;
  uint64_t counted = 0;
  double weighted = 0.0;
  int32_t ulp_exp = INT32_MAX;
  for (int q = 0; q < ranks; ++q) {
    if (q == rank) first = N;
    N += all[q].n_local;
    counted += all[q].counted;
    weighted += all[q].weighted;
    if (all[q].ulp_exp < ulp_exp) ulp_exp = all[q].ulp_exp;
  }
  const size_t G = all[0].group_size, span = G * REDUCE_ITEMS;
  const int mean = o.reduction == CLXENT_MEAN, reduced = o.reduction != CLXENT_NONE && loss != NULL;
  if (o.class_weight && mean && o.mean_denominator == 0.0 && counted > 0) {
    /* One process sums w_{y_i} in double, row by row. Every weight is a multiple of 2^ulp_exp and
     * all are ≥ 0, so when the total is below 2^(53 + ulp_exp) every partial sum is exact in
     * double, in any order: the rank-order sum is the one-process sum. Else the ranks share their
     * counted rows' weights (4 bytes a row) and every rank sums them in row order. */
    if (!(weighted * (1.0 + 0x1p-50) < ldexp(1.0, 53 + ulp_exp))) {
      float *mine_w = malloc((mine.counted ? mine.counted : 1) * sizeof *mine_w);
      gathered = malloc((counted ? counted : 1) * sizeof *gathered);
      const int ok = mine_w && gathered; /* NULL: this rank cannot take part (a hang: never seen) */
      if (!ok) abort();
      size_t k = 0;
      for (size_t i = 0; ok && i < n_local; ++i)
        if (labels[i] != o.ignore_index) mine_w[k++] = o.class_weight[labels[i]];
      size_t at = 0;
      for (int q = 0; q < ranks; ++q) counts[q] = (int)all[q].counted, displs[q] = (int)at, at += all[q].counted;
      TIMED(MPI_Allgatherv(mine_w, (int)mine.counted, MPI_FLOAT, gathered, counts, displs, MPI_FLOAT, comm),
            mine.counted * sizeof(float), counted * sizeof(float));
      free(mine_w);
      if (err != MPI_SUCCESS || !ok) {
        st = err != MPI_SUCCESS ? mpi_fail(err, "MPI_Allgatherv(weights)") : finish(CLXENT_ERR_OUT_OF_MEMORY, rank, "malloc failed");
        goto out;
      }
      weighted = 0.0;
      for (size_t i = 0; i < counted; ++i) weighted += gathered[i];
      free(gathered);
      gathered = NULL;
    }
  }
  if (!o.class_weight) weighted = (double)counted;

  /* a weighted divisor far from 1: the core rescales the weights by a power of two (host/plan.c,
   * clxent_scaled_weights), so do the same, in the same way */
  const float *weights = o.class_weight;
  if (o.class_weight && mean && o.mean_denominator == 0.0 && weighted > 0 && (weighted < 0x1p-64 || weighted > 0x1p64)) {
    int e, top = 0;
    frexp(weighted, &e);
    float largest = 0.0f;
    for (size_t j = 0; j < c; ++j) largest = o.class_weight[j] > largest ? o.class_weight[j] : largest;
    frexpf(largest, &top);
    if (1 - e > 126 - top) e = top - 125;
    scaled_weights = malloc(c * sizeof *scaled_weights);
    for (size_t j = 0; scaled_weights && j < c; ++j) scaled_weights[j] = ldexpf(o.class_weight[j], 1 - e);
    weights = scaled_weights; /* NULL: this rank fails below, and every rank learns it */
    weighted = ldexp(weighted, 1 - e);
  }

  /* the scales of host/plan.c (clxent_loss_params) for the global batch */
  float S = 1.0f, Sz = 1.0f, z_row = 1.0f, divisor = 1.0f;
  if (mean && o.mean_denominator > 0) {
    divisor = (float)o.mean_denominator;
    S = Sz = 1.0f / divisor;
  } else if (mean) {
    divisor = weighted > 0 ? (float)weighted : NAN;
    S = weighted > 0 ? 1.0f / (float)weighted : counted > 0 ? NAN : 0.0f;
    Sz = counted > 0 ? 1.0f / (float)counted : 0.0f;
    z_row = (weighted > 0 && counted > 0) ? (float)(weighted / (double)counted) : 0.0f;
  }
  if (o.grad_output && o.reduction != CLXENT_NONE) S *= o.grad_output[0], Sz *= o.grad_output[0];

  /* the local call: NONE, each row's gradient scaled by S through grad_output (the kernel's scale
   * is then 1·S, exactly the one-process S), the z-loss by z_row·λ, so that the per-row loss is
   * the one process's bit for bit (its kernel adds z_loss_row·λ·lse², the same product). Its
   * gradient's z-term is then 2·(z_row·λ)·lse·S: the one process's 2·λ·lse·S_z within rounding,
   * and exactly it whenever z_row = 1 (no class weights, or no z-loss, or mean_denominator). */
  clxent_status local = o.class_weight && !weights ? CLXENT_ERR_OUT_OF_MEMORY : CLXENT_OK;
  const int nan_grad = mean && !(S == S); /* rows counted, all of weight 0: 0/0 as in one process */
  if (n_local) {
    clxent_opts lo = o;
    lo.reduction = CLXENT_NONE;
    lo.mean_denominator = 0.0;
    lo.class_weight = weights;
    lo.z_loss = o.z_loss * z_row;
    if (o.reduction != CLXENT_NONE && grad && !(S == 1.0f && !nan_grad)) {
      scale_rows = malloc(n_local * sizeof *scale_rows);
      if (!scale_rows) local = CLXENT_ERR_OUT_OF_MEMORY;
      for (size_t i = 0; scale_rows && i < n_local; ++i) scale_rows[i] = nan_grad ? 1.0f : S;
      lo.grad_output = scale_rows;
    } else if (o.reduction != CLXENT_NONE) {
      lo.grad_output = NULL;
    }
    if (reduced) {
      rows = malloc(n_local * sizeof *rows);
      if (!rows) local = CLXENT_ERR_OUT_OF_MEMORY;
    }
    clxent_ex lx = x;
    lx.size = sizeof lx;
    if (local == CLXENT_OK)
      local = clxent_softmax_xent_ex(ctx, n_local, c, logits, labels, &lo, &lx, reduced ? rows : o.reduction == CLXENT_NONE ? loss : NULL, grad);
    if (local != CLXENT_OK && local != CLXENT_ERR_OUT_OF_MEMORY) snprintf(mine.msg, sizeof mine.msg, "%s", clxent_last_error(ctx));
    else if (local != CLXENT_OK) snprintf(mine.msg, sizeof mine.msg, "out of memory: %s", clxent_last_error(ctx));
    if (local == CLXENT_OK && nan_grad) { /* the counted rows' gradient is NaN, as one process's */
      const size_t es = dtype_size(x.dtype);
      for (size_t i = 0; i < n_local; ++i)
        if (labels[i] != o.ignore_index)
          for (size_t j = 0; j < c; ++j) {
            unsigned char *g = (unsigned char *)grad + (i * c + j) * es;
            if (es == 4) {
              const float v = NAN;
              memcpy(g, &v, 4);
            } else {
              const uint16_t v = x.dtype == CLXENT_FLOAT16 ? 0x7e00 : 0x7fc0;
              memcpy(g, &v, 2);
            }
          }
    }
  }

  /* collective 2: statuses (and for MEAN/SUM the block sums and loose values) */
  if (!reduced) {
    int32_t worst[2] = {(int32_t)local, local != CLXENT_OK ? -rank : INT32_MIN};
    int32_t *every = malloc((size_t)ranks * sizeof worst);
    if (!every) {
      st = finish(CLXENT_ERR_OUT_OF_MEMORY, rank, "malloc failed");
      goto out;
    }
    TIMED(MPI_Allgather(worst, 2, MPI_INT32_T, every, 2, MPI_INT32_T, comm), sizeof worst, (size_t)ranks * sizeof worst);
    for (int q = 0; err == MPI_SUCCESS && q < ranks; ++q)
      if (every[2 * q] != CLXENT_OK) {
        st = (clxent_status)every[2 * q];
        snprintf(last_error, sizeof last_error, "rank %d: the computation failed (%s)%s%s", q,
                 clxent_status_str(st), q == rank ? ": " : "", q == rank ? mine.msg : "");
        break;
      }
    free(every);
    if (err != MPI_SUCCESS) st = mpi_fail(err, "MPI_Allgather(status)");
    goto out;
  }
  {
    size_t total = 0, at = 0;
    for (int q = 0; q < ranks; ++q) {
      const size_t k = contribution(at, at + all[q].n_local, N, span);
      counts[q] = (int)k, displs[q] = (int)total;
      total += k, at += all[q].n_local;
    }
    const size_t mine_count = (size_t)counts[rank];
    float *send = malloc(mine_count * sizeof *send);
    gathered = malloc(total * sizeof *gathered);
    lane = malloc(G * sizeof *lane);
    block = malloc(span * sizeof *block);
    if (!send || !gathered || !lane || !block) local = CLXENT_ERR_OUT_OF_MEMORY;
    if (send) {
      send[0] = (float)local;
      size_t k = 1;
      if (n_local && local == CLXENT_OK) {
        const size_t a = first, e = first + n_local;
        for (size_t b = a / span; b <= (e - 1) / span; ++b) {
          const size_t lo = b * span > a ? b * span : a, hi = (b + 1) * span < e ? (b + 1) * span : e;
          if (own_block(b, a, e, N, span)) send[k++] = group_sum(rows + (lo - a), hi - lo, G, lane);
          else for (size_t r = lo; r < hi; ++r) send[k++] = rows[r - a];
        }
      }
      for (; k < mine_count; ++k) send[k] = 0.0f;
      send[0] = (float)local;
    }
    float dummy = (float)CLXENT_ERR_OUT_OF_MEMORY;
    TIMED(MPI_Allgatherv(send ? send : &dummy, send ? (int)mine_count : 1, MPI_FLOAT, gathered, counts, displs, MPI_FLOAT, comm),
          mine_count * sizeof(float), total * sizeof(float));
    free(send);
    if (err != MPI_SUCCESS) {
      st = mpi_fail(err, "MPI_Allgatherv(per-row losses)");
      goto out;
    }
    if (!gathered || !lane || !block) {
      st = finish(CLXENT_ERR_OUT_OF_MEMORY, rank, "malloc of the reduction's buffers failed");
      goto out;
    }
    for (int q = 0; q < ranks; ++q)
      if (gathered[displs[q]] != 0.0f) {
        st = (clxent_status)(int)gathered[displs[q]];
        snprintf(last_error, sizeof last_error, "rank %d: the computation failed (%s)%s%s", q, clxent_status_str(st),
                 q == rank ? ": " : "", q == rank ? mine.msg : "");
        goto out;
      }
    /* the first stage's value of every block, in order: own blocks from their rank, shared ones
     * assembled from the loose values of the ranks they span; written over `gathered` itself
     * (block b's value lands at index b, never past what is still to be read) */
    const size_t groups = N ? (N + span - 1) / span : 1;
    float *v1 = malloc(groups * sizeof *v1);
    if (!v1) {
      st = finish(CLXENT_ERR_OUT_OF_MEMORY, rank, "malloc failed");
      goto out;
    }
    if (N == 0) v1[0] = 0.0f;
    at = 0;
    for (int q = 0; q < ranks; ++q) {
      const size_t a = at, e = at + all[q].n_local;
      at = e;
      if (a == e) continue;
      size_t k = (size_t)displs[q] + 1;
      for (size_t b = a / span; b <= (e - 1) / span; ++b) {
        if (own_block(b, a, e, N, span)) {
          v1[b] = gathered[k++];
          continue;
        }
        const size_t lo = b * span > a ? b * span : a, hi = (b + 1) * span < e ? (b + 1) * span : e;
        for (size_t r = lo; r < hi; ++r) block[r - b * span] = gathered[k++];
        const size_t block_end = (b + 1) * span < N ? (b + 1) * span : N;
        if (hi == block_end) v1[b] = group_sum(block, block_end - b * span, G, lane); /* its last rows */
      }
    }
    float result;
    if (groups == 1) result = v1[0] / divisor;
    else result = later_stages(v1, groups, G, divisor, lane);
    free(v1);
    *loss = result;
  }

out:
  free(all), free(counts), free(displs), free(rows), free(scale_rows), free(scaled_weights), free(gathered), free(lane),
      free(block);
  return st;
}

/* ---------------------------------------------------------------- vocabulary-parallel
 *
 * Every rank holds all n rows and the columns [c_offset, c_offset + c_local) of c_total. This
 * version computes on the host (plain C on the calling thread, float32 arithmetic as the kernels
 * do it), not on the context's device: the per-row statistics of a column slice need kernels the
 * core does not have yet (see docs/MPI.md). Two reads of the logits:
 *   stats pass   per row, over the rank's columns u = cap(z): m_r = max u, s_r = Σ e^{u - m_r},
 *                d_r = Σ w_j (m_r - u_j) (label smoothing), and, on the rank owning the label,
 *                u_y and w_y;
 *   exchange     one MPI_Allgather of those 5 floats per row; every rank combines them in rank
 *                order (m = max m_r, s = Σ s_r e^{m_r - m}, d = Σ d_r + W_r (m - m_r)), so every
 *                rank has the same lse, loss and scales, run after run;
 *   grad pass    grad_ij = (k e^{u_ij - m} - B w_j - K [j = y_i]) u'_ij over the rank's columns,
 *                with the one-process kernel's k, B, K (kernels/softmax_xent.cl).
 * Before that, one MPI_Allgather of a record per rank agrees on validity, n, c_total, the options
 * and that the slices tile [0, c_total) — nothing is written on any rank unless all agree. */
typedef struct vocab_rec {
  int32_t status;
  uint32_t group_size;
  uint64_t n, c_local, c_offset, c_total;
  uint64_t hash;
  double weighted; /* Σ w_{y_i} over the rows whose label this rank owns */
  double wsum;     /* Σ of this rank's class weights */
  char msg[MSG_MAX];
} vocab_rec;

static float cap_slope(float z, float cap, float *slope) {
  if (cap == 0.0f) {
    *slope = 1.0f;
    return z;
  }
  if (z == -INFINITY) {
    *slope = 0.0f;
    return -INFINITY;
  }
  const float t = tanhf(z / cap);
  *slope = 1.0f - t * t;
  return cap * t;
}

static clxent_status vocab_parallel(clxent_ctx *ctx, MPI_Comm comm, size_t n, size_t c_local, size_t c_offset,
                                            size_t c_total, const float *logits, const int32_t *labels,
                                            const clxent_opts *opts, float *loss, float *grad) {
  last_error[0] = '\0';
  int rank = 0, ranks = 1, err;
  if ((err = MPI_Comm_rank(comm, &rank)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Comm_rank");
  if ((err = MPI_Comm_size(comm, &ranks)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Comm_size");
  local_check lc = {CLXENT_OK, ""};
  clxent_opts o = clxent_opts_default();
  if (opts) read_sized(&lc, "opts", opts, &o, sizeof o);
  vocab_rec mine;
  memset(&mine, 0, sizeof mine);
  if (!ctx) fail(&lc, CLXENT_ERR_INVALID_ARG, "ctx is NULL");
  if (lc.st == CLXENT_OK) {
    clxent_info info = CLXENT_INFO_INIT;
    if (clxent_get_info(ctx, 0, &info) != CLXENT_OK) fail(&lc, CLXENT_ERR_INVALID_ARG, "clxent_get_info failed");
    mine.group_size = (uint32_t)info.group_size;
  }
  if (n == 0 || c_local == 0 || c_total == 0) fail(&lc, CLXENT_ERR_INVALID_ARG, "n, c_local or c_total is 0");
  else if (c_offset > c_total || c_local > c_total - c_offset)
    fail(&lc, CLXENT_ERR_INVALID_ARG, "columns [%zu, %zu) lie outside [0, c_total = %zu)", c_offset, c_offset + c_local, c_total);
  else if (n > SIZE_MAX / c_local / 4 || c_total > (size_t)INT32_MAX) fail(&lc, CLXENT_ERR_INVALID_ARG, "n * c_local overflows");
  if (!logits || !labels) fail(&lc, CLXENT_ERR_INVALID_ARG, "logits or labels is NULL");
  if (!loss && !grad) fail(&lc, CLXENT_ERR_INVALID_ARG, "loss and grad are both NULL");
  if (lc.st == CLXENT_OK) {
    /* the option checks of the data-parallel path, the class weights being this rank's c_local */
    clxent_ex x = clxent_ex_default();
    agree_rec scratch;
    memset(&scratch, 0, sizeof scratch);
    clxent_opts shape = o;
    shape.class_weight = NULL; /* checked below against the slice */
    check_local(&lc, &scratch, ctx, 0, c_total, NULL, NULL, &shape, &x, loss, grad);
    const size_t upstream = !o.grad_output ? 0 : o.reduction == CLXENT_NONE ? n : 1;
    for (size_t k = 0; k < upstream; ++k)
      if (!isfinite(o.grad_output[k])) {
        fail(&lc, CLXENT_ERR_INVALID_ARG, "opts->grad_output[%zu] = %g must be finite", k, (double)o.grad_output[k]);
        break;
      }
    double wsum = 0.0;
    for (size_t j = 0; o.class_weight && j < c_local; ++j) {
      if (!isfinite(o.class_weight[j]) || o.class_weight[j] < 0.0f) {
        fail(&lc, CLXENT_ERR_INVALID_ARG, "opts->class_weight[%zu] = %g must be finite and >= 0", j, (double)o.class_weight[j]);
        break;
      }
      wsum += o.class_weight[j];
    }
    mine.wsum = o.class_weight ? wsum : (double)c_local;
    double weighted = 0.0;
    for (size_t i = 0; lc.st == CLXENT_OK && i < n; ++i) {
      const int32_t y = labels[i];
      if (y == o.ignore_index) continue;
      if (y < 0 || (size_t)y >= c_total) {
        fail(&lc, CLXENT_ERR_LABEL_RANGE, "labels[%zu] = %d is outside [0, %zu) and is not ignore_index (%d)", i, (int)y,
             c_total, (int)o.ignore_index);
        break;
      }
      if ((size_t)y >= c_offset && (size_t)y < c_offset + c_local) weighted += o.class_weight ? o.class_weight[y - c_offset] : 1.0;
    }
    mine.weighted = weighted;
    uint64_t h = scratch.hash; /* c_total, the options and flags (the weights differ by rank) */
    h = fnv(h, &(int){o.class_weight != NULL}, sizeof(int));
    h = fnv(h, &c_total, sizeof c_total);
    h = fnv(h, &n, sizeof n);
    if (lc.st == CLXENT_OK) h = fnv(h, labels, n * sizeof *labels);
    mine.hash = h;
  }
  mine.status = (int32_t)lc.st;
  memcpy(mine.msg, lc.msg, sizeof mine.msg);
  mine.n = n, mine.c_local = c_local, mine.c_offset = c_offset, mine.c_total = c_total;

  vocab_rec *all = malloc((size_t)ranks * sizeof *all);
  if (!all) {
    snprintf(last_error, sizeof last_error, "rank %d: malloc of the agreement records failed", rank);
    return CLXENT_ERR_OUT_OF_MEMORY;
  }
  clxent_status st = CLXENT_OK;
  float *stats = NULL, *every = NULL, *row = NULL;
  TIMED(MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, comm), sizeof mine,
        (size_t)ranks * sizeof mine);
  if (err != MPI_SUCCESS) {
    st = mpi_fail(err, "MPI_Allgather");
    goto out;
  }
  for (int q = 0; q < ranks; ++q)
    if (all[q].status != CLXENT_OK) {
      st = (clxent_status)all[q].status;
      snprintf(last_error, sizeof last_error, "rank %d: %s", q, all[q].msg);
      goto out;
    }
  for (int q = 0; q < ranks; ++q) { /* the slices tile [0, c_total) in rank order */
    const uint64_t expect = q ? all[q - 1].c_offset + all[q - 1].c_local : 0;
    const char *why = all[q].hash != all[0].hash ? "n, c_total, the labels or the options differ from rank 0's"
                      : all[q].c_offset != expect ? "its columns do not start where the previous rank's end"
                      : q == ranks - 1 && all[q].c_offset + all[q].c_local != all[q].c_total
                          ? "the last rank's columns do not end at c_total"
                          : NULL;
    if (why) {
      st = CLXENT_ERR_INVALID_ARG;
      snprintf(last_error, sizeof last_error, "rank %d: %s", q, why);
      goto out;
    }
  }
  const int mean = o.reduction == CLXENT_MEAN;
  uint64_t counted = 0;
  for (size_t i = 0; i < n; ++i) counted += labels[i] != o.ignore_index;
  double weighted = 0.0, wtotal = 0.0;
  for (int q = 0; q < ranks; ++q) weighted += all[q].weighted, wtotal += all[q].wsum;
  const float W = (float)wtotal, eps = o.label_smoothing, zl = o.z_loss, cap = o.softcap;
  float S = 1.0f, Sz = 1.0f, z_row = 1.0f, divisor = 1.0f;
  if (mean && o.mean_denominator > 0) {
    divisor = (float)o.mean_denominator;
    S = Sz = 1.0f / divisor;
  } else if (mean) {
    divisor = weighted > 0 ? (float)weighted : NAN;
    S = weighted > 0 ? 1.0f / (float)weighted : counted > 0 ? NAN : 0.0f;
    Sz = counted > 0 ? 1.0f / (float)counted : 0.0f;
    z_row = (weighted > 0 && counted > 0) ? (float)(weighted / (double)counted) : 0.0f;
  }
  if (o.grad_output && o.reduction != CLXENT_NONE) S *= o.grad_output[0], Sz *= o.grad_output[0];

  /* stats pass: 5 floats per row (m_r, s_r, d_r, u_y, w_y) */
  enum { ST_M, ST_S, ST_D, ST_UY, ST_WY, ST_COUNT };
  stats = malloc(n * ST_COUNT * sizeof *stats);
  every = malloc((size_t)ranks * n * ST_COUNT * sizeof *every);
  row = malloc(n * 2 * sizeof *row); /* per row: m and lse, then the losses */
  clxent_status local = stats && every && row ? CLXENT_OK : CLXENT_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; local == CLXENT_OK && i < n; ++i) {
    const float *z = logits + i * c_local;
    float m = -INFINITY, sum = 0.0f, d = 0.0f, slope;
    for (size_t j = 0; j < c_local; ++j) m = fmaxf(m, cap_slope(z[j], cap, &slope));
    const float ref = m == -INFINITY ? 0.0f : m;
    for (size_t j = 0; j < c_local; ++j) {
      const float u = cap_slope(z[j], cap, &slope), w = o.class_weight ? o.class_weight[j] : 1.0f;
      sum += expf(u - ref);
      if (eps > 0.0f && w != 0.0f) d += w * (m - u);
    }
    const int32_t y = labels[i];
    const int owns = y != o.ignore_index && (size_t)y >= c_offset && (size_t)y < c_offset + c_local;
    float *st_i = stats + i * ST_COUNT;
    st_i[ST_M] = m, st_i[ST_S] = sum, st_i[ST_D] = d;
    st_i[ST_UY] = owns ? cap_slope(z[y - c_offset], cap, &slope) : 0.0f;
    st_i[ST_WY] = owns ? (o.class_weight ? o.class_weight[y - c_offset] : 1.0f) : 0.0f;
  }
  {
    int32_t verdict[1] = {(int32_t)local};
    TIMED(MPI_Allreduce(MPI_IN_PLACE, verdict, 1, MPI_INT32_T, MPI_MAX, comm), sizeof verdict, sizeof verdict);
    if (err != MPI_SUCCESS) {
      st = mpi_fail(err, "MPI_Allreduce(status)");
      goto out;
    }
    if (verdict[0] != CLXENT_OK) {
      st = (clxent_status)verdict[0];
      snprintf(last_error, sizeof last_error, "a rank ran out of memory for the statistics (%s)", clxent_status_str(st));
      goto out;
    }
  }
  TIMED(MPI_Allgather(stats, (int)(n * ST_COUNT), MPI_FLOAT, every, (int)(n * ST_COUNT), MPI_FLOAT, comm),
        n * ST_COUNT * sizeof(float), (size_t)ranks * n * ST_COUNT * sizeof(float));
  if (err != MPI_SUCCESS) {
    st = mpi_fail(err, "MPI_Allgather(row statistics)");
    goto out;
  }
  /* combine in rank order; per-row losses into row[n..2n) */
  float *loss_rows = row + n;
  for (size_t i = 0; i < n; ++i) {
    float m = -INFINITY;
    for (int q = 0; q < ranks; ++q) m = fmaxf(m, every[((size_t)q * n + i) * ST_COUNT + ST_M]);
    const float ref = m == -INFINITY ? 0.0f : m;
    float sum = 0.0f, d = 0.0f, uy = 0.0f, wy = 0.0f;
    for (int q = 0; q < ranks; ++q) {
      const float *e = every + ((size_t)q * n + i) * ST_COUNT;
      if (e[ST_M] != -INFINITY) sum += e[ST_S] * expf(e[ST_M] - ref);
      if (eps > 0.0f) d += e[ST_D] + (float)all[q].wsum * (m - e[ST_M]) * (e[ST_M] == -INFINITY ? 0.0f : 1.0f);
      uy += e[ST_UY], wy += e[ST_WY];
    }
    const float log_s = logf(sum), lse = m + log_s;
    const int ignored = labels[i] == o.ignore_index;
    float l = 0.0f;
    if (!ignored) {
      l = (1.0f - eps) * wy * ((m - uy) + log_s);
      if (eps > 0.0f) l += eps / (float)c_total * (d + W * log_s);
      if (zl != 0.0f) l += z_row * zl * lse * lse;
    }
    row[i] = ignored ? NAN : m; /* NaN marks an ignored row for the gradient pass */
    loss_rows[i] = l;
    stats[i * ST_COUNT + ST_S] = sum, stats[i * ST_COUNT + ST_UY] = lse, stats[i * ST_COUNT + ST_WY] = wy;
  }
  /* grad pass over this rank's columns */
  for (size_t i = 0; grad && i < n; ++i) {
    float *g = grad + i * c_local;
    const float *z = logits + i * c_local;
    if (row[i] != row[i]) {
      for (size_t j = 0; j < c_local; ++j) g[j] = 0.0f;
      continue;
    }
    const float m = row[i], sum = stats[i * ST_COUNT + ST_S], lse = stats[i * ST_COUNT + ST_UY], wy = stats[i * ST_COUNT + ST_WY];
    const float g_up = o.grad_output && o.reduction == CLXENT_NONE ? o.grad_output[i] : 1.0f;
    const float Si = S * g_up, Szi = Sz * g_up, inv_c = 1.0f / (float)c_total;
    const float k = (Si * ((1.0f - eps) * wy + eps * W * inv_c) + 2.0f * zl * lse * Szi) / sum;
    const float B = Si * eps * inv_c, K = Si * (1.0f - eps) * wy;
    const size_t y = (size_t)labels[i];
    for (size_t j = 0; j < c_local; ++j) { /* z is read before g is written: grad may be logits */
      float slope;
      const float u = cap_slope(z[j], cap, &slope), w = o.class_weight ? o.class_weight[j] : 1.0f;
      g[j] = (k * expf(u - m) - B * w - (c_offset + j == y ? K : 0.0f)) * slope;
    }
  }
  if (loss && o.reduction == CLXENT_NONE) memcpy(loss, loss_rows, n * sizeof *loss);
  else if (loss) {
    const size_t G = all[0].group_size, span = G * REDUCE_ITEMS, groups = (n + span - 1) / span;
    float *lane = malloc(G * sizeof *lane);
    if (!lane) { /* the outputs are unspecified after OUT_OF_MEMORY; every rank has the same data */
      st = finish(CLXENT_ERR_OUT_OF_MEMORY, rank, "malloc failed");
      goto out;
    }
    for (size_t b = 0; b < groups; ++b) { /* the core's order, as in the data-parallel path */
      const size_t cnt = n - b * span < span ? n - b * span : span;
      loss_rows[b] = group_sum(loss_rows + b * span, cnt, G, lane);
    }
    *loss = groups == 1 ? loss_rows[0] / divisor : later_stages(loss_rows, groups, G, divisor, lane);
    free(lane);
  }
out:
  free(all), free(stats), free(every), free(row);
  return st;
}

clxent_status clxent_mpi_softmax_xent_ex(clxent_ctx *ctx, MPI_Comm comm, size_t n_local, size_t c, const void *logits,
                                         const int32_t *labels, const clxent_opts *opts, const clxent_ex *ex,
                                         float *loss, void *grad) {
  memset(&last_stats, 0, sizeof last_stats);
  const double t0 = MPI_Wtime();
  const clxent_status st = data_parallel(ctx, comm, n_local, c, logits, labels, opts, ex, loss, grad);
  last_stats.total_s = MPI_Wtime() - t0;
  return st;
}

clxent_status clxent_mpi_softmax_xent_vocab(clxent_ctx *ctx, MPI_Comm comm, size_t n, size_t c_local, size_t c_offset,
                                            size_t c_total, const float *logits, const int32_t *labels,
                                            const clxent_opts *opts, float *loss, float *grad) {
  memset(&last_stats, 0, sizeof last_stats);
  const double t0 = MPI_Wtime();
  const clxent_status st = vocab_parallel(ctx, comm, n, c_local, c_offset, c_total, logits, labels, opts, loss, grad);
  last_stats.total_s = MPI_Wtime() - t0;
  return st;
}

clxent_status clxent_mpi_softmax_xent(clxent_ctx *ctx, MPI_Comm comm, size_t n_local, size_t c, const float *logits,
                                      const int32_t *labels, const clxent_opts *opts, float *loss, float *grad) {
  return clxent_mpi_softmax_xent_ex(ctx, comm, n_local, c, logits, labels, opts, NULL, loss, grad);
}
