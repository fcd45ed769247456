/*
 * Contexts over several devices. clxent_create(&ctx, "all") or a list such as "gpu,cpu" or
 * "0:0,1:0" makes one ordinary context per device (the members); a host-pointer call is split by
 * rows among them in proportion to their speed, each member running its share on its own thread.
 *
 * Shares: measured at creation on a small batch, then refined after every call from the time each
 * device took for its rows (a device's speed depends on the batch: PoCL's CPU device needs
 * large batches to use all its threads). CLXENT_SPLIT fixes them instead.
 *
 * Determinism: the split is a pure function of n and the shares. Every boundary is a multiple of 64 rows,
 * the chunk of the bias and elementwise partial sums, so each member computes exactly the partial
 * sums the whole batch would have on one device; they are gathered in batch order and reduced on
 * the first member by the same fixed tree. Members of the same kind of device therefore give the
 * bits of a single-device context at any split; different kinds differ only by their per-row
 * values, so for the same bits run after run they need fixed shares (CLXENT_SPLIT).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define TRY(expr)                          \
  do {                                     \
    const clxent_status try_ = (expr);     \
    if (try_ != CLXENT_OK) return try_;    \
  } while (0)

#define SPLIT_ALIGN 64 /* rows: CLXENT_BIAS_CHUNK, and a multiple of CLXENT_SUM_CHUNK values */
#define MAX_MEMBERS 64

int clxent_is_group_request(const char *request) {
  return request && (!strcmp(request, "all") || strchr(request, ',') != NULL);
}

/* The requests of "all": every device of every platform, as "P:D". */
static clxent_status all_devices(clxent_ctx *group, char (*requests)[16], size_t *count) {
  cl_platform_id platforms[16];
  cl_uint np = 0;
  const cl_int err = clGetPlatformIDs(16, platforms, &np);
  if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0))
    return clxent_fail(group, CLXENT_ERR_NO_DEVICE,
                       "no OpenCL platform is installed (for the CPU: apt-get install pocl-opencl-icd)");
  if (err != CL_SUCCESS) return clxent_fail_cl(group, "clGetPlatformIDs", err);
  *count = 0;
  for (cl_uint p = 0; p < np && p < 16; ++p) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS) continue;
    for (cl_uint d = 0; d < nd && *count < MAX_MEMBERS; ++d) snprintf(requests[(*count)++], 16, "%u:%u", p, d);
  }
  if (!*count) return clxent_fail(group, CLXENT_ERR_NO_DEVICE, "device \"all\": no OpenCL device is available");
  return CLXENT_OK;
}

double clxent_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double clxent_median(double *t, int k) {
  qsort(t, (size_t)k, sizeof *t, compare_doubles);
  return k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
}

/* Speed of a member on the host path: 1 / the median time of 3 calls (after a warm-up) on a
 * 4096 × 2048 batch with its gradient: rows enough to fill every device (256 rows ran on one
 * thread of a PoCL CPU device and measured it as slow as a one-core device). */
static clxent_status measure_speed(clxent_ctx *group, clxent_ctx *member, size_t k, double *speed) {
  enum { ROWS = 4096, CLASSES = 2048, REPEATS = 3 };
  float *logits = malloc((size_t)ROWS * CLASSES * sizeof(float)), *grad = malloc((size_t)ROWS * CLASSES * sizeof(float));
  int32_t *labels = malloc(ROWS * sizeof(int32_t));
  clxent_status st = logits && grad && labels
                         ? CLXENT_OK
                         : clxent_fail(group, CLXENT_ERR_OUT_OF_MEMORY, "malloc of the speed measurement's batch failed");
  if (st == CLXENT_OK) {
    for (size_t i = 0; i < (size_t)ROWS * CLASSES; ++i) logits[i] = (float)(i % 97) * 0.125f - 6.0f;
    for (int i = 0; i < ROWS; ++i) labels[i] = (int32_t)((i * 7919) % CLASSES);
  }
  double times[REPEATS];
  float loss;
  for (int r = -1; r < REPEATS && st == CLXENT_OK; ++r) {
    const double t0 = clxent_seconds();
    st = clxent_softmax_xent(member, ROWS, CLASSES, logits, labels, NULL, &loss, grad);
    if (r >= 0) times[r] = clxent_seconds() - t0;
  }
  if (st != CLXENT_OK) clxent_fail(group, st, "measuring device %zu (%s): %s", k, member->device_name, member->error);
  free(logits), free(grad), free(labels);
  if (st != CLXENT_OK) return st;
  const double t = clxent_median(times, REPEATS);
  *speed = 1.0 / (t > 1e-9 ? t : 1e-9);
  return CLXENT_OK;
}

