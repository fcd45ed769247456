/*
 * The one-device engine: a plan's batch through the device in row blocks that fit its buffers.
 * On devices that share host memory (PoCL) each block's buffers wrap the caller's arrays
 * (CL_MEM_USE_HOST_PTR) and nothing is copied; on devices with memory of their own the blocks go
 * through the pinned pipeline (pipeline.c). Per-row results, lse and bias partial sums stay on
 * the device for the reduction (reduce.c).
 */
#include <string.h>

#include "internal.h"

static void release_mems(cl_mem *mems, int count) {
  for (int i = 0; i < count; ++i)
    if (mems[i]) clReleaseMemObject(mems[i]), mems[i] = NULL;
}

/* The kernel of a binary loss to be reduced that adds the chunk sums itself (binary.cl), where the
 * program has it: the same sums without the per-value losses and chunk_sum; else KERNEL_COUNT. */
static clxent_kernel_id binary_sums_kernel(const clxent_ctx *ctx, const clxent_plan *plan) {
  const clxent_kernel_id k = plan->kernel == KERNEL_SIGMOID_XENT ? KERNEL_SIGMOID_XENT_SUMS : KERNEL_BCE_SUMS;
  const int reduced = plan->elementwise && plan->loss && plan->reduction != CLXENT_NONE;
  return reduced && ctx->kernels[k][plan->dtype] ? k : KERNEL_COUNT;
}

clxent_status clxent_block_kernels(clxent_ctx *ctx, const clxent_plan *plan, size_t first, size_t rows, cl_mem in,
                                   cl_mem aux, cl_mem grad, const clxent_results *res, cl_mem labels, cl_mem weight,
                                   cl_mem row_scale) {
  const size_t c = plan->c;
  const clxent_kernel_id sums_kernel = binary_sums_kernel(ctx, plan);
  const int sums = sums_kernel != KERNEL_COUNT;
  /* elementwise: the block's per-value results land at the start of the results buffer (with the
   * chunk sums' kernel, no per-value results: its out is the chunk sums) */
  const clxent_rows_launch l = {.kernel = sums ? sums_kernel : plan->kernel,
                                .dtype = plan->dtype,
                                .rows = plan->elementwise ? rows * c : rows,
                                .c = plan->elementwise ? 1 : c,
                                .first_row = plan->elementwise ? first * c : first,
                                .inner = plan->inner,
                                .cols = (int)c,
                                .in = in,
                                .aux = aux,
                                .labels = labels,
                                .weight = weight,
                                .ignore_index = plan->ignore_index,
                                .mode = plan->mode,
                                .params = plan->params,
                                .grad = grad,
                                .out = sums ? res->chunks : res->rows,
                                .lse = res->lse,
                                .scales = NULL,
                                .row_scale = grad ? row_scale : NULL,
                                .argmax = res->argmax,
                                .bias_partial = res->bias_partial};
  CHECK(clxent_launch_rows(ctx, &l));
  if (plan->elementwise && plan->loss && !sums) {
    if (plan->reduction != CLXENT_NONE) {
      CHECK(clxent_launch_chunk_sum(ctx, first * c, rows * c, res->rows, res->chunks));
    } else {
      CHECK_CL(ctx,
               clEnqueueReadBuffer(ctx->queue, res->rows, CL_FALSE, 0, rows * c * sizeof(float), plan->loss + first * c,
                                   0, NULL, NULL),
               "clEnqueueReadBuffer(per-value losses)");
    }
  }
  return CLXENT_OK;
}

/* One block on a device that shares host memory: its buffers wrap the caller's arrays and are
 * released when enqueued (OpenCL keeps them alive until the queued commands finish). */
