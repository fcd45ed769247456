/*
 * Contexts over several devices, a layer above the one-device engine. clxent_create(&ctx, "all")
 * or a list such as "gpu,cpu" or "0:0,1:0" opens one device context per entry (the members,
 * through clxent_open_device); a host-pointer call's plan is split by rows among them in
 * proportion to their speed, and all members run their shares at once, each on its own thread.
 *
 * Shares: measured at creation on a small batch, then refined after every call from the time each
 * device took for its rows (a device's speed depends on the batch: PoCL's CPU device needs
 * large batches to use all its threads). Fixed shares (config or CLXENT_SPLIT) replace both.
 *
 * Determinism: the split is a pure function of n and the shares. Every boundary is a multiple of
 * 64 rows, the chunk of the bias and elementwise partial sums, so each member computes exactly the
 * partial sums the whole batch would have on one device; they are gathered in batch order and
 * reduced on the first member by the same fixed tree (reduce.c). Members of the same kind of
 * device therefore give the bits of a single-device context at any split; different kinds differ
 * only by their per-row values, so for the same bits run after run they need fixed shares.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SPLIT_ALIGN 64 /* rows: CLXENT_BIAS_CHUNK, and a multiple of CLXENT_SUM_CHUNK values */
#if SPLIT_ALIGN % CLXENT_BIAS_CHUNK || SPLIT_ALIGN % CLXENT_SUM_CHUNK
#error "split points must fall on chunk boundaries"
#endif

struct clxent_group {
  clxent_ctx *members[CLXENT_MAX_MEMBERS];
  double shares[CLXENT_MAX_MEMBERS];   /* the split in use; sum to 1 */
  double estimate[CLXENT_MAX_MEMBERS]; /* the shares measured over the calls, unless fixed */
  size_t count;
  int shares_fixed;
};

int clxent_is_group_request(const char *request) {
  return request && (!strcmp(request, "all") || strchr(request, ',') != NULL);
}

size_t clxent_group_count(const clxent_ctx *ctx) { return ctx->group ? ctx->group->count : 1; }
clxent_ctx *clxent_group_member(const clxent_ctx *ctx, size_t k) { return ctx->group->members[k]; }
double clxent_group_share(const clxent_ctx *ctx, size_t k) { return ctx->group ? ctx->group->shares[k] : 1.0; }

clxent_ctx *clxent_group_take_only_member(clxent_ctx *ctx) {
  ctx->group->count = 0;
  return ctx->group->members[0];
}

void clxent_group_destroy(clxent_group *group) {
  if (!group) return;
  for (size_t k = 0; k < group->count; ++k) clxent_destroy(group->members[k]);
  free(group);
}

/* ---------------------------------------------------------------- opening */

/* The plan of a plain hard-label call (no options, MEAN), for measuring speed. */
static clxent_plan plain_plan(size_t n, size_t c, const float *logits, const int32_t *labels, float *loss,
                              float *grad) {
  const clxent_opts o = CLXENT_OPTS_INIT;
  clxent_plan p = {.kernel = KERNEL_SOFTMAX_HARD, .dtype = CLXENT_FLOAT32, .n = n, .c = c, .in = logits,
                   .labels = labels, .ignore_index = o.ignore_index, .grad = grad, .loss = loss,
                   .reduction = CLXENT_MEAN};
  p.params = clxent_loss_params(&o, (double)n, n, (float)c, &p.divisor);
  return p;
}

/* Speed of a member on the host path: 1 / the median time of 3 calls (after a warm-up) on a
 * 4096 × 2048 batch with its gradient: rows enough to fill every device (256 rows ran on one
 * thread of a PoCL CPU device and measured it as slow as a one-core device). */
static clxent_status measure_speed(clxent_ctx *ctx, size_t k, double *speed) {
  enum { ROWS = 4096, CLASSES = 2048, REPEATS = 3 };
  clxent_ctx *member = ctx->group->members[k];
  float *logits = malloc((size_t)ROWS * CLASSES * sizeof(float)), *grad = malloc((size_t)ROWS * CLASSES * sizeof(float));
  int32_t *labels = malloc(ROWS * sizeof(int32_t));
  double times[REPEATS];
  float loss;
  clxent_status st = logits && grad && labels
                         ? CLXENT_OK
                         : clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "malloc of the speed measurement's batch failed");
  if (st != CLXENT_OK) goto done;
  for (size_t i = 0; i < (size_t)ROWS * CLASSES; ++i) logits[i] = (float)(i % 97) * 0.125f - 6.0f;
  for (int i = 0; i < ROWS; ++i) labels[i] = (int32_t)((i * 7919) % CLASSES);
  const clxent_plan plan = plain_plan(ROWS, CLASSES, logits, labels, &loss, grad);
  for (int r = -1; r < REPEATS; ++r) {
    const double t0 = clxent_seconds();
    st = clxent_execute(member, &plan);
    if (st != CLXENT_OK) {
      clxent_fail(ctx, st, "measuring device %zu (%s): %s", k, member->device_name, member->error);
      goto done;
    }
    if (r >= 0) times[r] = clxent_seconds() - t0;
  }
  const double t = clxent_median(times, REPEATS);
  *speed = 1.0 / (t > 1e-9 ? t : 1e-9);
