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
 *   2. each rank runs its rows through the core's clxent_softmax_xent_part() with the global
 *      batch's Σ w_{y_i} and counted rows: the scales, z-loss weight and weight rescaling of one
 *      call on the concatenated batch, so its gradient bits; its rows' loss terms into a scratch
 *      array, and the global divisor (a rank without rows asks for that alone).
 *   Before 1, one MPI_Allreduce of a fixed-size record (agree_status) says whether every rank has
 *   the O(ranks) agreement records, so that a rank short of memory still takes part: every
 *   allocation failure is agreed on in a collective that precedes any use, and after 2 the
 *   ranks agree on their compute status the same way before the block sums are exchanged.
 *   3. the global loss is the core's fixed reduction (host/reduce.c, kernels/reduce.cl) over the
 *      concatenated per-row losses: its first stage sums aligned blocks of SPAN = G·16 values, and
 *      only those blocks decide the order. Each rank sums the blocks that lie wholly in its rows,
 *      and one MPI_Allgatherv carries those block sums, the loose per-row values of the (at most
 *      two) blocks it shares with other ranks. Every rank then finishes
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

/* Every allocation of a call goes through xmalloc, named by its site. A test build
 * (CLXENT_MPI_TEST_HOOKS: the static clxent_mpi_hooks of tests/, never the installed library)
 * can make the nth allocation from now fail, and records which paths a call took
 * (mpi/clxent_mpi_hooks.h). */
#ifdef CLXENT_MPI_TEST_HOOKS
#include "clxent_mpi_hooks.h"
static long hook_fail_at;
static const char *hook_failed_site;
static unsigned hook_paths;
void clxent_mpi_test_fail_alloc(long nth) {
  hook_fail_at = nth;
  hook_failed_site = NULL;
}
const char *clxent_mpi_test_failed_site(void) { return hook_failed_site; }
unsigned clxent_mpi_test_paths(void) { return hook_paths; }
#define TOOK_PATH(bit) (hook_paths |= (bit))
#define CLEAR_PATHS() (hook_paths = 0)
#else
#define TOOK_PATH(bit) ((void)0)
#define CLEAR_PATHS() ((void)0)
#endif

static void *xmalloc(size_t bytes, const char *site) {
#ifdef CLXENT_MPI_TEST_HOOKS
  if (hook_fail_at > 0 && --hook_fail_at == 0) {
    hook_failed_site = site;
    return NULL;
  }
#else
  (void)site;
#endif
  return malloc(bytes);
}

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

/* What every rank's agreement record starts with, whichever the call (agree_rec, vocab_rec):
 * its verdict on its own arguments and its hash of what must be the same on every rank. */
typedef struct rec_head {
  int32_t status;
  uint32_t group_size; /* the reduction's (clxent_get_info); rank 0's serves every rank */
  uint64_t hash;
  char msg[MSG_MAX];
} rec_head;