static clxent_status zero_copy_block(clxent_ctx *ctx, const clxent_plan *plan, size_t first, size_t rows,
                                     const clxent_results *res, cl_mem labels, cl_mem weight, cl_mem row_scale) {
  const size_t elem = clxent_dtype_size(plan->dtype), offset = first * plan->c * elem, bytes = rows * plan->c * elem;
  const int in_place = plan->grad && plan->grad == plan->in;
  cl_mem own[4] = {NULL, NULL, NULL, NULL}; /* wrapped in, aux, grad, the block's upstream gradients */
  clxent_status st = CLXENT_OK;
  CHECK_GOTO(clxent_wrap_host(ctx, in_place ? CL_MEM_READ_WRITE : CL_MEM_READ_ONLY, (const unsigned char *)plan->in + offset,
                       bytes, "the input", &own[0]),
             st, done);
  if (plan->aux)
    CHECK_GOTO(clxent_wrap_host(ctx, CL_MEM_READ_ONLY, (const unsigned char *)plan->aux + offset, bytes, "the targets", &own[1]),
               st, done);
  if (plan->grad && !in_place) /* read-write: the row-per-item kernel caches e^(z-m) in the gradient */
    CHECK_GOTO(clxent_wrap_host(ctx, CL_MEM_READ_WRITE, (unsigned char *)plan->grad + offset, bytes, "the gradient", &own[2]),
               st, done);
  if (plan->row_scale && plan->elementwise) /* per value: the block's own stretch, like its values */
    CHECK_GOTO(clxent_wrap_host(ctx, CL_MEM_READ_ONLY, plan->row_scale + first * plan->c, rows * plan->c * sizeof(float),
                         "opts->grad_output", &own[3]),
               st, done);
  const cl_mem grad = in_place ? own[0] : own[2];
  PIECE(ctx, "wrap the caller's arrays", "block");
  CHECK_GOTO(clxent_block_kernels(ctx, plan, first, rows, own[0], own[1], grad, res, labels, weight,
                                  plan->elementwise ? own[3] : row_scale),
             st, done);
  if (grad) {
    /* the device's writes made visible in host memory: a read of the buffer into its own host_ptr,
     * which OpenCL 1.2 allows (clEnqueueReadBuffer) once the commands using the buffer are done
     * (the queue is in order) and no command uses it until the read has finished (none later does).
     * A device that worked in place copies nothing (PoCL: host_ptr == its pointer); it is one
     * command where a map and an unmap were two, each a trip through PoCL's threads. */
    void *host = (unsigned char *)plan->grad + offset;
    const cl_int err = clEnqueueReadBuffer(ctx->queue, grad, CL_FALSE, 0, bytes, host, 0, NULL, NULL);
    if (err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clEnqueueReadBuffer(gradient, into its own host memory)", err);
    PIECE(ctx, "enqueue the gradient's read into itself", NULL);
  }
done:
  release_mems(own, 4);
  PIECE(ctx, "release the wrappers", NULL);
  return st;
}

/* A device buffer for the call holding a copy of host data (or, zero-copy, the host data itself). */
static clxent_status upload(clxent_ctx *ctx, enum clxent_slot slot, const void *host, size_t bytes, const char *what,
                            cl_mem *wrapped, cl_mem *out) {
  if (ctx->zero_copy) {
    CHECK(clxent_wrap_host(ctx, CL_MEM_READ_ONLY, host, bytes, what, wrapped));
    *out = *wrapped;
    return CLXENT_OK;
  }
  CHECK(clxent_buffer(ctx, slot, bytes, out));
  CHECK_CL(ctx, clEnqueueWriteBuffer(ctx->queue, *out, CL_FALSE, 0, bytes, host, 0, NULL, NULL),
           "clEnqueueWriteBuffer(labels, weights or upstream gradients)");
  return CLXENT_OK;
}

#define PIPE_BLOCK_MAX ((cl_ulong)64 << 20) /* bytes per array and pipeline block */

/* Rows per block: zero-copy, as many as fit the block buffers; pipelined, about 8 blocks a batch
 * so that transfers overlap the kernels, each big enough (>= 4 MiB) to move at full transfer
 * speed, and at most PIPE_BLOCK_MAX. The strided layout (inner S > 1) takes whole samples: a
 * multiple of S rows, so that a block is one contiguous stretch of [n/S][c][S]. */
static size_t block_rows(const clxent_ctx *ctx, const clxent_plan *plan, size_t row_bytes) {
  size_t rows = (size_t)(ctx->block_bytes / row_bytes);
  if (!ctx->zero_copy) {
    const size_t target = (plan->n + 7) / 8, floor_rows = ((size_t)4 << 20) / row_bytes + 1;
    const size_t cap = (size_t)(ctx->block_bytes < PIPE_BLOCK_MAX ? ctx->block_bytes : PIPE_BLOCK_MAX) / row_bytes;
    rows = target > floor_rows ? target : floor_rows;
    if (rows > cap) rows = cap ? cap : 1;
  }
  if (plan->inner > 1) rows = rows < plan->inner ? plan->inner : rows / plan->inner * plan->inner;
  return rows < plan->n ? rows : plan->n;
}

/* clxent_stream, except that with `leave_queued` a successful zero-copy stream returns with its
 * commands still queued, for clxent_deliver to wait for once with the results' reads. */
static clxent_status stream(clxent_ctx *ctx, const clxent_plan *plan, clxent_results *res, int leave_queued) {
  /* a block's largest buffer per row: its values, or for the elementwise losses their float
   * results, which are twice the size of 16-bit values */
  const size_t elem = clxent_dtype_size(plan->dtype), n = plan->n, c = plan->c;
  const size_t row_bytes = c * (plan->elementwise && elem < sizeof(float) ? sizeof(float) : elem);
  memset(res, 0, sizeof *res);
  if ((cl_ulong)row_bytes > ctx->block_bytes)
    return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY,
                       "one row of c = %zu values (%zu bytes) exceeds the largest block buffer on %s (%llu bytes)", c,
                       row_bytes, ctx->device_name, (unsigned long long)ctx->block_bytes);
  if (plan->inner > 1 && (cl_ulong)row_bytes * plan->inner > ctx->block_bytes)
    return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY,
                       "one sample of c = %zu classes x inner = %zu positions (%zu bytes) exceeds the largest block "
                       "buffer on %s (%llu bytes)",
                       c, plan->inner, row_bytes * plan->inner, ctx->device_name, (unsigned long long)ctx->block_bytes);
  const size_t rows = block_rows(ctx, plan, row_bytes);
  /* per-row results: the whole batch's for the row kernels; a block's for the elementwise ones,
   * which stream them out (any n·c then works, even past one allocation) */
  if (binary_sums_kernel(ctx, plan) == KERNEL_COUNT)
    CHECK(clxent_buffer(ctx, SLOT_ROW_OUT, (plan->elementwise ? rows * c : n) * sizeof(float), &res->rows));
  if (plan->elementwise && plan->loss && plan->reduction != CLXENT_NONE)
    CHECK(clxent_buffer(ctx, SLOT_SUM_PARTIAL, clxent_chunk_count(n * c, CLXENT_SUM_CHUNK) * sizeof(float),
                        &res->chunks));
  if (plan->lse) CHECK(clxent_buffer(ctx, SLOT_LSE, n * sizeof(float), &res->lse));
  if (plan->argmax) CHECK(clxent_buffer(ctx, SLOT_ARGMAX, n * sizeof(int32_t), &res->argmax));
  if (plan->bias_grad)
    CHECK(clxent_buffer(ctx, SLOT_BIAS_PARTIAL, clxent_chunk_count(n, CLXENT_BIAS_CHUNK) * c * sizeof(float),
                        &res->bias_partial));

  PIECE(ctx, "scratch buffers", NULL);
  cl_mem wrapped[3] = {NULL, NULL, NULL}, labels = NULL, weight = NULL, row_scale = NULL;
  clxent_status st = CLXENT_OK;
  if (plan->labels)
    CHECK_GOTO(upload(ctx, SLOT_LABELS, plan->labels, n * sizeof(int32_t), "the labels", &wrapped[0], &labels), st,
               drain);
  if (plan->weight)
    CHECK_GOTO(upload(ctx, SLOT_WEIGHT, plan->weight, c * sizeof(float), "the weights", &wrapped[1], &weight), st,
               drain);
  /* softmax rows' upstream gradients: the batch's, read by batch row like the labels (the
   * elementwise losses' are per value, as large as their inputs: they go block by block) */
  if (plan->row_scale && !plan->elementwise)
    CHECK_GOTO(upload(ctx, SLOT_ROW_SCALE, plan->row_scale, n * sizeof(float), "opts->grad_output", &wrapped[2],
                      &row_scale),
               st, drain);
  PIECE(ctx, "wrap the caller's arrays", "labels, weights");
  if (!ctx->zero_copy) {
    st = clxent_pipeline(ctx, plan, rows, res, labels, weight, row_scale);
    goto drain;
  }
  /* zero-copy: the queue is in order, the device works in the caller's memory block after block */
  for (size_t first = 0; first < n; first += rows)
    CHECK_GOTO(zero_copy_block(ctx, plan, first, n - first < rows ? n - first : rows, res, labels, weight, row_scale),
               st, drain);
drain: /* nothing queued may outlive the caller's arrays: drained here, or by the caller */
  if (st != CLXENT_OK || !leave_queued) {
    const cl_int err = clFinish(ctx->queue);
    if (st == CLXENT_OK && err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clFinish", err);
    PIECE(ctx, "clFinish (wait for the kernels)", NULL);
  }
  release_mems(wrapped, 3);
  PIECE(ctx, "release the wrappers", NULL);
  return st;
}

clxent_status clxent_stream(clxent_ctx *ctx, const clxent_plan *plan, clxent_results *res) {
  return stream(ctx, plan, res, 0);
}

/* One wait per call: the kernels stay queued, and clxent_deliver's clFinish waits for them with
 * the reads of the results (on PoCL each wait for its threads costs ~20 µs). */
clxent_status clxent_execute(clxent_ctx *ctx, const clxent_plan *plan) {
  clxent_results res;
  CHECK(stream(ctx, plan, &res, 1));
  return clxent_deliver(ctx, plan, &res);
}
