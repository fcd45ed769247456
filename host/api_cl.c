/*
 * The OpenCL interop entries (clxent_cl.h): a context on the caller's queue, and the losses over
 * device buffers, enqueued without blocking the host. Arguments are checked as in api.c (nothing
 * is enqueued for a rejected call); labels stay on the device, where label_stats counts them.
 */
#include <stddef.h>
#include <stdlib.h>

#include "clxent_cl.h"
#include "internal.h"

clxent_status clxent_create_from_queue(clxent_ctx **out, cl_command_queue queue) {
  if (!out) return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL (pass the address of a clxent_ctx *)");
  *out = NULL;
  if (!queue) return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "queue is NULL");
  clxent_settings s;
  CHECK(clxent_resolve_settings(NULL, &s));
  cl_command_queue_properties props = 0;
  cl_context context = NULL;
  cl_device_id device = NULL;
  cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
  if (err == CL_SUCCESS) err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof context, &context, NULL);
  if (err == CL_SUCCESS) err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof device, &device, NULL);
  if (err != CL_SUCCESS)
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "queue is not a valid command queue (clGetCommandQueueInfo: %s)",
                       clxent_cl_error_name(err));
  if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG,
                       "queue is out of order: clxent enqueues dependent commands and needs an in-order queue");
  clxent_ctx *ctx;
  CHECK(clxent_alloc_context(&ctx));
  clxent_status st;
  /* retained first, so that clxent_destroy releases exactly what it holds on every path */
  if (clRetainCommandQueue(queue) == CL_SUCCESS) ctx->queue = queue;
  if (clRetainContext(context) == CL_SUCCESS) ctx->context = context;
  ctx->device = device;
  if (!ctx->queue || !ctx->context) CHECK_GOTO(clxent_fail(ctx, CLXENT_ERR_OPENCL, "retaining the caller's queue failed"), st, fail);
  if ((err = clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof ctx->platform, &ctx->platform, NULL)) != CL_SUCCESS ||
      (err = clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof ctx->device_type, &ctx->device_type, NULL)) != CL_SUCCESS ||
      (err = clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof ctx->device_name - 1, ctx->device_name, NULL)) != CL_SUCCESS)
    CHECK_GOTO(clxent_fail_cl(ctx, "clGetDeviceInfo(the queue's device)", err), st, fail);
  CHECK_GOTO(clxent_choose_parameters(ctx, &s), st, fail);
  CHECK_GOTO(clxent_build_program(ctx, &s), st, fail);
  *out = ctx;
  return CLXENT_OK;
fail:
  clxent_fail(NULL, st, "%s", ctx->error);
  clxent_destroy(ctx);
  return st;
}

cl_command_queue clxent_queue(const clxent_ctx *ctx) { return ctx && !ctx->group ? ctx->queue : NULL; }

static const size_t mem_ex_fields[] = {
    offsetof(clxent_mem_ex, dtype) + sizeof(clxent_dtype), offsetof(clxent_mem_ex, lse) + sizeof(cl_mem),
    offsetof(clxent_mem_ex, bias_grad) + sizeof(cl_mem), offsetof(clxent_mem_ex, bad_labels) + sizeof(cl_mem)};

/* The call's weights or upstream gradients (host arrays), copied into a buffer at once (the caller
 * may reuse its array on return); released once the commands are enqueued (OpenCL keeps it until
 * they are done). */
static clxent_status host_copy_buffer(clxent_ctx *ctx, const float *w, size_t count, const char *what, cl_mem *out) {
  *out = NULL;
  if (!w) return CLXENT_OK;
  cl_int err;
  *out = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, count * sizeof(float),
                        (void *)(uintptr_t)w, &err);
  if (err == CL_SUCCESS) return CLXENT_OK;
  *out = NULL;
  return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(%s, %zu bytes) failed: %s (%d)", what,
                     count * sizeof(float), clxent_cl_error_name(err), (int)err);
}

typedef struct mem_call {
  clxent_kernel_id kernel;
  size_t n, c;
  cl_mem in, aux, labels, loss, grad;
  const clxent_opts *opts;
  const clxent_mem_ex *ex;
  cl_uint num_wait;
  const cl_event *wait;
  cl_event *done;
} mem_call;

