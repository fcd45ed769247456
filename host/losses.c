/*
 * The public loss entries: validate everything first (a rejected call writes nothing), then stream
 * the batch through the device in row blocks (run_rows), then reduce the per-row losses on the
 * device in a fixed order (reduce_rows).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define TRY(expr)                          \
  do {                                     \
    const clxent_status try_ = (expr);     \
    if (try_ != CLXENT_OK) return try_;    \
  } while (0)

/* ---------------------------------------------------------------- validation */

static clxent_status check_ctx(const clxent_ctx *ctx) {
  return ctx ? CLXENT_OK : clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL");
}

static clxent_status check_shape(clxent_ctx *ctx, size_t n, size_t c) {
  if (n == 0) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "n (rows) is 0");
  if (c == 0) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "c (classes) is 0");
  if (n > SIZE_MAX / sizeof(float) / c)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "n × c = %zu × %zu floats overflows size_t", n, c);
  return CLXENT_OK;
}

static clxent_status check_ptr(clxent_ctx *ctx, const void *p, const char *name) {
  return p ? CLXENT_OK : clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s is NULL", name);
}

static int overlaps(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
  if (!a || !b) return 0;
  const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

/* An output may not overlap an input, except grad == the first input exactly (in place). */
static clxent_status check_alias(clxent_ctx *ctx, const char *out_name, const void *out, size_t out_bytes,
                                 const char *in_name, const void *in, size_t in_bytes, int same_allowed) {
  if (!overlaps(out, out_bytes, in, in_bytes)) return CLXENT_OK;
  if (same_allowed && out == in && out_bytes == in_bytes) return CLXENT_OK;
  return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s overlaps %s%s", out_name, in_name,
                     same_allowed ? " without being equal to it (only exact in-place is allowed)" : "");
}

static clxent_status resolve_opts(clxent_ctx *ctx, const clxent_opts *opts, clxent_opts *out) {
  *out = opts ? *opts : clxent_opts_default();
  if ((unsigned)out->reduction > (unsigned)CLXENT_NONE)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "opts->reduction = %d is not a clxent_reduction (MEAN 0, SUM 1, NONE 2)",
                       (int)out->reduction);
  return CLXENT_OK;
}

static clxent_status check_outputs(clxent_ctx *ctx, const float *loss, const float *grad) {
  return (loss || grad) ? CLXENT_OK
                        : clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "loss and grad are both NULL: nothing to compute");
}

/* ---------------------------------------------------------------- device work */

typedef struct row_job {
  clxent_kernel_id kernel;
  size_t n, c;           /* batch rows and row length (1 for the elementwise losses) */
  const float *in, *aux; /* [n][c] inputs; aux NULL when the kernel takes none */
  const int32_t *labels; /* [n] or NULL */
  cl_int iarg;           /* ignore_index or mode */
  float scale;           /* gradient scale */
  float *grad;           /* [n][c], NULL, or == in */
} row_job;

static cl_int set_mem_arg(cl_kernel k, cl_uint index, cl_mem mem) {
  return clSetKernelArg(k, index, sizeof(cl_mem), mem ? &mem : NULL); /* NULL → a null pointer */
}

static cl_int set_row_args(cl_kernel k, cl_ulong rows, cl_ulong c, cl_ulong first_row, cl_mem in, cl_mem aux,
                           cl_mem labels, cl_int iarg, cl_float scale, cl_mem grad, cl_mem out) {
  cl_int e;
  if ((e = clSetKernelArg(k, 0, sizeof rows, &rows)) != CL_SUCCESS) return e;
  if ((e = clSetKernelArg(k, 1, sizeof c, &c)) != CL_SUCCESS) return e;
  if ((e = clSetKernelArg(k, 2, sizeof first_row, &first_row)) != CL_SUCCESS) return e;
  if ((e = set_mem_arg(k, 3, in)) != CL_SUCCESS) return e;
  if ((e = set_mem_arg(k, 4, aux)) != CL_SUCCESS) return e;
  if ((e = set_mem_arg(k, 5, labels)) != CL_SUCCESS) return e;
  if ((e = clSetKernelArg(k, 6, sizeof iarg, &iarg)) != CL_SUCCESS) return e;
  if ((e = clSetKernelArg(k, 7, sizeof scale, &scale)) != CL_SUCCESS) return e;
  if ((e = set_mem_arg(k, 8, grad)) != CL_SUCCESS) return e;
  return set_mem_arg(k, 9, out);
}