done:
  free(logits), free(grad), free(labels);
  return st;
}

/* Opens the members for the entries of `request` ("all" anywhere in the list stands for every
 * device); a device named twice, however spelled, is an error. */
static clxent_status open_members(clxent_ctx *ctx, const char *request, const clxent_settings *s) {
  clxent_group *g = ctx->group;
  char entries[CLXENT_MAX_MEMBERS][CLXENT_REQUEST_MAX], list[1024];
  if ((size_t)snprintf(list, sizeof list, "%s", request) >= sizeof list)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "device list \"%.40s...\" is longer than %zu characters", request,
                       sizeof list - 1);
  size_t k = 0;
  for (char *item = list, *next; item; item = next) {
    next = strchr(item, ',');
    if (next) *next++ = '\0';
    while (*item == ' ') ++item;
    for (char *last = item + strlen(item); last > item && last[-1] == ' ';) *--last = '\0'; /* "gpu ,cpu" */
    if (!*item) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "device \"%s\": entry %zu of the list is empty", request, k);
    const int all = !strcmp(item, "all");
    size_t count = 1;
    if (all) CHECK(clxent_all_devices(ctx, entries, &count));
    for (size_t e = 0; e < count; ++e, ++k) {
      const char *want = all ? entries[e] : item;
      if (k == CLXENT_MAX_MEMBERS)
        return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "device \"%s\" lists more than %d devices", request,
                           CLXENT_MAX_MEMBERS);
      const clxent_status st = clxent_open_device(&g->members[k], want, s);
      if (st != CLXENT_OK)
        return clxent_fail(ctx, st, "device %zu (\"%s\") of \"%s\": %s", k, want, request, clxent_last_error(NULL));
      g->count = k + 1;
      for (size_t j = 0; j < k; ++j)
        if (g->members[j]->device == g->members[k]->device)
          return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "device \"%s\" names %s twice (entries %zu and %zu)", request,
                             g->members[k]->device_name, j, k);
    }
  }
  return CLXENT_OK;
}

clxent_status clxent_open_group(clxent_ctx *ctx, const char *request, const clxent_settings *s) {
  clxent_group *g = ctx->group = calloc(1, sizeof *ctx->group);
  if (!g) return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "calloc of the device group failed");
  CHECK(open_members(ctx, request, s));
  if (g->count == 1) return CLXENT_OK; /* "all" with one device: the caller unwraps it */
  g->shares_fixed = s->split_count != 0;
  if (g->shares_fixed && s->split_count != g->count)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s has %zu weights for %zu devices", s->split_from,
                       s->split_count, g->count);
  for (size_t k = 0; k < g->count; ++k) {
    if (g->shares_fixed) g->shares[k] = s->split[k];
    else CHECK(measure_speed(ctx, k, &g->shares[k]));
  }
  double total = 0;
  for (size_t k = 0; k < g->count; ++k) total += g->shares[k];
  size_t used = 0;
  for (size_t k = 0; k < g->count; ++k) {
    g->estimate[k] = g->shares[k] /= total;
    used += (size_t)snprintf(ctx->device_name + used, used < sizeof ctx->device_name ? sizeof ctx->device_name - used : 0,
                             "%s%s", k ? " + " : "", g->members[k]->device_name);
    if (used >= sizeof ctx->device_name) used = sizeof ctx->device_name - 1;
  }
  return CLXENT_OK;
}

/* ---------------------------------------------------------------- a call split by rows */

typedef struct part {
  clxent_ctx *member;
  clxent_plan plan;   /* the member's rows, with its pointers into the caller's arrays */
  float *rows_out;    /* per-row results, or NULL */
  float *chunks_out;  /* elementwise chunk sums, or NULL */
  float *bias_out;    /* bias partial sums, or NULL */
  clxent_status status;
  double seconds;     /* how long the member took */
} part;

