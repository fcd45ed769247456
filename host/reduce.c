/*
 * The batch reduction and the delivery of a call's results to the host.
 *
 * J = Σ values / divisor in the fixed tree of kernels/reduce.cl: the order of every addition
 * depends only on the number of values, so the loss has the same bits run after run, whatever
 * the block size of the stream or the split over devices. The bias gradient is summed the same
 * way from its 64-row chunk sums (kernels/bias.cl).
 */
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

clxent_status clxent_read_floats(clxent_ctx *ctx, cl_mem from, size_t count, float *to, const char *what) {
  if (to && count) CHECK_CL(ctx, clEnqueueReadBuffer(ctx->queue, from, CL_TRUE, 0, count * sizeof(float), to, 0, NULL, NULL), what);
  return CLXENT_OK;
}

clxent_status clxent_deliver(clxent_ctx *ctx, const clxent_plan *plan, const clxent_results *res) {
  if (plan->loss && plan->reduction != CLXENT_NONE) {
    /* row kernels: one value per row; elementwise: the chunk sums of the per-value losses */
    const size_t count = plan->elementwise ? clxent_chunk_count(plan->n * plan->c, CLXENT_SUM_CHUNK) : plan->n;
    cl_mem total;
    CHECK(clxent_enqueue_reduce(ctx, plan->elementwise ? res->chunks : res->rows, count, plan->divisor, NULL, NULL,
                                &total));
    CHECK(clxent_read_floats(ctx, total, 1, plan->loss, "clEnqueueReadBuffer(batch loss)"));
    PIECE(ctx, "blocking read of the loss", NULL);
  } else if (plan->loss && !plan->elementwise) { /* elementwise NONE: streamed out already */
    CHECK(clxent_read_floats(ctx, res->rows, plan->n, plan->loss, "clEnqueueReadBuffer(per-row results)"));
  }
  if (plan->lse) CHECK(clxent_read_floats(ctx, res->lse, plan->n, plan->lse, "clEnqueueReadBuffer(lse)"));
  if (plan->bias_grad) {
    cl_mem out;
    CHECK(clxent_buffer(ctx, SLOT_BIAS, plan->c * sizeof(float), &out));
    CHECK(clxent_launch_column_sum(ctx, plan->n, plan->c, res->bias_partial, out));
    CHECK(clxent_read_floats(ctx, out, plan->c, plan->bias_grad, "clEnqueueReadBuffer(bias gradient)"));
  }
  return CLXENT_OK;
}