/* Everything checked before anything is enqueued. */
static clxent_status check_mem_call(clxent_ctx *ctx, const mem_call *m, clxent_opts *o, clxent_mem_ex *x,
                                    float *weight_sum) {
  const int elementwise = m->kernel == KERNEL_SIGMOID_XENT || m->kernel == KERNEL_BCE;
  const int hard = m->kernel == KERNEL_SOFTMAX_HARD;
  const char *in_name = m->kernel == KERNEL_BCE ? "probs" : "logits";
  if (ctx->group)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "ctx spans %zu devices (%s); the _mem entries need a context on one device "
                       "(clxent_create_from_queue, or clxent_create with one device)",
                       clxent_group_count(ctx), ctx->device_name);
  CHECK(clxent_check_shape(ctx, m->n, m->c, elementwise ? "columns" : "classes"));
  CHECK(clxent_check_ptr(ctx, m->in, in_name));
  CHECK(clxent_check_ptr(ctx, hard ? m->labels : m->aux, hard ? "labels" : "targets"));
  CHECK(clxent_check_outputs(ctx, m->loss, m->grad));
  CHECK(clxent_read_opts(ctx, m->opts, o));
  *x = clxent_mem_ex_default();
  if (m->ex)
    CHECK(clxent_read_sized(ctx, "ex", m->ex, x, sizeof *x, mem_ex_fields, sizeof mem_ex_fields / sizeof(size_t)));
  CHECK(clxent_check_dtype(ctx, x->dtype));
  if (x->lse && elementwise) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->lse applies to the softmax losses only");
  if (x->bias_grad && !m->grad) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->bias_grad needs grad");
  if (x->bad_labels && !hard)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->bad_labels applies to class-index labels only");
  if (m->num_wait && !m->wait)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "wait is NULL but num_wait = %u", m->num_wait);
  if (elementwise && m->c > (size_t)INT32_MAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "c (columns) = %zu exceeds INT32_MAX", m->c);
  const size_t values = m->n * m->c, mat = values * clxent_dtype_size(x->dtype);
  const size_t losses = o->reduction == CLXENT_NONE ? (elementwise ? values : m->n) : 1;
  const size_t upstream = clxent_upstream_count(o, elementwise ? values : m->n);
  clxent_region r[] = {{.name = in_name, .mem = m->in, .bytes = mat},
                       {.name = "opts->grad_output", .host = o->grad_output, .bytes = upstream * sizeof(float)},
                       {.name = "labels", .mem = m->labels, .bytes = m->n * sizeof(cl_int)},
                       {.name = "targets", .mem = m->aux, .bytes = mat},
                       {.name = "grad", .mem = m->grad, .bytes = mat, .output = 1},
                       {.name = "loss", .mem = m->loss, .bytes = losses * sizeof(float), .output = 1},
                       {.name = "ex->lse", .mem = x->lse, .bytes = m->n * sizeof(float), .output = 1},
                       {.name = "ex->bias_grad", .mem = x->bias_grad, .bytes = m->c * sizeof(float), .output = 1},
                       {.name = "ex->bad_labels", .mem = x->bad_labels, .bytes = sizeof(cl_uint), .output = 1}};
  CHECK(clxent_check_regions(ctx, r, (int)(sizeof r / sizeof r[0])));
  CHECK(clxent_check_opts(ctx, o, elementwise ? FAMILY_BINARY : FAMILY_SOFTMAX, m->c, weight_sum));
  return clxent_check_upstream(ctx, o, upstream);
}

/* The commands of a checked call, on ctx->queue after the caller's events. */
static clxent_status enqueue_mem_call(clxent_ctx *ctx, const mem_call *m, const clxent_opts *o,
                                      const clxent_mem_ex *x, cl_mem weight, float weight_sum, cl_mem row_scale) {
  const int elementwise = m->kernel == KERNEL_SIGMOID_XENT || m->kernel == KERNEL_BCE;
  const int hard = m->kernel == KERNEL_SOFTMAX_HARD;
  const size_t values = m->n * m->c, rows = elementwise ? values : m->n;
  /* host-known scales: soft targets and binary losses divide by n or n·c, any loss by a given
   * mean_denominator; hard labels otherwise get theirs from label_stats on the device, which
   * multiply the host's scale and z_scale: these then carry only the upstream gradient g */
  float divisor;
  clxent_params params = clxent_loss_params(o, (double)rows, rows, weight_sum, &divisor);
  const int device_scales = hard && !(o->reduction == CLXENT_MEAN && o->mean_denominator > 0);
  if (device_scales)
    params.scale = params.z_scale = o->grad_output && o->reduction != CLXENT_NONE ? o->grad_output[0] : 1.0f;
  cl_mem scales = NULL, row_out = NULL, partial = NULL, total;
  if (m->num_wait)
    CHECK_CL(ctx, clEnqueueBarrierWithWaitList(ctx->queue, m->num_wait, m->wait, NULL),
             "clEnqueueBarrierWithWaitList(wait)");
  if (device_scales || x->bad_labels) { /* with a mean_denominator only for the count of bad labels */
    CHECK(clxent_buffer(ctx, SLOT_SCALES, CLXENT_SCALES_COUNT * sizeof(float), &scales));
    CHECK(clxent_launch_label_stats(ctx, m->n, m->c, m->labels, weight, o->ignore_index,
                                    o->reduction == CLXENT_MEAN, scales, x->bad_labels));
  }
  /* the per-row results need a home of their own when they are to be reduced, or not kept */
  if (o->reduction != CLXENT_NONE || !m->loss) CHECK(clxent_buffer(ctx, SLOT_ROW_OUT, rows * sizeof(float), &row_out));
  if (x->bias_grad)
    CHECK(clxent_buffer(ctx, SLOT_BIAS_PARTIAL, clxent_chunk_count(m->n, CLXENT_BIAS_CHUNK) * m->c * sizeof(float),
                        &partial));
  const clxent_rows_launch l = {.kernel = m->kernel, .dtype = x->dtype, .rows = rows, .c = elementwise ? 1 : m->c,
                                .first_row = 0, .cols = (int)m->c, .in = m->in, .aux = m->aux, .labels = m->labels,
                                .weight = weight, .ignore_index = o->ignore_index, .params = params,
                                .grad = m->grad, .out = row_out ? row_out : m->loss, .lse = x->lse,
                                .scales = device_scales ? scales : NULL, .row_scale = row_scale,
                                .bias_partial = partial};
  CHECK(clxent_launch_rows(ctx, &l));
  if (x->bias_grad) CHECK(clxent_launch_column_sum(ctx, m->n, m->c, partial, x->bias_grad));
  if (m->loss && o->reduction != CLXENT_NONE)
    CHECK(clxent_enqueue_reduce(ctx, row_out, rows, divisor, device_scales ? scales : NULL, m->loss, &total));
  if (m->done) CHECK_CL(ctx, clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, m->done), "clEnqueueMarkerWithWaitList(done)");
  clFlush(ctx->queue); /* start the work; the host does not wait for it */
  return CLXENT_OK;
}

