/*
 * The batch reduction and the delivery of a call's results to the host.
 *
 * J = Σ values / divisor in the fixed tree of kernels/reduce.cl: the order of every addition
 * depends only on the number of values, so the loss has the same bits run after run, whatever
 * the block size of the stream or the split over devices. The bias gradient is summed the same
 * way from its 64-row chunk sums (kernels/bias.cl).
 *
 * Where the device is the host's own CPU using host memory in place (zero-copy), a reduction of
 * few values is done on the host instead, in exactly reduce_sum's order (host_reduce below): on
 * PoCL a kernel launch and the wait for it cost ~40 µs, more than a small call's whole work, and
 * IEEE float addition and division of the same operands in the same order give the same bits on
 * the host as in the device's threads.
 */
#include <fenv.h>
#include <float.h>

#include "internal.h"

clxent_status clxent_enqueue_reduce(clxent_ctx *ctx, cl_mem values, size_t n, float divisor, cl_mem divisor_dev,
                                    cl_mem final, cl_mem *result) {
  const size_t span = ctx->group_size * CLXENT_REDUCE_ITEMS;
  cl_mem src = values;
  enum clxent_slot slot = SLOT_PARTIAL_A;
  size_t count = n;
  do {
    const size_t groups = clxent_chunk_count(count, span);
    const int last = groups == 1;
    cl_mem dst = final;
    if (!last || !final) CHECK(clxent_buffer(ctx, slot, groups * sizeof(float), &dst));
    CHECK(clxent_launch_reduce_stage(ctx, count, src, dst, last ? divisor : 1.0f, last ? divisor_dev : NULL, groups));
    src = dst;
    count = groups;
    slot = slot == SLOT_PARTIAL_A ? SLOT_PARTIAL_B : SLOT_PARTIAL_A;
  } while (count > 1);
  *result = src;
  return CLXENT_OK;
}

/* ---------------------------------------------------------------- the reduction on the host */

/* Up to this many values the host reduces them (a read of 4 bytes per value and ~1 ns of adds,
 * against a launch and a wait per stage on the device). */
#define HOST_REDUCE_MAX ((size_t)1 << 16)

/* The host computes the device's bits only in IEEE single precision, rounding to nearest, with
 * subnormals: not where float expressions are evaluated wider (x87), -ffast-math may reorder the
 * sums, the calling thread rounds otherwise (fesetround), or it flushes subnormals to zero
 * (FTZ/DAZ, e.g. set by code built with -ffast-math). The last two are the caller's thread
 * state, so they are tested per call (a few ns); PoCL's worker threads keep their own. */
int clxent_host_float_is_devices(void) {
#if FLT_EVAL_METHOD != 0 || defined(__FAST_MATH__)
  return 0;
#else
  volatile float tiny = 0x1p-130f; /* subnormal: 0 under DAZ, and 2·tiny is flushed under FTZ */
  return fegetround() == FE_TONEAREST && tiny + tiny == 0x1p-129f;
#endif
}

/* Whether this call's `count` values are reduced on the host: on a CPU device working in host
 * memory (whose float arithmetic is the host's), when they are few. The choice depends on the
 * call's size and the context only, never on the block size. */
static int host_reduces(const clxent_ctx *ctx, size_t count) {
  return ctx->zero_copy && (ctx->device_type & CL_DEVICE_TYPE_CPU) && count <= HOST_REDUCE_MAX &&
         clxent_host_float_is_devices();
}

/* reduce_sum's stages (kernels/reduce.cl) over v[0..count), in place, returning the last one's
 * value: group g of G = group_size items sums the span [g·G·R, (g+1)·G·R), R = CLXENT_REDUCE_ITEMS;
 * item i adds v[base + k·G + i] for k = 0..R-1 in order, from 0.0f, skipping indices past the
 * count; then the tree adds item i + step into item i for step = G/2, ..., 1; the group's value
 * is item 0's divided by the divisor on the last stage, by 1 before. `lane` holds G floats.
 * Stage s writes group g's value at v[g], which no later group of the stage reads (g ≤ g·G·R). */
float clxent_host_reduce(float *v, size_t count, size_t group_size, float divisor, float *lane) {
  const size_t span = group_size * CLXENT_REDUCE_ITEMS;
  do {
    const size_t groups = clxent_chunk_count(count, span);
    const float d = groups == 1 ? divisor : 1.0f;
    for (size_t g = 0; g < groups; ++g) {
      for (size_t i = 0; i < group_size; ++i) lane[i] = 0.0f;
      for (size_t k = 0; k < CLXENT_REDUCE_ITEMS; ++k) {
        const size_t start = g * span + k * group_size;
        if (start >= count) break;
        const size_t items = count - start < group_size ? count - start : group_size;
        for (size_t i = 0; i < items; ++i) lane[i] += v[start + i];
      }
      for (size_t step = group_size / 2; step > 0; step /= 2)
        for (size_t i = 0; i < step; ++i) lane[i] += lane[i + step];
      v[g] = lane[0] / d;
    }
    count = groups;
  } while (count > 1);
  return v[0];
}

