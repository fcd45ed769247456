/*
 * The pipelined host path, for devices with memory of their own (GPUs).
 *
 * Three in-order queues work at once: uploads, kernels (ctx->queue), downloads. Blocks of rows
 * alternate between two sets of device buffers, so that while the kernels work on block b the
 * next block is uploading and block b-1's gradient is downloading. Transfers go through pinned
 * host memory (CL_MEM_ALLOC_HOST_PTR, mapped once): from the caller's arrays directly when they
 * lie in clxent_host_alloc memory, else through pinned staging (pinned.c) that the host fills
 * and drains while the device works, large copies split over threads (copy.c). Events order the reuse of every buffer:
 *   upload b    waits for block b-2's last use of the same device buffers (`done`);
 *   kernels b   wait for upload b;  download b waits for kernels b;
 *   staging in  is refilled once upload b-2 has read it; staging out is drained after download.
 */
#include <string.h>

#include "internal.h"

typedef struct pipe_slot {
  cl_mem dev[PIPE_ARRAYS];
  cl_event up, done;  /* upload finished; last use of the block's buffers (download or kernels) */
  size_t first, rows; /* the block in flight here; rows 0 = none */
} pipe_slot;

static clxent_status wait_event(clxent_ctx *ctx, cl_event ev, const char *what) {
  if (ev) CHECK_CL(ctx, clWaitForEvents(1, &ev), what);
  return CLXENT_OK;
}

static void replace_event(cl_event *slot, cl_event ev) {
  if (*slot) clReleaseEvent(*slot);
  *slot = ev;
}

/* Copies a finished block's gradient from staging to the caller (a no-op when it went directly). */
static clxent_status drain_block(clxent_ctx *ctx, const clxent_plan *plan, pipe_slot *slot, int s) {
  if (!slot->rows || !plan->grad) return CLXENT_OK;
  const size_t elem = clxent_dtype_size(plan->dtype), bytes = slot->rows * plan->c * elem;
  unsigned char *dst = (unsigned char *)plan->grad + slot->first * plan->c * elem;
  CHECK(wait_event(ctx, slot->done, "clWaitForEvents(gradient download)"));
  if (!clxent_host_pinned(ctx, dst, bytes)) clxent_copy(dst, ctx->staging[s][PIPE_GRAD].ptr, bytes);
  slot->rows = 0;
  return CLXENT_OK;
}

/* Enqueues block [first, first + rows) in pipeline slot s (see above). */
static clxent_status pipe_block(clxent_ctx *ctx, const clxent_plan *plan, size_t first, size_t rows, pipe_slot *slot,
                                int s, const clxent_results *res, cl_mem labels, cl_mem weight, cl_mem row_scale) {
  const size_t elem = clxent_dtype_size(plan->dtype), offset = first * plan->c * elem, bytes = rows * plan->c * elem;
  const void *src[2] = {(const unsigned char *)plan->in + offset,
                        plan->aux ? (const unsigned char *)plan->aux + offset : NULL};
  const int staged[2] = {!clxent_host_pinned(ctx, src[PIPE_IN], bytes),
                         src[PIPE_AUX] && !clxent_host_pinned(ctx, src[PIPE_AUX], bytes)};
  /* block b-2's uploads have read this slot's staging before the host refills it */
  if (staged[PIPE_IN] || staged[PIPE_AUX]) CHECK(wait_event(ctx, slot->up, "clWaitForEvents(upload)"));
  /* inputs up, after block b-2 is done with the device buffers */
  for (int a = PIPE_IN; a <= PIPE_AUX; ++a) {
    if (!src[a]) continue;
    const void *from = src[a];
    if (staged[a]) {
      unsigned char *stage;
      CHECK(clxent_staging_buffer(ctx, s, a, bytes, &stage));
      clxent_copy(stage, from, bytes);
      from = stage;
    }
    cl_event up = NULL;
    CHECK_CL(ctx,
             clEnqueueWriteBuffer(ctx->upload_queue, slot->dev[a], CL_FALSE, 0, bytes, from, slot->done ? 1 : 0,
                                  slot->done ? &slot->done : NULL, &up),
             "clEnqueueWriteBuffer(input block)");
    replace_event(&slot->up, up);
  }
  /* the kernels, after the upload */
  CHECK_CL(ctx, clEnqueueBarrierWithWaitList(ctx->queue, 1, &slot->up, NULL), "clEnqueueBarrierWithWaitList(upload)");
  const int in_place = plan->grad && plan->grad == plan->in;
  const cl_mem grad = !plan->grad ? NULL : in_place ? slot->dev[PIPE_IN] : slot->dev[PIPE_GRAD];
  if (plan->row_scale && plan->elementwise) {
    /* the block's per-value upstream gradients, on the kernels' queue: the in-order queue keeps each
     * block's write after the previous block's kernels, so one buffer serves every block */
    const size_t scale_bytes = rows * plan->c * sizeof(float);
    CHECK(clxent_buffer(ctx, SLOT_ROW_SCALE, scale_bytes, &row_scale));
    CHECK_CL(ctx,
             clEnqueueWriteBuffer(ctx->queue, row_scale, CL_FALSE, 0, scale_bytes, plan->row_scale + first * plan->c, 0,
                                  NULL, NULL),
             "clEnqueueWriteBuffer(opts->grad_output block)");
  }
  CHECK(clxent_block_kernels(ctx, plan, first, rows, slot->dev[PIPE_IN], plan->aux ? slot->dev[PIPE_AUX] : NULL, grad,
                             res, labels, weight, row_scale));
  cl_event computed = NULL;
  CHECK_CL(ctx, clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &computed), "clEnqueueMarkerWithWaitList(kernels)");
  replace_event(&slot->done, computed);
  /* the gradient down, after the kernels */
  if (grad) {
    unsigned char *to = (unsigned char *)plan->grad + offset;
    if (!clxent_host_pinned(ctx, to, bytes)) CHECK(clxent_staging_buffer(ctx, s, PIPE_GRAD, bytes, &to));
    cl_event down = NULL;
    CHECK_CL(ctx, clEnqueueReadBuffer(ctx->download_queue, grad, CL_FALSE, 0, bytes, to, 1, &slot->done, &down),
             "clEnqueueReadBuffer(gradient block)");
    replace_event(&slot->done, down);
  }
  slot->first = first, slot->rows = rows;
  clFlush(ctx->upload_queue), clFlush(ctx->queue), clFlush(ctx->download_queue);
  return CLXENT_OK;
}