static clxent_status run_mem(clxent_ctx *ctx, const mem_call *m) {
  CHECK(clxent_check_ctx(ctx));
  clxent_opts o;
  clxent_mem_ex x;
  float weight_sum = 0.0f;
  CHECK(check_mem_call(ctx, m, &o, &x, &weight_sum));
  const int elementwise = m->kernel == KERNEL_SIGMOID_XENT || m->kernel == KERNEL_BCE;
  float *scaled = NULL; /* hard labels, MEAN: as in api.c, by the largest weight (labels unseen) */
  int shift;
  if (m->kernel == KERNEL_SOFTMAX_HARD && o.class_weight && o.reduction == CLXENT_MEAN && o.mean_denominator == 0.0) {
    float largest = 0.0f;
    for (size_t j = 0; j < m->c; ++j) largest = o.class_weight[j] > largest ? o.class_weight[j] : largest;
    CHECK(clxent_scaled_weights(ctx, o.class_weight, m->c, largest, &scaled, &weight_sum, &shift));
  }
  if (scaled) o.class_weight = scaled;
  cl_mem weight, row_scale = NULL;
  clxent_status st = host_copy_buffer(ctx, elementwise ? o.pos_weight : o.class_weight, m->c, "weights", &weight);
  free(scaled); /* copied into the buffer */
  if (st != CLXENT_OK) return st;
  /* NONE's upstream gradients, one per loss value: copied like the weights */
  const float *up = clxent_row_scale(&o, m->grad);
  if (up) st = host_copy_buffer(ctx, up, elementwise ? m->n * m->c : m->n, "opts->grad_output", &row_scale);
  if (st == CLXENT_OK) st = enqueue_mem_call(ctx, m, &o, &x, weight, weight_sum, row_scale);
  if (weight) clReleaseMemObject(weight); /* OpenCL keeps them until the queued commands are done */
  if (row_scale) clReleaseMemObject(row_scale);
  return st;
}

clxent_status clxent_softmax_xent_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits, cl_mem labels,
                                      const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                                      cl_uint num_wait, const cl_event *wait, cl_event *done) {
  const mem_call m = {KERNEL_SOFTMAX_HARD, n, c, logits, NULL, labels, loss, grad, opts, ex, num_wait, wait, done};
  return run_mem(ctx, &m);
}

clxent_status clxent_softmax_xent_soft_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits, cl_mem targets,
                                           const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                                           cl_uint num_wait, const cl_event *wait, cl_event *done) {
  const mem_call m = {KERNEL_SOFTMAX_SOFT, n, c, logits, targets, NULL, loss, grad, opts, ex, num_wait, wait, done};
  return run_mem(ctx, &m);
}

clxent_status clxent_sigmoid_xent_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits, cl_mem targets,
                                      const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                                      cl_uint num_wait, const cl_event *wait, cl_event *done) {
  const mem_call m = {KERNEL_SIGMOID_XENT, n, c, logits, targets, NULL, loss, grad, opts, ex, num_wait, wait, done};
  return run_mem(ctx, &m);
}

clxent_status clxent_bce_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem probs, cl_mem targets,
                             const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                             cl_uint num_wait, const cl_event *wait, cl_event *done) {
  const mem_call m = {KERNEL_BCE, n, c, probs, targets, NULL, loss, grad, opts, ex, num_wait, wait, done};
  return run_mem(ctx, &m);
}