/* What a rank tells every other before anything is written (data-parallel). */
typedef struct agree_rec {
  rec_head h;
  uint64_t n_local;
  uint64_t counted;
  double weighted;  /* Σ w_{y_i} over this rank's counted rows, in row order */
  int32_t ulp_exp;  /* the smallest ulp exponent among those weights (INT32_MAX: none) */
  int32_t pad;
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
  r->h.group_size = (uint32_t)info.group_size;
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
  r->h.hash = h;
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

/* The number of floats rank [a, e) contributes: 1 per own block and its rows of the others. */
static size_t contribution(size_t a, size_t e, size_t N, size_t span) {
  size_t k = 0;
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

static clxent_status mpi_fail(int err, const char *what) {
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(err, s, &len);
  snprintf(last_error, sizeof last_error, "%s failed: %s", what, s);
  return CLXENT_ERR_OPENCL; /* the communication failed: an "other failure" of the call */
}

/* The ranks' verdict on a step, with one fixed-size MPI_Allreduce (so that a rank short of
 * memory still takes part): the largest status of any rank and, among the ranks reporting it, the
 * highest. CLXENT_OK when every rank is; else every rank returns the same status, the failing
 * rank named in last_error (with this rank's own detail if it is the one). */
static clxent_status agree_status(MPI_Comm comm, int rank, clxent_status local, const char *what, const char *detail) {
  int64_t key = local != CLXENT_OK ? ((int64_t)local << 32) | (int64_t)rank : -1;
  int err;
  TIMED(MPI_Allreduce(MPI_IN_PLACE, &key, 1, MPI_INT64_T, MPI_MAX, comm), sizeof key, sizeof key);
  if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce(status)");
  if (key < 0) return CLXENT_OK;
  const clxent_status st = (clxent_status)(key >> 32);
  const int q = (int)(key & 0xffffffff);
  snprintf(last_error, sizeof last_error, "rank %d: %s (%s)%s%s", q, what, clxent_status_str(st),
           q == rank && detail && *detail ? ": " : "", q == rank && detail ? detail : "");
  return st;
}

/* Collectives 0 and 1 of every call: whether every rank has room for the ranks' agreement
 * records (agree_status, so that a rank without it still takes part), then the records
 * themselves, `size` bytes a rank, each starting with a rec_head. CLXENT_OK when every rank's
 * status is OK and its hash equals rank 0's; else, on every rank, the first failing rank's
 * status and message, or CLXENT_ERR_INVALID_ARG naming the first rank whose hash differs (the
 * reason: `differs`). */
static clxent_status gather_records(MPI_Comm comm, int rank, int ranks, int allocated, const void *mine, void *all,
                                    size_t size, const char *differs) {
  int err;
  clxent_status st = agree_status(comm, rank, allocated ? CLXENT_OK : CLXENT_ERR_OUT_OF_MEMORY,
                                  "malloc of the agreement records failed", NULL);
  if (st != CLXENT_OK) return st;
  TIMED(MPI_Allgather(mine, (int)size, MPI_BYTE, all, (int)size, MPI_BYTE, comm), size, (size_t)ranks * size);
  if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allgather");
  /* record q's head: the first member of the caller's record type, so a valid pointer to it */
#define HEAD(q) ((const rec_head *)(const void *)((const unsigned char *)all + (size_t)(q) * size))
  for (int q = 0; q < ranks; ++q)
    if (HEAD(q)->status != CLXENT_OK) {
      snprintf(last_error, sizeof last_error, "rank %d: %s", q, HEAD(q)->msg);
      return (clxent_status)HEAD(q)->status;
    }
  for (int q = 1; q < ranks; ++q)
    if (HEAD(q)->hash != HEAD(0)->hash) {
      snprintf(last_error, sizeof last_error, "rank %d: %s", q, differs);
      return CLXENT_ERR_INVALID_ARG;
    }
#undef HEAD
  return CLXENT_OK;
}

/* The start of both entries: the thread's last error cleared, this rank's place in comm, and the
 * caller's opts and ex read into this library's layout (checked in lc, which the ranks then
 * compare, so that a bad struct on one rank fails them all). An MPI failure here returns at once:
 * nothing has been exchanged yet. */
static clxent_status begin_call(MPI_Comm comm, const clxent_opts *opts, const clxent_ex *ex, int *rank, int *ranks,
                                local_check *lc, clxent_opts *o, clxent_ex *x) {
  last_error[0] = '\0';
  int err;
  if ((err = MPI_Comm_rank(comm, rank)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Comm_rank");
  if ((err = MPI_Comm_size(comm, ranks)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Comm_size");
  lc->st = CLXENT_OK, lc->msg[0] = '\0';
  *o = clxent_opts_default();
  *x = clxent_ex_default();
  if (opts) read_sized(lc, "opts", opts, o, sizeof *o);
  if (ex) read_sized(lc, "ex", ex, x, sizeof *x);
  return CLXENT_OK;
}
static clxent_status data_parallel(clxent_ctx *ctx, MPI_Comm comm, size_t n_local, size_t c,
                                         const void *logits, const int32_t *labels, const clxent_opts *opts,
                                         const clxent_ex *ex, float *loss, void *grad) {
  int rank = 0, ranks = 1, err;
  local_check lc;
  clxent_opts o;
  clxent_ex x;
  const clxent_status started = begin_call(comm, opts, ex, &rank, &ranks, &lc, &o, &x);
  if (started != CLXENT_OK) return started;
  agree_rec mine;
  memset(&mine, 0, sizeof mine);
  if (lc.st == CLXENT_OK) check_local(&lc, &mine, ctx, n_local, c, logits, labels, &o, &x, loss, grad);
  mine.h.status = (int32_t)lc.st;
  memcpy(mine.h.msg, lc.msg, sizeof mine.h.msg);

  /* collective 0: whether every rank has its O(ranks) agreement records (a fixed-size record, so
   * that a rank without them still takes part and every rank returns the same status) */
  agree_rec *all = xmalloc((size_t)ranks * sizeof *all, "agreement records");
  int *counts = xmalloc((size_t)ranks * sizeof *counts, "agreement counts");
  int *displs = xmalloc((size_t)ranks * sizeof *displs, "agreement displacements");
  clxent_status st = CLXENT_OK;
  float *rows = NULL, *gathered = NULL, *lane = NULL, *block = NULL;
  float *send = NULL, *v1 = NULL;
  /* collective 1: every rank's verdict and statistics (after collective 0) */
  st = gather_records(comm, rank, ranks, all && counts && displs, &mine, all, sizeof mine,
                      "c, the options or the outputs asked for differ from rank 0's (every rank must pass the same)");
  if (st != CLXENT_OK) goto out;

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
  const size_t G = all[0].h.group_size, span = G * REDUCE_ITEMS;
  const int reduced = o.reduction != CLXENT_NONE && loss != NULL;
  if (o.class_weight && o.reduction == CLXENT_MEAN && o.mean_denominator == 0.0 && counted > 0) {
    /* One process sums w_{y_i} in double, row by row. Every weight is a multiple of 2^ulp_exp and
     * all are ≥ 0, so when the total is below 2^(53 + ulp_exp) every partial sum is exact in
     * double, in any order: the rank-order sum is the one-process sum. Else the ranks share their
     * counted rows' weights (4 bytes a row) and every rank sums them in row order. No positive
     * weight (ulp_exp INT32_MAX): every term is 0, the sum exact. */
    if (ulp_exp != INT32_MAX && !(weighted * (1.0 + 0x1p-50) < ldexp(1.0, 53 + ulp_exp))) {
      TOOK_PATH(1u); /* CLXENT_MPI_PATH_WEIGHTS_SHARED */
      float *mine_w = xmalloc((mine.counted ? mine.counted : 1) * sizeof *mine_w, "shared weights (own)");
      gathered = xmalloc((counted ? counted : 1) * sizeof *gathered, "shared weights (all)");
      /* every rank has its buffers before any rank sends: else all return, nothing written */
      st = agree_status(comm, rank, mine_w && gathered ? CLXENT_OK : CLXENT_ERR_OUT_OF_MEMORY,
                        "malloc of the shared weights failed", NULL);
      if (st != CLXENT_OK) {
        free(mine_w);
        goto out;
      }
      size_t k = 0;
      for (size_t i = 0; i < n_local; ++i)
        if (labels[i] != o.ignore_index) mine_w[k++] = o.class_weight[labels[i]];
      size_t at = 0;
      for (int q = 0; q < ranks; ++q) counts[q] = (int)all[q].counted, displs[q] = (int)at, at += all[q].counted;
      TIMED(MPI_Allgatherv(mine_w, (int)mine.counted, MPI_FLOAT, gathered, counts, displs, MPI_FLOAT, comm),
            mine.counted * sizeof(float), counted * sizeof(float));
      free(mine_w);
      if (err != MPI_SUCCESS) {
        st = mpi_fail(err, "MPI_Allgatherv(weights)");
        goto out;
      }
      weighted = 0.0;
      for (size_t i = 0; i < counted; ++i) weighted += gathered[i];
      free(gathered);
      gathered = NULL;
    }
  }
  if (!o.class_weight) weighted = (double)counted;

  /* the reduction's buffers, had before the local call so that nothing after it allocates: a
   * failure here skips this rank's call and is agreed on with its status */
  clxent_status local = CLXENT_OK;
  size_t total = 0, groups = 1;
  if (reduced) {
    size_t at = 0;
    for (int q = 0; q < ranks; ++q) {
      const size_t k = contribution(at, at + all[q].n_local, N, span);
      counts[q] = (int)k, displs[q] = (int)total;
      total += k, at += all[q].n_local;
    }
    groups = N ? (N + span - 1) / span : 1;
    send = xmalloc(((size_t)counts[rank] ? (size_t)counts[rank] : 1) * sizeof *send, "reduction send");
    gathered = xmalloc((total ? total : 1) * sizeof *gathered, "reduction receive");
    lane = xmalloc(G * sizeof *lane, "reduction lanes");
    block = xmalloc(span * sizeof *block, "reduction block");
    v1 = xmalloc(groups * sizeof *v1, "reduction first stage");
    if (n_local) rows = xmalloc(n_local * sizeof *rows, "per-row losses");
    if (!send || !gathered || !lane || !block || !v1 || (n_local && !rows)) {
      local = CLXENT_ERR_OUT_OF_MEMORY;
      snprintf(mine.h.msg, sizeof mine.h.msg, "malloc of the reduction's buffers failed");
    }
  }
  /* the local call: the core computes this rank's rows as rows of the global batch, with its
   * Σ w_{y_i} and counted rows in place of their own, so with the scales (1/Σ w_{y_i}, 1/counted
   * for the z-loss, g), the z-loss weight Σ w_{y_i}/counted in the row losses and the weight
   * rescaling of one process's call on the concatenated batch: its operations, so its bits.
   * Each row's loss goes to `rows` (MEAN, SUM) or the caller's loss (NONE). A rank without rows
   * asks it for the global divisor only. */
  float divisor = 1.0f;
  if (local == CLXENT_OK) {
    float *row_loss = reduced ? rows : o.reduction == CLXENT_NONE ? loss : NULL;
    local = clxent_softmax_xent_part(ctx, n_local, c, logits, labels, &o, &x, weighted, counted, row_loss, grad,
                                     &divisor);
    if (local == CLXENT_ERR_OUT_OF_MEMORY)
      snprintf(mine.h.msg, sizeof mine.h.msg, "out of memory: %s", clxent_last_error(ctx));
    else if (local != CLXENT_OK)
      snprintf(mine.h.msg, sizeof mine.h.msg, "%s", clxent_last_error(ctx));
  }

  /* collective 2: every rank's status (a fixed-size record); MEAN/SUM then collective 3, the
   * block sums and loose values */
  st = agree_status(comm, rank, local, "the computation failed", mine.h.msg);
  if (st != CLXENT_OK || !reduced) goto out;
  {
    const size_t mine_count = (size_t)counts[rank];
    size_t k = 0;
    if (n_local) {
      const size_t a = first, e = first + n_local;
      for (size_t b = a / span; b <= (e - 1) / span; ++b) {
        const size_t lo = b * span > a ? b * span : a, hi = (b + 1) * span < e ? (b + 1) * span : e;
        if (own_block(b, a, e, N, span)) send[k++] = group_sum(rows + (lo - a), hi - lo, G, lane);
        else for (size_t r = lo; r < hi; ++r) send[k++] = rows[r - a];
      }
    }
    TIMED(MPI_Allgatherv(send, (int)mine_count, MPI_FLOAT, gathered, counts, displs, MPI_FLOAT, comm),
          mine_count * sizeof(float), total * sizeof(float));
    if (err != MPI_SUCCESS) {
      st = mpi_fail(err, "MPI_Allgatherv(per-row losses)");
      goto out;
    }
    /* the first stage's value of every block, in order: own blocks from their rank, shared ones
     * assembled from the loose values of the ranks they span */
    if (N == 0) v1[0] = 0.0f;
    size_t at = 0;
    for (int q = 0; q < ranks; ++q) {
      const size_t a = at, e = at + all[q].n_local;
      at = e;
      if (a == e) continue;
      size_t kq = (size_t)displs[q];
      for (size_t b = a / span; b <= (e - 1) / span; ++b) {
        if (own_block(b, a, e, N, span)) {
          v1[b] = gathered[kq++];
          continue;
        }
        const size_t lo = b * span > a ? b * span : a, hi = (b + 1) * span < e ? (b + 1) * span : e;
        for (size_t r = lo; r < hi; ++r) block[r - b * span] = gathered[kq++];
        const size_t block_end = (b + 1) * span < N ? (b + 1) * span : N;
        if (hi == block_end) v1[b] = group_sum(block, block_end - b * span, G, lane); /* its last rows */
      }
    }
    *loss = groups == 1 ? v1[0] / divisor : later_stages(v1, groups, G, divisor, lane);
  }

out:
  free(all), free(counts), free(displs), free(rows), free(gathered), free(lane), free(block), free(send), free(v1);
  return st;
}

/* ---------------------------------------------------------------- vocabulary-parallel
 *
 * Every rank holds all n rows and the columns [c_offset, c_offset + c_local) of c_total. Both
 * passes over the logits run on the context's device through the core's experimental slice
 * entries (kernels/softmax_slice.cl). Two reads of the logits:
 *   stats pass   clxent_softmax_slice_stats: per row, over the rank's columns u = cap(z):
 *                m_r = max u, s_r = Σ e^{u - m_r}, d_r = Σ w_j (m_r - u_j) (label smoothing),
 *                and, on the rank owning the label, u_y and w_y;
 *   exchange     one MPI_Allgather of those 5 floats per row; every rank combines them in rank
 *                order (m = max m_r, s = Σ s_r e^{m_r - m}, d = Σ d_r + W_r (m - m_r)), so every
 *                rank has the same lse, loss and scales, run after run;
 *   grad pass    clxent_softmax_slice_grad: grad_ij = (A e^{u_ij - lse} - B w_j - K [j = y_i]) u'_ij
 *                over the rank's columns, with the one-process kernel's A, B, K
 *                (kernels/softmax_xent.cl); its status agreed before the loss is written.
 * Before that, one MPI_Allgather of a record per rank agrees on validity, n, c_total, the options
 * and that the slices tile [0, c_total) — nothing is written on any rank unless all agree. */
typedef struct vocab_rec {
  rec_head h;
  uint64_t n, c_local, c_offset, c_total;
  double weighted; /* Σ w_{y_i} over the rows whose label this rank owns */
  double wsum;     /* Σ of this rank's class weights */
} vocab_rec;

static clxent_status vocab_parallel(clxent_ctx *ctx, MPI_Comm comm, size_t n, size_t c_local, size_t c_offset,
                                    size_t c_total, const void *logits, const int32_t *labels,
                                    const clxent_opts *opts, const clxent_ex *ex, float *loss, void *grad) {
  int rank = 0, ranks = 1, err;
  local_check lc;
  clxent_opts o;
  clxent_ex x;
  const clxent_status started = begin_call(comm, opts, ex, &rank, &ranks, &lc, &o, &x);
  if (started != CLXENT_OK) return started;
  vocab_rec mine;
  memset(&mine, 0, sizeof mine);
  if (!ctx) fail(&lc, CLXENT_ERR_INVALID_ARG, "ctx is NULL");
  if (lc.st == CLXENT_OK) {
    clxent_info info = CLXENT_INFO_INIT;
    if (clxent_get_info(ctx, 0, &info) != CLXENT_OK) fail(&lc, CLXENT_ERR_INVALID_ARG, "clxent_get_info failed");
    mine.h.group_size = (uint32_t)info.group_size;
  }
  if (n == 0 || c_local == 0 || c_total == 0) fail(&lc, CLXENT_ERR_INVALID_ARG, "n, c_local or c_total is 0");
  else if (c_offset > c_total || c_local > c_total - c_offset)
    fail(&lc, CLXENT_ERR_INVALID_ARG, "columns [%zu, %zu) lie outside [0, c_total = %zu)", c_offset, c_offset + c_local, c_total);
  else if (n > SIZE_MAX / c_local / 4 || c_total > (size_t)INT32_MAX) fail(&lc, CLXENT_ERR_INVALID_ARG, "n * c_local overflows");
  if (!logits || !labels) fail(&lc, CLXENT_ERR_INVALID_ARG, "logits or labels is NULL");
  if (!loss && !grad) fail(&lc, CLXENT_ERR_INVALID_ARG, "loss and grad are both NULL");
  if (lc.st == CLXENT_OK) {
    /* the option checks of the data-parallel path (ex's too: its dtype and lse are hashed), the
     * class weights being this rank's c_local */
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
    uint64_t h = scratch.h.hash; /* c_total, the options and flags (the weights differ by rank) */
    h = fnv(h, &(int){o.class_weight != NULL}, sizeof(int));
    h = fnv(h, &c_total, sizeof c_total);
    h = fnv(h, &n, sizeof n);
    if (lc.st == CLXENT_OK) h = fnv(h, labels, n * sizeof *labels);
    mine.h.hash = h;
  }
  mine.h.status = (int32_t)lc.st;
  memcpy(mine.h.msg, lc.msg, sizeof mine.h.msg);
  mine.n = n, mine.c_local = c_local, mine.c_offset = c_offset, mine.c_total = c_total;

  /* collectives 0 and 1: whether every rank has its agreement records, then the records */
  vocab_rec *all = xmalloc((size_t)ranks * sizeof *all, "agreement records");
  float *stats = NULL, *every = NULL, *row = NULL, *lane = NULL;
  clxent_status st = gather_records(comm, rank, ranks, all != NULL, &mine, all, sizeof mine,
                                    "n, c_total, the labels or the options differ from rank 0's");
  if (st != CLXENT_OK) goto out;
  for (int q = 0; q < ranks; ++q) { /* the slices tile [0, c_total) in rank order */
    const uint64_t expect = q ? all[q - 1].c_offset + all[q - 1].c_local : 0;
    const char *why = all[q].c_offset != expect ? "its columns do not start where the previous rank's end"
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
  const float W = (float)wtotal, eps = o.label_smoothing, zl = o.z_loss;
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
  /* (g, the upstream gradient, is applied by clxent_softmax_slice_grad from o.grad_output) */

  /* stats pass on the device: 5 floats per row (m_r, s_r, d_r, u_y, w_y), clxent.h's
   * CLXENT_SLICE_* order */
  enum { ST_M = CLXENT_SLICE_MAX, ST_S = CLXENT_SLICE_SUM_EXP, ST_D = CLXENT_SLICE_SMOOTH,
         ST_UY = CLXENT_SLICE_LABEL_LOGIT, ST_WY = CLXENT_SLICE_LABEL_WEIGHT, ST_COUNT = CLXENT_SLICE_VALUES };
  stats = xmalloc(n * ST_COUNT * sizeof *stats, "row statistics");
  every = xmalloc((size_t)ranks * n * ST_COUNT * sizeof *every, "every rank's row statistics");
  row = xmalloc(n * 3 * sizeof *row, "row results"); /* per row: lse, the losses, w_y */
  lane = xmalloc(all[0].h.group_size * sizeof *lane, "reduction lanes");
  clxent_status local = stats && every && row && lane ? CLXENT_OK : CLXENT_ERR_OUT_OF_MEMORY;
  char detail[MSG_MAX] = "";
  if (local == CLXENT_OK) {
    local = clxent_softmax_slice_stats(ctx, n, c_local, c_offset, c_total, x.dtype, logits, labels, &o, stats);
    if (local != CLXENT_OK) snprintf(detail, sizeof detail, "%s", clxent_last_error(ctx));
  }
  st = agree_status(comm, rank, local, "the statistics pass failed", detail);
  if (st != CLXENT_OK) goto out;
  TIMED(MPI_Allgather(stats, (int)(n * ST_COUNT), MPI_FLOAT, every, (int)(n * ST_COUNT), MPI_FLOAT, comm),
        n * ST_COUNT * sizeof(float), (size_t)ranks * n * ST_COUNT * sizeof(float));
  if (err != MPI_SUCCESS) {
    st = mpi_fail(err, "MPI_Allgather(row statistics)");
    goto out;
  }
  /* combine in rank order; per row lse into row[0..n), the losses into row[n..2n), w_y into
   * row[2n..3n) */
  float *loss_rows = row + n, *wy_rows = row + 2 * n;
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
    row[i] = lse, loss_rows[i] = l, wy_rows[i] = wy;
  }
  /* grad pass on the device over this rank's columns (the upstream gradient g applied there),
   * its status agreed before any rank writes its loss */
  if (grad) {
    local = clxent_softmax_slice_grad(ctx, n, c_local, c_offset, c_total, x.dtype, logits, labels, &o, row, wy_rows, W,
                                      S, Sz, grad);
    if (local != CLXENT_OK) snprintf(detail, sizeof detail, "%s", clxent_last_error(ctx));
    st = agree_status(comm, rank, local, "the gradient pass failed", detail);
    if (st != CLXENT_OK) goto out;
  }
  if (x.lse) memcpy(x.lse, row, n * sizeof *x.lse);
  if (loss && o.reduction == CLXENT_NONE) memcpy(loss, loss_rows, n * sizeof *loss);
  else if (loss) {
    const size_t G = all[0].h.group_size, span = G * REDUCE_ITEMS, groups = (n + span - 1) / span;
    for (size_t b = 0; b < groups; ++b) { /* the core's order, as in the data-parallel path */
      const size_t cnt = n - b * span < span ? n - b * span : span;
      loss_rows[b] = group_sum(loss_rows + b * span, cnt, G, lane);
    }
    *loss = groups == 1 ? loss_rows[0] / divisor : later_stages(loss_rows, groups, G, divisor, lane);
  }
out:
  free(all), free(stats), free(every), free(row), free(lane);
  return st;
}

clxent_status clxent_mpi_softmax_xent_ex(clxent_ctx *ctx, MPI_Comm comm, size_t n_local, size_t c, const void *logits,
                                         const int32_t *labels, const clxent_opts *opts, const clxent_ex *ex,
                                         float *loss, void *grad) {
  memset(&last_stats, 0, sizeof last_stats);
  CLEAR_PATHS();
  const double t0 = MPI_Wtime();
  const clxent_status st = data_parallel(ctx, comm, n_local, c, logits, labels, opts, ex, loss, grad);
  last_stats.total_s = MPI_Wtime() - t0;
  return st;
}

clxent_status clxent_mpi_softmax_xent_vocab_ex(clxent_ctx *ctx, MPI_Comm comm, size_t n, size_t c_local, size_t c_offset,
                                               size_t c_total, const void *logits, const int32_t *labels,
                                               const clxent_opts *opts, const clxent_ex *ex, float *loss, void *grad) {
  memset(&last_stats, 0, sizeof last_stats);
  CLEAR_PATHS();
  const double t0 = MPI_Wtime();
  const clxent_status st = vocab_parallel(ctx, comm, n, c_local, c_offset, c_total, logits, labels, opts, ex, loss, grad);
  last_stats.total_s = MPI_Wtime() - t0;
  return st;
}

clxent_status clxent_mpi_softmax_xent_vocab(clxent_ctx *ctx, MPI_Comm comm, size_t n, size_t c_local, size_t c_offset,
                                            size_t c_total, const float *logits, const int32_t *labels,
                                            const clxent_opts *opts, float *loss, float *grad) {
  return clxent_mpi_softmax_xent_vocab_ex(ctx, comm, n, c_local, c_offset, c_total, logits, labels, opts, NULL, loss,
                                          grad);
}

clxent_status clxent_mpi_softmax_xent(clxent_ctx *ctx, MPI_Comm comm, size_t n_local, size_t c, const float *logits,
                                      const int32_t *labels, const clxent_opts *opts, float *loss, float *grad) {
  return clxent_mpi_softmax_xent_ex(ctx, comm, n_local, c, logits, labels, opts, NULL, loss, grad);
}