clxent_status clxent_launch_rows(clxent_ctx *ctx, clxent_kernel_id kernel, size_t rows, size_t c, size_t first_row,
                                 cl_mem in, cl_mem aux, cl_mem labels, cl_int iarg, float scale, cl_mem grad,
                                 cl_mem out) {
  const cl_kernel k = ctx->kernels[kernel];
  const int group_per_row = ctx->variant == CLXENT_VARIANT_GROUP_PER_ROW && kernel != KERNEL_SIGMOID_XENT &&
                            kernel != KERNEL_BCE; /* the binary losses are elementwise on every device */
  cl_int err = set_row_args(k, rows, c, first_row, in, aux, labels, iarg, scale, grad, out);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clSetKernelArg", err);
  const size_t local = ctx->group_size, global = group_per_row ? rows * local : rows;
  err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, group_per_row ? &local : NULL, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clEnqueueNDRangeKernel", err);
}

/* Wraps caller memory as a buffer the device uses in place (CL_MEM_USE_HOST_PTR): on devices that
 * share host memory (PoCL) nothing is copied. */
static clxent_status wrap_host(clxent_ctx *ctx, cl_mem_flags flags, const void *ptr, size_t bytes, const char *what,
                               cl_mem *out) {
  cl_int err;
  *out = clCreateBuffer(ctx->context, flags | CL_MEM_USE_HOST_PTR, bytes, (void *)(uintptr_t)ptr, &err);
  if (err == CL_SUCCESS) return CLXENT_OK;
  *out = NULL;
  return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(CL_MEM_USE_HOST_PTR, %zu bytes of %s) failed: %s (%d)",
                     bytes, what, clxent_cl_error_name(err), (int)err);
}

static void release_mems(cl_mem *mems, int count) {
  for (int i = 0; i < count; ++i)
    if (mems[i]) clReleaseMemObject(mems[i]), mems[i] = NULL;
}

/* Makes the device's writes to a wrapped buffer visible in host memory (a no-op copy on devices
 * that used the pointer in place). */