static clxent_status transfer_queues(clxent_ctx *ctx) {
  cl_int err = CL_SUCCESS;
  if (!ctx->upload_queue) ctx->upload_queue = clCreateCommandQueue(ctx->context, ctx->device, 0, &err);
  if (err == CL_SUCCESS && !ctx->download_queue)
    ctx->download_queue = clCreateCommandQueue(ctx->context, ctx->device, 0, &err);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clCreateCommandQueue(transfers)", err);
}

/* The device buffers of the two slots: inputs, targets, and the gradient unless it is in place. */
static clxent_status slot_buffers(clxent_ctx *ctx, const clxent_plan *plan, size_t block_bytes, int slots,
                                  pipe_slot *slot) {
  static const enum clxent_slot device_slots[2][PIPE_ARRAYS] = {{SLOT_IN, SLOT_AUX, SLOT_GRAD},
                                                                 {SLOT_IN_1, SLOT_AUX_1, SLOT_GRAD_1}};
  const int used[PIPE_ARRAYS] = {1, plan->aux != NULL, plan->grad && plan->grad != plan->in};
  for (int s = 0; s < slots; ++s)
    for (int a = 0; a < PIPE_ARRAYS; ++a)
      if (used[a]) CHECK(clxent_buffer(ctx, device_slots[s][a], block_bytes, &slot[s].dev[a]));
  return CLXENT_OK;
}

clxent_status clxent_pipeline(clxent_ctx *ctx, const clxent_plan *plan, size_t block_rows, const clxent_results *res,
                              cl_mem labels, cl_mem weight, cl_mem row_scale) {
  const size_t block_bytes = block_rows * plan->c * clxent_dtype_size(plan->dtype);
  pipe_slot slots[2];
  memset(slots, 0, sizeof slots);
  clxent_status st;
  size_t b = 0;
  CHECK_GOTO(transfer_queues(ctx), st, drain);
  CHECK_GOTO(slot_buffers(ctx, plan, block_bytes, plan->n > block_rows ? 2 : 1, slots), st, drain);
  for (size_t first = 0; first < plan->n; first += block_rows, ++b) {
    const int s = (int)(b & 1);
    const size_t rows = plan->n - first < block_rows ? plan->n - first : block_rows;
    CHECK_GOTO(pipe_block(ctx, plan, first, rows, &slots[s], s, res, labels, weight, row_scale), st, drain);
    CHECK_GOTO(drain_block(ctx, plan, &slots[s ^ 1], s ^ 1), st, drain); /* block b-1, while b runs */
  }
  st = drain_block(ctx, plan, &slots[(b - 1) & 1], (int)((b - 1) & 1));
drain: { /* on every path: nothing queued may outlive the caller's arrays */
  const cl_int e1 = ctx->upload_queue ? clFinish(ctx->upload_queue) : CL_SUCCESS, e2 = clFinish(ctx->queue),
               e3 = ctx->download_queue ? clFinish(ctx->download_queue) : CL_SUCCESS;
  for (int s = 0; s < 2; ++s) replace_event(&slots[s].up, NULL), replace_event(&slots[s].done, NULL);
  if (st == CLXENT_OK && (e1 || e2 || e3)) st = clxent_fail_cl(ctx, "clFinish", e1 ? e1 : e2 ? e2 : e3);
}
  return st;
}