/* CLXENT_SPLIT="w0,w1,...": fixed relative shares, one positive number per member. */
static clxent_status parse_split(clxent_ctx *group, const char *text, double *weights, size_t count) {
  const char *p = text;
  for (size_t k = 0; k < count; ++k) {
    char *end;
    weights[k] = strtod(p, &end);
    if (end == p || !(weights[k] > 0.0) || weights[k] > 1e12 || (*end != ',' && *end != '\0') ||
        (*end == '\0' && k + 1 < count) || (*end == ',' && k + 1 == count))
      return clxent_fail(group, CLXENT_ERR_INVALID_ARG,
                         "CLXENT_SPLIT=\"%s\": expected %zu positive weights separated by commas", text, count);
    p = end + 1;
  }
  return CLXENT_OK;
}

clxent_status clxent_create_group(clxent_ctx *group, const char *request) {
  char(*requests)[16] = NULL, *list = NULL;
  size_t count = 0;
  clxent_status st = CLXENT_OK;
  if (!strcmp(request, "all")) {
    requests = calloc(MAX_MEMBERS, sizeof *requests);
    if (!requests) return clxent_fail(group, CLXENT_ERR_OUT_OF_MEMORY, "calloc of the device list failed");
    st = all_devices(group, requests, &count);
  } else {
    list = malloc(strlen(request) + 1);
    if (!list) return clxent_fail(group, CLXENT_ERR_OUT_OF_MEMORY, "malloc of the device list failed");
    strcpy(list, request);
    for (const char *c = request; *c; ++c) count += *c == ',';
    ++count;
    if (count > MAX_MEMBERS)
      st = clxent_fail(group, CLXENT_ERR_INVALID_ARG, "device \"%s\" lists %zu devices; at most %d", request, count,
                       MAX_MEMBERS);
  }
  group->members = st == CLXENT_OK ? calloc(count, sizeof *group->members) : NULL;
  group->shares = st == CLXENT_OK ? calloc(count, sizeof *group->shares) : NULL;
  group->estimate = st == CLXENT_OK ? calloc(count, sizeof *group->estimate) : NULL;
  if (st == CLXENT_OK && (!group->members || !group->shares || !group->estimate))
    st = clxent_fail(group, CLXENT_ERR_OUT_OF_MEMORY, "calloc of the member table failed");
  char *item = list; /* entries of the list, cut at each comma in turn (empty ones included) */
  for (size_t k = 0; k < count && st == CLXENT_OK; ++k) {
    char *next = item ? strchr(item, ',') : NULL;
    if (next) *next++ = '\0';
    const char *want = requests ? requests[k] : item;
    while (want && *want == ' ') ++want;
    if (!want || !*want) {
      st = clxent_fail(group, CLXENT_ERR_INVALID_ARG, "device \"%s\": entry %zu of the list is empty", request, k);
      break;
    }
    st = clxent_create(&group->members[k], want);
    if (st != CLXENT_OK) {
      clxent_fail(group, st, "device %zu (\"%s\") of \"%s\": %s", k, want, request, clxent_last_error(NULL));
      break;
    }
    group->member_count = k + 1;
    for (size_t j = 0; j < k; ++j)
      if (group->members[j]->device == group->members[k]->device)
        st = clxent_fail(group, CLXENT_ERR_INVALID_ARG, "device \"%s\" names %s twice (entries %zu and %zu)", request,
                         group->members[k]->device_name, j, k);
    item = next;
  }
  free(requests), free(list);
  if (st != CLXENT_OK) return st;

  /* the shares: CLXENT_SPLIT, else measured now, once */
  const char *fixed = getenv("CLXENT_SPLIT");
  group->shares_fixed = fixed && *fixed;
  if (group->shares_fixed) TRY(parse_split(group, fixed, group->shares, count));
  else
    for (size_t k = 0; k < count; ++k) TRY(measure_speed(group, group->members[k], k, &group->shares[k]));
  double total = 0;
  for (size_t k = 0; k < count; ++k) total += group->shares[k];
  size_t used = 0;
  for (size_t k = 0; k < count; ++k) {
    group->estimate[k] = group->shares[k] /= total;
    used += (size_t)snprintf(group->device_name + used, used < sizeof group->device_name ? sizeof group->device_name - used : 0,
                             "%s%s", k ? " + " : "", group->members[k]->device_name);
    if (used >= sizeof group->device_name) used = sizeof group->device_name - 1;
  }
  return CLXENT_OK;
}

/* ---------------------------------------------------------------- a call split by rows */