/* ---------------------------------------------------------------- delivery */

clxent_status clxent_read_bytes(clxent_ctx *ctx, cl_mem from, size_t bytes, void *to, const char *what) {
  if (to && bytes) CHECK_CL(ctx, clEnqueueReadBuffer(ctx->queue, from, CL_TRUE, 0, bytes, to, 0, NULL, NULL), what);
  return CLXENT_OK;
}

clxent_status clxent_read_floats(clxent_ctx *ctx, cl_mem from, size_t count, float *to, const char *what) {
  return clxent_read_bytes(ctx, from, count * sizeof(float), to, what);
}

/* As clxent_read_bytes, without waiting: the one clFinish of clxent_deliver waits for it. */
static clxent_status enqueue_read_bytes(clxent_ctx *ctx, cl_mem from, size_t bytes, void *to, const char *what) {
  if (to && bytes) CHECK_CL(ctx, clEnqueueReadBuffer(ctx->queue, from, CL_FALSE, 0, bytes, to, 0, NULL, NULL), what);
  return CLXENT_OK;
}
static clxent_status enqueue_read(clxent_ctx *ctx, cl_mem from, size_t count, float *to, const char *what) {
  return enqueue_read_bytes(ctx, from, count * sizeof(float), to, what);
}

/* Every result is read without blocking and the host waits once, at the end: each wait for
 * PoCL's threads costs ~20 µs, more than a small call's work. The queue is drained on every path
 * (commands may still write to the caller's arrays), also of what the stream left queued. */
clxent_status clxent_deliver(clxent_ctx *ctx, const clxent_plan *plan, const clxent_results *res) {
  clxent_status st = CLXENT_OK;
  float *on_host = NULL; /* the values the host reduces, then G floats of lanes */
  size_t count = 0;
  if (plan->loss && plan->reduction != CLXENT_NONE) {
    /* row kernels: one value per row; elementwise: the chunk sums of the per-value losses */
    count = plan->elementwise ? clxent_chunk_count(plan->n * plan->c, CLXENT_SUM_CHUNK) : plan->n;
    cl_mem values = plan->elementwise ? res->chunks : res->rows, total;
    if (host_reduces(ctx, count)) on_host = clxent_host_scratch(ctx, (count + ctx->group_size) * sizeof(float));
    if (on_host) {
      CHECK_GOTO(enqueue_read(ctx, values, count, on_host, "clEnqueueReadBuffer(per-row results)"), st, drain);
    } else { /* the device reduces (also where the scratch could not be had) */
      CHECK_GOTO(clxent_enqueue_reduce(ctx, values, count, plan->divisor, NULL, NULL, &total), st, drain);
      CHECK_GOTO(enqueue_read(ctx, total, 1, plan->loss, "clEnqueueReadBuffer(batch loss)"), st, drain);
    }
  } else if (plan->loss && !plan->elementwise) { /* elementwise NONE: streamed out already */
    CHECK_GOTO(enqueue_read(ctx, res->rows, plan->n, plan->loss, "clEnqueueReadBuffer(per-row results)"), st, drain);
  }
  if (plan->lse) CHECK_GOTO(enqueue_read(ctx, res->lse, plan->n, plan->lse, "clEnqueueReadBuffer(lse)"), st, drain);
  if (plan->argmax)
    CHECK_GOTO(enqueue_read_bytes(ctx, res->argmax, plan->n * sizeof(int32_t), plan->argmax,
                                  "clEnqueueReadBuffer(argmax)"),
               st, drain);
  if (plan->bias_grad) {
    cl_mem out;
    CHECK_GOTO(clxent_buffer(ctx, SLOT_BIAS, plan->c * sizeof(float), &out), st, drain);
    CHECK_GOTO(clxent_launch_column_sum(ctx, plan->n, plan->c, res->bias_partial, out), st, drain);
    CHECK_GOTO(enqueue_read(ctx, out, plan->c, plan->bias_grad, "clEnqueueReadBuffer(bias gradient)"), st, drain);
  }
drain: {
  const cl_int err = clFinish(ctx->queue);
  if (st == CLXENT_OK && err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clFinish", err);
}
  PIECE(ctx, "clFinish (wait for everything)", NULL);
  if (st == CLXENT_OK && on_host)
    *plan->loss = clxent_host_reduce(on_host, count, ctx->group_size, plan->divisor, on_host + count);
  PIECE(ctx, "reduce on the host", NULL);
  return st;
}