static clxent_status run_part(part *p) {
  clxent_ctx *m = p->member;
  const clxent_plan *plan = &p->plan;
  clxent_results res;
  clxent_clear_error(m);
  CHECK(clxent_stream(m, plan, &res));
  CHECK(clxent_read_floats(m, res.rows, p->rows_out ? plan->n : 0, p->rows_out, "clEnqueueReadBuffer(per-row results)"));
  CHECK(clxent_read_floats(m, res.chunks, clxent_chunk_count(plan->n * plan->c, CLXENT_SUM_CHUNK), p->chunks_out,
                           "clEnqueueReadBuffer(chunk sums)"));
  CHECK(clxent_read_floats(m, res.lse, plan->n, plan->lse, "clEnqueueReadBuffer(lse)"));
  CHECK(clxent_read_floats(m, res.bias_partial, clxent_chunk_count(plan->n, CLXENT_BIAS_CHUNK) * plan->c, p->bias_out,
                           "clEnqueueReadBuffer(bias partial sums)"));
  return CLXENT_OK;
}

static void *part_thread(void *arg) {
  part *p = arg;
  const double t0 = clxent_seconds();
  p->status = p->plan.n ? run_part(p) : CLXENT_OK;
  p->seconds = clxent_seconds() - t0;
  return NULL;
}

/* The call's timings refine the estimate of each member's share: rows per second, given a weight
 * of 1/4 against the estimate so that one noisy call (devices sharing the host's cores time
 * unevenly) moves it only part of the way. Only calls in which every member had rows, enough to
 * time (64 at least), count. The split itself follows the estimate only once it is 8 points off:
 * a new split means new launch sizes, which some drivers (PoCL) compile kernels anew for, so it
 * must settle rather than follow every call's noise. */
static void refine_shares(clxent_group *g, const part *parts) {
  double speed[CLXENT_MAX_MEMBERS], total = 0, drift = 0;
  for (size_t k = 0; k < g->count; ++k) {
    if (parts[k].plan.n < SPLIT_ALIGN || !(parts[k].seconds > 0)) return;
    speed[k] = (double)parts[k].plan.n / parts[k].seconds;
    total += speed[k];
  }
  for (size_t k = 0; k < g->count; ++k) {
    g->estimate[k] = 0.75 * g->estimate[k] + 0.25 * speed[k] / total;
    const double d = fabs(g->estimate[k] - g->shares[k]);
    if (d > drift) drift = d;
  }
  if (drift > 0.08)
    for (size_t k = 0; k < g->count; ++k) g->shares[k] = g->estimate[k];
}

/* Row boundaries: member k takes rows [first[k], first[k+1]), multiples of SPLIT_ALIGN but the last;
 * with the strided layout (inner S > 1) multiples of lcm(SPLIT_ALIGN, S), so that every member
 * also holds whole samples i (one contiguous stretch of [n/S][c][S]). */
static void split_rows(const clxent_group *g, size_t n, size_t inner, size_t *first) {
  size_t align = SPLIT_ALIGN;
  if (inner > 1) {
    size_t a = SPLIT_ALIGN, b = inner; /* gcd */
    while (b) { const size_t r = a % b; a = b, b = r; }
    align = inner / a <= n / SPLIT_ALIGN ? inner / a * SPLIT_ALIGN : n; /* n: one member takes all */
  }
  double cumulative = 0;
  first[0] = 0;
  for (size_t k = 1; k < g->count; ++k) {
    cumulative += g->shares[k - 1];
    size_t b = (size_t)(cumulative * (double)n / (double)align + 0.5) * align;
    if (b > n) b = n;
    first[k] = b < first[k - 1] ? first[k - 1] : b;
  }
  first[g->count] = n;
}

/* The member plan of rows [f, f + rows): the caller's arrays at that offset. */
static clxent_plan member_plan(const clxent_plan *plan, size_t f, size_t rows) {
  const size_t c = plan->c, elem = clxent_dtype_size(plan->dtype);
  clxent_plan p = *plan;
  p.n = rows;
  p.in = (const unsigned char *)plan->in + f * c * elem;
  if (plan->aux) p.aux = (const unsigned char *)plan->aux + f * c * elem;
  if (plan->labels) p.labels = plan->labels + f;
  if (plan->grad) p.grad = (unsigned char *)plan->grad + f * c * elem;
  if (plan->lse) p.lse = plan->lse + f;
  if (plan->row_scale) p.row_scale = plan->row_scale + (plan->elementwise ? f * c : f);
  p.bias_grad = NULL; /* partial sums only: the group reduces them */
  /* elementwise NONE streams into the caller's array; reduced, `loss` only asks for chunk sums */
  if (plan->loss && plan->elementwise && plan->reduction == CLXENT_NONE) p.loss = plan->loss + f * c;
  return p;
}