typedef struct part {
  clxent_ctx *member;
  row_job job;          /* the member's rows, with its pointers into the caller's arrays */
  float *rows_out;      /* per-row results, or NULL */
  float *chunks_out;    /* elementwise chunk sums, or NULL */
  float *bias_out;      /* bias partial sums, or NULL */
  clxent_status status;
  double seconds;       /* how long the member took */
} part;

static clxent_status read_back(clxent_ctx *m, cl_mem from, size_t count, float *to, const char *what) {
  if (!to || !count) return CLXENT_OK;
  const cl_int err = clEnqueueReadBuffer(m->queue, from, CL_TRUE, 0, count * sizeof(float), to, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(m, what, err);
}

static clxent_status run_part(part *p) {
  clxent_ctx *m = p->member;
  const row_job *job = &p->job;
  call_buffers cb;
  clxent_clear_error(m);
  TRY(clxent_run_rows(m, job, &cb));
  TRY(read_back(m, cb.out, job->n, p->rows_out, "clEnqueueReadBuffer(per-row results)"));
  TRY(read_back(m, cb.sum_partial, (job->n * job->c + CLXENT_SUM_CHUNK - 1) / CLXENT_SUM_CHUNK, p->chunks_out,
                "clEnqueueReadBuffer(chunk sums)"));
  TRY(read_back(m, cb.lse, job->lse ? job->n : 0, job->lse, "clEnqueueReadBuffer(lse)"));
  TRY(read_back(m, cb.bias_partial, (job->n + CLXENT_BIAS_CHUNK - 1) / CLXENT_BIAS_CHUNK * job->c, p->bias_out,
                "clEnqueueReadBuffer(bias partial sums)"));
  return CLXENT_OK;
}

static void *part_thread(void *arg) {
  part *p = arg;
  const double t0 = clxent_seconds();
  p->status = run_part(p);
  p->seconds = clxent_seconds() - t0;
  return NULL;
}

/* The call's timings refine the estimate of each member's share: rows per second, given a weight
 * of 1/4 against the estimate so that one noisy call (devices sharing the host's cores time
 * unevenly) moves it only part of the way. Only calls in
 * which every member had rows, enough to time (64 at least), count. The split itself follows the
 * estimate only once it is 8 points off: a new split means new launch sizes, which some drivers
 * (PoCL) compile kernels anew for, so it must settle rather than follow every call's noise. */
static void refine_shares(clxent_ctx *group, const part *parts) {
  double speed[MAX_MEMBERS], total = 0, drift = 0;
  for (size_t k = 0; k < group->member_count; ++k) {
    if (parts[k].job.n < SPLIT_ALIGN || !(parts[k].seconds > 0)) return;
    speed[k] = (double)parts[k].job.n / parts[k].seconds;
    total += speed[k];
  }
  for (size_t k = 0; k < group->member_count; ++k) {
    group->estimate[k] = 0.75 * group->estimate[k] + 0.25 * speed[k] / total;
    const double d = fabs(group->estimate[k] - group->shares[k]);
    if (d > drift) drift = d;
  }
  if (drift > 0.08)
    for (size_t k = 0; k < group->member_count; ++k) group->shares[k] = group->estimate[k];
}

/* Row boundaries: member k takes rows [first[k], first[k+1]), multiples of SPLIT_ALIGN but the last. */
static void split_rows(const clxent_ctx *group, size_t n, size_t *first) {
  double cumulative = 0;
  first[0] = 0;
  for (size_t k = 1; k < group->member_count; ++k) {
    cumulative += group->shares[k - 1];
    size_t b = (size_t)(cumulative * (double)n / SPLIT_ALIGN + 0.5) * SPLIT_ALIGN;
    if (b > n) b = n;
    first[k] = b < first[k - 1] ? first[k - 1] : b;
  }
  first[group->member_count] = n;
}

/* Uploads host partial sums to the first member and reduces them there, in batch order. */
static clxent_status reduce_on_first(clxent_ctx *m, enum clxent_slot slot, const float *values, size_t count,
                                     cl_mem *out) {
  TRY(clxent_buffer(m, slot, count * sizeof(float), out));
  const cl_int err = clEnqueueWriteBuffer(m->queue, *out, CL_TRUE, 0, count * sizeof(float), values, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(m, "clEnqueueWriteBuffer(gathered partial sums)", err);
}

static clxent_status finish_split(clxent_ctx *m, const row_job *job, clxent_reduction reduction, float divisor,
                                  float *loss, const float *rows, const float *chunks, const float *bias) {
  cl_mem values;
  clxent_clear_error(m);
  if (loss && reduction != CLXENT_NONE) {
    const size_t count = rows ? job->n : (job->n * job->c + CLXENT_SUM_CHUNK - 1) / CLXENT_SUM_CHUNK;
    TRY(reduce_on_first(m, rows ? SLOT_ROW_OUT : SLOT_SUM_PARTIAL, rows ? rows : chunks, count, &values));
    TRY(clxent_reduce_values(m, values, count, divisor, loss));
  }
  if (bias) {
    TRY(reduce_on_first(m, SLOT_BIAS_PARTIAL, bias, (job->n + CLXENT_BIAS_CHUNK - 1) / CLXENT_BIAS_CHUNK * job->c,
                        &values));
    TRY(clxent_deliver_bias(m, job, values));
  }
  return CLXENT_OK;
}

clxent_status clxent_run_split(clxent_ctx *group, const row_job *job, clxent_reduction reduction, float divisor,
                               float *loss) {
  const size_t count = group->member_count, elem = clxent_dtype_size(job->dtype), n = job->n, c = job->c;
  const int reduced = loss && reduction != CLXENT_NONE;
  size_t first[MAX_MEMBERS + 1];
  split_rows(group, n, first);
  /* host homes of the partial results, in batch order */
  float *rows = NULL, *chunks = NULL, *bias = NULL;
  part *parts = calloc(count, sizeof *parts);
  pthread_t *threads = calloc(count, sizeof *threads);
  int *started = calloc(count, sizeof *started);
  if (!job->elementwise && reduced) rows = malloc(n * sizeof(float));
  if (job->elementwise && reduced) chunks = malloc((n * c + CLXENT_SUM_CHUNK - 1) / CLXENT_SUM_CHUNK * sizeof(float));
  if (job->bias_grad) bias = malloc((n + CLXENT_BIAS_CHUNK - 1) / CLXENT_BIAS_CHUNK * c * sizeof(float));
  clxent_status st = CLXENT_OK;
  if (!parts || !threads || !started || (!job->elementwise && reduced && !rows) ||
      (job->elementwise && reduced && !chunks) || (job->bias_grad && !bias))
    st = clxent_fail(group, CLXENT_ERR_OUT_OF_MEMORY, "malloc of the split call's partial results failed");

  for (size_t k = 0; k < count && st == CLXENT_OK; ++k) {
    part *p = &parts[k];
    const size_t f = first[k], rows_k = first[k + 1] - first[k];
    p->member = group->members[k];
    if (!rows_k) continue;
    p->job = *job;
    p->job.n = rows_k;
    p->job.in = (const unsigned char *)job->in + f * c * elem;
    if (job->aux) p->job.aux = (const unsigned char *)job->aux + f * c * elem;
    if (job->labels) p->job.labels = job->labels + f;
    if (job->grad) p->job.grad = (unsigned char *)job->grad + f * c * elem;
    if (job->lse) p->job.lse = job->lse + f;
    /* elementwise NONE streams into the caller's array; reduced, loss_out only asks for chunk sums */
    if (job->loss_out && reduction == CLXENT_NONE) p->job.loss_out = job->loss_out + f * c;
    if (!job->elementwise && loss) p->rows_out = reduction == CLXENT_NONE ? loss + f : rows + f;
    if (chunks) p->chunks_out = chunks + f * c / CLXENT_SUM_CHUNK; /* f·c is a multiple of the chunk */
    if (bias) p->bias_out = p->job.bias_grad = bias + f / CLXENT_BIAS_CHUNK * c;
    if (k > 0 && pthread_create(&threads[k], NULL, part_thread, p) == 0) started[k] = 1;
    else part_thread(p); /* the first member (or one whose thread did not start) here */
  }
  for (size_t k = 1; k < count; ++k)
    if (started[k]) pthread_join(threads[k], NULL);
  for (size_t k = 0; k < count && st == CLXENT_OK; ++k)
    if (parts[k].status != CLXENT_OK)
      st = clxent_fail(group, parts[k].status, "device %zu (%s), rows [%zu, %zu): %s", k,
                       group->members[k]->device_name, first[k], first[k + 1], group->members[k]->error);
  if (st == CLXENT_OK && !group->shares_fixed) refine_shares(group, parts);
  if (st == CLXENT_OK) {
    clxent_ctx *m = group->members[0];
    st = finish_split(m, job, reduction, divisor, loss, rows, chunks, bias);
    if (st != CLXENT_OK) clxent_fail(group, st, "device 0 (%s), the batch reduction: %s", m->device_name, m->error);
  }
  free(parts), free(threads), free(started), free(rows), free(chunks), free(bias);
  return st;
}