static clxent_status sync_to_host(clxent_ctx *ctx, cl_mem mem, size_t bytes) {
  cl_int err;
  void *p = clEnqueueMapBuffer(ctx->queue, mem, CL_FALSE, CL_MAP_READ, 0, bytes, 0, NULL, NULL, &err);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueMapBuffer(gradient)", err);
  err = clEnqueueUnmapMemObject(ctx->queue, mem, p, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clEnqueueUnmapMemObject(gradient)", err);
}

/* One block of rows [first, first + rows): inputs to the device, the kernel, the gradient back.
 * With zero-copy the block's buffers wrap the caller's arrays and are released when done
 * (OpenCL keeps them alive until the queued commands finish). */
static clxent_status run_block(clxent_ctx *ctx, const row_job *job, size_t first, size_t rows, cl_mem labels,
                               cl_mem out) {
  const size_t offset = first * job->c, bytes = rows * job->c * sizeof(float);
  const int in_place = job->grad && job->grad == job->in;
  cl_mem own[3] = {NULL, NULL, NULL}; /* wrapped in, aux, grad */
  cl_mem in, aux = NULL, grad = NULL;
  clxent_status st = CLXENT_OK;
  cl_int err;
  if (ctx->zero_copy) {
    st = wrap_host(ctx, in_place ? CL_MEM_READ_WRITE : CL_MEM_READ_ONLY, job->in + offset, bytes, "the input", &own[0]);
    if (st == CLXENT_OK && job->aux)
      st = wrap_host(ctx, CL_MEM_READ_ONLY, job->aux + offset, bytes, "the targets", &own[1]);
    if (st == CLXENT_OK && job->grad && !in_place)
      /* read-write: the row-per-item kernel caches e^(z-m) in the gradient and reads it back */
      st = wrap_host(ctx, CL_MEM_READ_WRITE, job->grad + offset, bytes, "the gradient", &own[2]);
    in = own[0], aux = own[1], grad = in_place ? own[0] : own[2];
  } else {
    in = ctx->buffers[SLOT_IN];
    err = clEnqueueWriteBuffer(ctx->queue, in, CL_FALSE, 0, bytes, job->in + offset, 0, NULL, NULL);
    if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueWriteBuffer(input block)", err);
    if (job->aux) {
      aux = ctx->buffers[SLOT_AUX];
      err = clEnqueueWriteBuffer(ctx->queue, aux, CL_FALSE, 0, bytes, job->aux + offset, 0, NULL, NULL);
      if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueWriteBuffer(target block)", err);
    }
    if (job->grad) grad = in_place ? in : ctx->buffers[SLOT_GRAD];
  }
  if (st == CLXENT_OK)
    st = clxent_launch_rows(ctx, job->kernel, rows, job->c, first, in, aux, labels, job->iarg, job->scale, grad, out);
  if (st == CLXENT_OK && grad) {
    if (ctx->zero_copy) st = sync_to_host(ctx, grad, bytes);
    else if ((err = clEnqueueReadBuffer(ctx->queue, grad, CL_FALSE, 0, bytes, job->grad + offset, 0, NULL, NULL)))
      st = clxent_fail_cl(ctx, "clEnqueueReadBuffer(gradient block)", err);
  }
  release_mems(own, 3);
  return st;
}

/* Runs job over the batch in blocks of rows that fit the device's block buffers; the per-row
 * results stay on the device in *row_out ([n] floats); the gradient lands in job->grad. Returns
 * with the queue drained, on every path (nothing queued may outlive the caller's arrays). */
static clxent_status run_rows(clxent_ctx *ctx, const row_job *job, cl_mem *row_out) {
  const size_t row_bytes = job->c * sizeof(float);
  if ((cl_ulong)row_bytes > ctx->block_bytes)
    return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY,
                       "one row of c = %zu floats (%zu bytes) exceeds the largest block buffer on %s (%llu bytes)",
                       job->c, row_bytes, ctx->device_name, (unsigned long long)ctx->block_bytes);
  size_t block_rows = (size_t)(ctx->block_bytes / row_bytes);
  if (block_rows > job->n) block_rows = job->n;

  cl_mem out, scratch, labels = NULL, wrapped_labels = NULL;
  TRY(clxent_buffer(ctx, SLOT_ROW_OUT, job->n * sizeof(float), &out));
  if (!ctx->zero_copy) { /* device-side blocks, reused across calls */
    TRY(clxent_buffer(ctx, SLOT_IN, block_rows * row_bytes, &scratch));
    if (job->aux) TRY(clxent_buffer(ctx, SLOT_AUX, block_rows * row_bytes, &scratch));
    if (job->grad && job->grad != job->in) TRY(clxent_buffer(ctx, SLOT_GRAD, block_rows * row_bytes, &scratch));
  }
  clxent_status st = CLXENT_OK;
  if (job->labels) {
    const size_t label_bytes = job->n * sizeof(int32_t);
    if (ctx->zero_copy) {
      st = wrap_host(ctx, CL_MEM_READ_ONLY, job->labels, label_bytes, "the labels", &wrapped_labels);
      labels = wrapped_labels;
    } else if ((st = clxent_buffer(ctx, SLOT_LABELS, label_bytes, &labels)) == CLXENT_OK) {
      const cl_int err = clEnqueueWriteBuffer(ctx->queue, labels, CL_FALSE, 0, label_bytes, job->labels, 0, NULL, NULL);
      if (err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clEnqueueWriteBuffer(labels)", err);
    }
  }
  /* The queue is in order: the next block's upload waits for this block's kernel and download. */
  for (size_t first = 0; st == CLXENT_OK && first < job->n; first += block_rows)
    st = run_block(ctx, job, first, job->n - first < block_rows ? job->n - first : block_rows, labels, out);
  const cl_int err = clFinish(ctx->queue);
  if (wrapped_labels) clReleaseMemObject(wrapped_labels);
  if (st == CLXENT_OK && err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clFinish", err);
  *row_out = out;
  return st;
}

/* result = Σ values[0..n) / divisor, in the fixed order of kernels/reduce.cl. */
static clxent_status reduce_rows(clxent_ctx *ctx, cl_mem values, size_t n, float divisor, float *result) {
  const size_t local = ctx->group_size, span = local * 16 /* REDUCE_ITEMS */;
  const cl_kernel k = ctx->kernels[KERNEL_REDUCE_SUM];
  cl_mem src = values;
  enum clxent_slot slot = SLOT_PARTIAL_A;
  size_t count = n;
  cl_int err;
  do {
    const size_t groups = (count + span - 1) / span;
    cl_mem dst;
    TRY(clxent_buffer(ctx, slot, groups * sizeof(float), &dst));
    const cl_ulong count_arg = count;
    const cl_float d = groups == 1 ? divisor : 1.0f;
    if ((err = clSetKernelArg(k, 0, sizeof count_arg, &count_arg)) != CL_SUCCESS ||
        (err = clSetKernelArg(k, 1, sizeof src, &src)) != CL_SUCCESS ||
        (err = clSetKernelArg(k, 2, sizeof dst, &dst)) != CL_SUCCESS ||
        (err = clSetKernelArg(k, 3, sizeof d, &d)) != CL_SUCCESS)
      return clxent_fail_cl(ctx, "clSetKernelArg(reduce_sum)", err);
    const size_t global = groups * local;
    err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, &local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueNDRangeKernel(reduce_sum)", err);
    src = dst;
    count = groups;
    slot = slot == SLOT_PARTIAL_A ? SLOT_PARTIAL_B : SLOT_PARTIAL_A;
  } while (count > 1);
  err = clEnqueueReadBuffer(ctx->queue, src, CL_TRUE, 0, sizeof(float), result, 0, NULL, NULL);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueReadBuffer(batch loss)", err);
  return CLXENT_OK;
}

/* Per-row results to the caller: all n of them (NONE, distributions) or their reduction. */
static clxent_status deliver(clxent_ctx *ctx, cl_mem row_out, size_t n, clxent_reduction reduction, float divisor,
                             float *loss) {
  if (!loss) return CLXENT_OK;
  if (reduction != CLXENT_NONE) return reduce_rows(ctx, row_out, n, divisor, loss);
  const cl_int err = clEnqueueReadBuffer(ctx->queue, row_out, CL_TRUE, 0, n * sizeof(float), loss, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clEnqueueReadBuffer(per-row results)", err);
}

static clxent_status run_and_deliver(clxent_ctx *ctx, const row_job *job, clxent_reduction reduction,
                                     float divisor, float *loss) {
  cl_mem row_out;
  TRY(run_rows(ctx, job, &row_out));
  return deliver(ctx, row_out, job->n, reduction, divisor, loss);
}

/* Gradient scale and MEAN divisor for `counted` rows. */
static void reduction_scale(clxent_reduction r, size_t counted, float *scale, float *divisor) {
  *divisor = r == CLXENT_MEAN ? (float)counted : 1.0f; /* counted = 0: 0/0 = NaN, as in PyTorch */
  *scale = (r == CLXENT_MEAN && counted) ? 1.0f / (float)counted : 1.0f;
}

/* ---------------------------------------------------------------- public entries */

clxent_status clxent_softmax_xent(clxent_ctx *ctx, size_t n, size_t c, const float *logits,
                                  const int32_t *labels, const clxent_opts *opts, float *loss, float *grad) {
  clxent_opts o;
  TRY(check_ctx(ctx));
  TRY(check_shape(ctx, n, c));
  TRY(check_ptr(ctx, logits, "logits"));
  TRY(check_ptr(ctx, labels, "labels"));
  TRY(check_outputs(ctx, loss, grad));
  TRY(resolve_opts(ctx, opts, &o));
  const size_t mat = n * c * sizeof(float), loss_bytes = (o.reduction == CLXENT_NONE ? n : 1) * sizeof(float);
  TRY(check_alias(ctx, "grad", grad, mat, "logits", logits, mat, 1));
  TRY(check_alias(ctx, "grad", grad, mat, "labels", labels, n * sizeof(int32_t), 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, "logits", logits, mat, 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, "labels", labels, n * sizeof(int32_t), 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, "grad", grad, mat, 0));
  size_t counted = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t y = labels[i];
    if (y == o.ignore_index) continue;
    if (y < 0 || (size_t)y >= c)
      return clxent_fail(ctx, CLXENT_ERR_LABEL_RANGE,
                         "labels[%zu] = %d is outside [0, %zu) and is not ignore_index (%d)", i, (int)y, c,
                         (int)o.ignore_index);
    ++counted;
  }
  row_job job = {KERNEL_SOFTMAX_HARD, n, c, logits, NULL, labels,
                 o.ignore_index, 1.0f, grad};
  float divisor;
  reduction_scale(o.reduction, counted, &job.scale, &divisor);
  return run_and_deliver(ctx, &job, o.reduction, divisor, loss);
}

clxent_status clxent_softmax_xent_soft(clxent_ctx *ctx, size_t n, size_t c, const float *logits,
                                       const float *targets, const clxent_opts *opts, float *loss, float *grad) {
  clxent_opts o;
  TRY(check_ctx(ctx));
  TRY(check_shape(ctx, n, c));
  TRY(check_ptr(ctx, logits, "logits"));
  TRY(check_ptr(ctx, targets, "targets"));
  TRY(check_outputs(ctx, loss, grad));
  TRY(resolve_opts(ctx, opts, &o));
  const size_t mat = n * c * sizeof(float), loss_bytes = (o.reduction == CLXENT_NONE ? n : 1) * sizeof(float);
  TRY(check_alias(ctx, "grad", grad, mat, "logits", logits, mat, 1));
  TRY(check_alias(ctx, "grad", grad, mat, "targets", targets, mat, 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, "logits", logits, mat, 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, "targets", targets, mat, 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, "grad", grad, mat, 0));
  row_job job = {KERNEL_SOFTMAX_SOFT, n, c, logits, targets, NULL,
                 0, 1.0f, grad};
  float divisor;
  reduction_scale(o.reduction, n, &job.scale, &divisor);
  return run_and_deliver(ctx, &job, o.reduction, divisor, loss);
}

/* The two elementwise binary losses share everything but their kernel and input check. */
static clxent_status binary_loss(clxent_ctx *ctx, clxent_kernel_id kernel, const char *in_name, size_t n,
                                 const float *in, const float *targets, const clxent_opts *opts, float *loss,
                                 float *grad) {
  clxent_opts o;
  TRY(check_ctx(ctx));
  TRY(check_shape(ctx, n, 1));
  TRY(check_ptr(ctx, in, in_name));
  TRY(check_ptr(ctx, targets, "targets"));
  TRY(check_outputs(ctx, loss, grad));
  TRY(resolve_opts(ctx, opts, &o));
  const size_t vec = n * sizeof(float), loss_bytes = o.reduction == CLXENT_NONE ? vec : sizeof(float);
  TRY(check_alias(ctx, "grad", grad, vec, in_name, in, vec, 1));
  TRY(check_alias(ctx, "grad", grad, vec, "targets", targets, vec, 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, in_name, in, vec, 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, "targets", targets, vec, 0));
  TRY(check_alias(ctx, "loss", loss, loss_bytes, "grad", grad, vec, 0));
  if (kernel == KERNEL_BCE)
    for (size_t i = 0; i < n; ++i)
      if (in[i] < 0.0f || in[i] > 1.0f) /* NaN passes: it must reach the result */
        return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s[%zu] = %g is not a probability in [0, 1]", in_name, i,
                           (double)in[i]);
  row_job job = {kernel, n, 1, in, targets, NULL, 0, 1.0f, grad};
  float divisor;
  reduction_scale(o.reduction, n, &job.scale, &divisor);
  return run_and_deliver(ctx, &job, o.reduction, divisor, loss);
}

clxent_status clxent_sigmoid_xent(clxent_ctx *ctx, size_t n, const float *logits, const float *targets,
                                  const clxent_opts *opts, float *loss, float *grad) {
  return binary_loss(ctx, KERNEL_SIGMOID_XENT, "logits", n, logits, targets, opts, loss, grad);
}

clxent_status clxent_bce(clxent_ctx *ctx, size_t n, const float *probs, const float *targets,
                         const clxent_opts *opts, float *loss, float *grad) {
  return binary_loss(ctx, KERNEL_BCE, "probs", n, probs, targets, opts, loss, grad);
}

enum { MODE_ENTROPY = 0, MODE_CROSS_ENTROPY = 1, MODE_KL = 2 }; /* kernels/distributions.cl */

static clxent_status row_information(clxent_ctx *ctx, int mode, size_t n, size_t c, const float *p, const float *q,
                                     float *out) {
  TRY(check_ctx(ctx));
  TRY(check_shape(ctx, n, c));
  TRY(check_ptr(ctx, p, "p"));
  if (mode != MODE_ENTROPY) TRY(check_ptr(ctx, q, "q"));
  TRY(check_ptr(ctx, out, "out"));
  const size_t mat = n * c * sizeof(float);
  TRY(check_alias(ctx, "out", out, n * sizeof(float), "p", p, mat, 0));
  TRY(check_alias(ctx, "out", out, n * sizeof(float), "q", q, mat, 0));
  const row_job job = {KERNEL_ROW_INFORMATION, n, c, p,
                       mode == MODE_ENTROPY ? NULL : q, NULL, mode, 1.0f, NULL};
  return run_and_deliver(ctx, &job, CLXENT_NONE, 1.0f, out);
}

clxent_status clxent_entropy(clxent_ctx *ctx, size_t n, size_t c, const float *p, float *out) {
  return row_information(ctx, MODE_ENTROPY, n, c, p, NULL, out);
}

clxent_status clxent_cross_entropy(clxent_ctx *ctx, size_t n, size_t c, const float *p, const float *q, float *out) {
  return row_information(ctx, MODE_CROSS_ENTROPY, n, c, p, q, out);
}

clxent_status clxent_kl_div(clxent_ctx *ctx, size_t n, size_t c, const float *p, const float *q, float *out) {
  return row_information(ctx, MODE_KL, n, c, p, q, out);
}