/* Uploads host partial sums to the first member, for its reduction. */
static clxent_status gather(clxent_ctx *m, enum clxent_slot slot, const float *values, size_t count, cl_mem *out) {
  CHECK(clxent_buffer(m, slot, count * sizeof(float), out));
  CHECK_CL(m, clEnqueueWriteBuffer(m->queue, *out, CL_TRUE, 0, count * sizeof(float), values, 0, NULL, NULL),
           "clEnqueueWriteBuffer(gathered partial sums)");
  return CLXENT_OK;
}

/* The batch's results from the gathered partial sums, on the first member. */
static clxent_status finish(clxent_ctx *m, const clxent_plan *plan, const float *rows, const float *chunks,
                            const float *bias) {
  clxent_plan last = *plan;
  clxent_results res = {NULL, NULL, NULL, NULL};
  last.lse = NULL; /* delivered by each member */
  if (plan->reduction == CLXENT_NONE) last.loss = NULL;
  clxent_clear_error(m);
  if (rows) CHECK(gather(m, SLOT_ROW_OUT, rows, plan->n, &res.rows));
  if (chunks)
    CHECK(gather(m, SLOT_SUM_PARTIAL, chunks, clxent_chunk_count(plan->n * plan->c, CLXENT_SUM_CHUNK), &res.chunks));
  if (bias)
    CHECK(gather(m, SLOT_BIAS_PARTIAL, bias, clxent_chunk_count(plan->n, CLXENT_BIAS_CHUNK) * plan->c,
                 &res.bias_partial));
  return clxent_deliver(m, &last, &res);
}

clxent_status clxent_group_execute(clxent_ctx *ctx, const clxent_plan *plan) {
  clxent_group *g = ctx->group;
  const size_t count = g->count, n = plan->n, c = plan->c;
  const int reduced = plan->loss && plan->reduction != CLXENT_NONE;
  size_t first[CLXENT_MAX_MEMBERS + 1];
  pthread_t threads[CLXENT_MAX_MEMBERS];
  int started[CLXENT_MAX_MEMBERS] = {0};
  split_rows(g, n, plan->inner, first);
  /* host homes of the partial results, in batch order */
  float *rows = !plan->elementwise && reduced ? malloc(n * sizeof(float)) : NULL;
  float *chunks = plan->elementwise && reduced ? malloc(clxent_chunk_count(n * c, CLXENT_SUM_CHUNK) * sizeof(float)) : NULL;
  float *bias = plan->bias_grad ? malloc(clxent_chunk_count(n, CLXENT_BIAS_CHUNK) * c * sizeof(float)) : NULL;
  part *parts = calloc(count, sizeof *parts);
  clxent_status st = CLXENT_OK;
  if (!parts || (!plan->elementwise && reduced && !rows) || (plan->elementwise && reduced && !chunks) ||
      (plan->bias_grad && !bias)) {
    st = clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "malloc of the split call's partial results failed");
    goto done;
  }
  for (size_t k = 0; k < count; ++k) {
    part *p = &parts[k];
    const size_t f = first[k];
    p->member = g->members[k];
    p->plan = member_plan(plan, f, first[k + 1] - f);
    if (!plan->elementwise && plan->loss) p->rows_out = plan->reduction == CLXENT_NONE ? plan->loss + f : rows + f;
    if (chunks) p->chunks_out = chunks + f * c / CLXENT_SUM_CHUNK; /* f·c is a multiple of the chunk */
    if (bias) p->bias_out = bias + f / CLXENT_BIAS_CHUNK * c;
    if (bias) p->plan.bias_grad = p->bias_out; /* asks the member for its bias partial sums */
  }
  /* every member at once: the others on threads, the first on this one */
  for (size_t k = 1; k < count; ++k) started[k] = pthread_create(&threads[k], NULL, part_thread, &parts[k]) == 0;
  part_thread(&parts[0]);
  for (size_t k = 1; k < count; ++k) {
    if (started[k]) pthread_join(threads[k], NULL);
    else part_thread(&parts[k]); /* no thread to be had: here, after the others */
  }
  for (size_t k = 0; k < count; ++k)
    if (parts[k].status != CLXENT_OK) {
      st = clxent_fail(ctx, parts[k].status, "device %zu (%s), rows [%zu, %zu): %s", k, g->members[k]->device_name,
                       first[k], first[k + 1], g->members[k]->error);
      goto done;
    }
  if (!g->shares_fixed) refine_shares(g, parts);
  st = finish(g->members[0], plan, rows, chunks, bias);
  if (st != CLXENT_OK)
    clxent_fail(ctx, st, "device 0 (%s), the batch reduction: %s", g->members[0]->device_name, g->members[0]->error);
done:
  free(parts), free(rows), free(chunks), free(bias);
  return st;
}
