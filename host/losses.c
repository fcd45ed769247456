/*
 * The public loss entries: validate everything first (a rejected call writes nothing), then stream
 * the batch through the device in row blocks (clxent_run_rows), then reduce the per-row losses on the
 * device in a fixed order (clxent_reduce_values).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "clxent_cl.h"
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

static clxent_status check_shape(clxent_ctx *ctx, size_t n, size_t c, const char *c_name) {
  if (n == 0) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "n (rows) is 0");
  if (c == 0) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "c (%s) is 0", c_name);
  if (n > SIZE_MAX / sizeof(float) / c)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "n × c = %zu × %zu floats overflows size_t", n, c);
  return CLXENT_OK;
}

static clxent_status check_ptr(clxent_ctx *ctx, const void *p, const char *name) {
  return p ? CLXENT_OK : clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s is NULL", name);
}

static clxent_status check_outputs(clxent_ctx *ctx, const void *loss, const void *grad) {
  return (loss || grad) ? CLXENT_OK
                        : clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "loss and grad are both NULL: nothing to compute");
}

/* The memory a call touches. Outputs may overlap nothing listed before them, with one exception:
 * grad may be exactly the first input (in place). Inputs come first in the list. */
typedef struct region {
  const char *name;
  const void *p;
  size_t bytes;
  int output;
  size_t element; /* alignment required; 0 = 4 bytes */
} region;

static int overlaps(const region *a, const region *b) {
  if (!a->p || !b->p) return 0;
  const uintptr_t a0 = (uintptr_t)a->p, b0 = (uintptr_t)b->p;
  return a0 < b0 + b->bytes && b0 < a0 + a->bytes;
}

static clxent_status check_regions(clxent_ctx *ctx, const region *r, int count, int in_place_allowed) {
  /* every array aligned to its element (float, int32_t and float32 storage: 4 bytes; 16-bit
   * storage: 2): the kernels' loads assume it, and C requires it anyway */
  for (int i = 0; i < count; ++i) {
    const size_t align = r[i].element ? r[i].element : sizeof(float);
    if ((uintptr_t)r[i].p % align)
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s (%p) is not aligned to its %zu-byte elements", r[i].name,
                         r[i].p, align);
  }
  for (int i = 0; i < count; ++i) {
    if (!r[i].output) continue;
    for (int j = 0; j < i; ++j) {
      if (!overlaps(&r[i], &r[j])) continue;
      const int exact_in_place = in_place_allowed && j == 0 && !strcmp(r[i].name, "grad");
      if (exact_in_place && r[i].p == r[j].p && r[i].bytes == r[j].bytes) continue;
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s overlaps %s%s", r[i].name, r[j].name,
                         exact_in_place ? " without being equal to it (only exact in-place is allowed)" : "");
    }
  }
  return CLXENT_OK;
}

/* The loss families, for the options that apply to each. */
enum family { FAMILY_SOFTMAX, FAMILY_BINARY };

static clxent_status check_scalar(clxent_ctx *ctx, const char *name, float v, float lo, float hi, int hi_open) {
  if (isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi)) return CLXENT_OK;
  return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "opts->%s = %g is outside [%g, %g%s", name, (double)v, (double)lo,
                     (double)hi, hi_open ? ")" : "]");
}

/* Every weight finite and ≥ 0; *sum = Σ w. */
static clxent_status check_weights(clxent_ctx *ctx, const char *name, const float *w, size_t c, float *sum) {
  double total = 0.0;
  for (size_t j = 0; j < c; ++j) {
    if (!isfinite(w[j]) || w[j] < 0.0f)
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "opts->%s[%zu] = %g must be finite and >= 0", name, j,
                         (double)w[j]);
    total += w[j];
  }
  *sum = (float)total;
  return CLXENT_OK;
}

/* Checks the options' values (after the aliasing checks: a weight array that overlaps an output
 * is reported as such, not by the values it holds). */
static clxent_status check_opts(clxent_ctx *ctx, const clxent_opts *o, enum family family, size_t c,
                                float *weight_sum) {
  if ((unsigned)o->reduction > (unsigned)CLXENT_NONE)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "opts->reduction = %d is not a clxent_reduction (MEAN 0, SUM 1, NONE 2)", (int)o->reduction);
  *weight_sum = (float)c;
  if (family == FAMILY_SOFTMAX) {
    if (o->pos_weight)
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "opts->pos_weight applies to the binary losses only");
    TRY(check_scalar(ctx, "label_smoothing", o->label_smoothing, 0.0f, 1.0f, 1));
    TRY(check_scalar(ctx, "z_loss", o->z_loss, 0.0f, INFINITY, 1));
    TRY(check_scalar(ctx, "softcap", o->softcap, 0.0f, INFINITY, 1));
    if (o->class_weight) TRY(check_weights(ctx, "class_weight", o->class_weight, c, weight_sum));
  } else {
    const char *bad = o->class_weight              ? "class_weight"
                      : o->label_smoothing != 0.0f ? "label_smoothing"
                      : o->z_loss != 0.0f          ? "z_loss"
                      : o->softcap != 0.0f         ? "softcap"
                                                   : NULL;
    if (bad)
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                         "opts->%s applies to the softmax losses only (binary losses take pos_weight)", bad);
    if (o->pos_weight) TRY(check_weights(ctx, "pos_weight", o->pos_weight, c, weight_sum));
  }
  return CLXENT_OK;
}

static clxent_status check_ex(clxent_ctx *ctx, const clxent_ex *out, enum family family, const void *grad) {
  if ((unsigned)out->dtype > (unsigned)CLXENT_BFLOAT16)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "ex->dtype = %d is not a clxent_dtype (FLOAT32 0, FLOAT16 1, BFLOAT16 2)", (int)out->dtype);
  if (out->lse && family != FAMILY_SOFTMAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->lse applies to the softmax losses only");
  if (out->bias_grad && !grad)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->bias_grad needs grad (it is the sum of the gradient's rows)");
  return CLXENT_OK;
}

size_t clxent_dtype_size(clxent_dtype t) { return t == CLXENT_FLOAT32 ? 4 : 2; }

/* One stored value as float, for the checks that read inputs on the host. */
static float load_value(const void *p, size_t k, clxent_dtype t) {
  if (t == CLXENT_FLOAT32) return ((const float *)p)[k];
  const uint16_t h = ((const uint16_t *)p)[k];
  if (t == CLXENT_BFLOAT16) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
  }
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float f = exponent == 0    ? ldexpf((float)mantissa, -24)
            : exponent == 31 ? (mantissa ? NAN : INFINITY)
                             : ldexpf((float)(mantissa | 0x400), exponent - 25);
  return (h & 0x8000) ? -f : f;
}

/* ---------------------------------------------------------------- device work */

static cl_int set_mem_arg(cl_kernel k, cl_uint index, cl_mem mem) {
  return clSetKernelArg(k, index, sizeof(cl_mem), mem ? &mem : NULL); /* NULL → a null pointer */
}

cl_float8 clxent_plain_params(float scale, size_t c) {
  cl_float8 p;
  memset(&p, 0, sizeof p);
  p.s[3] = scale; /* CLXENT_P_SCALE */
  p.s[4] = scale; /* CLXENT_P_ZSCALE */
  p.s[5] = 1.0f;  /* CLXENT_P_ZLOSS_ROW */
  p.s[6] = (float)c;
  return p;
}

/* Work-items per row of the group variant's softmax kernels: enough rows per group that short
 * rows still fill the device (about 16 values per item), the whole group for long rows. */
static size_t row_threads(const clxent_ctx *ctx, size_t c) {
  if (ctx->row_threads) return ctx->row_threads;
  size_t t = 1;
  while (t < ctx->group_size && t * 16 < c) t *= 2;
  return t;
}

clxent_status clxent_launch_rows(clxent_ctx *ctx, const clxent_row_launch *l) {
  const int typed = l->kernel < KERNEL_TYPED_COUNT;
  const cl_kernel k = ctx->kernels[l->kernel][typed ? l->dtype : CLXENT_FLOAT32];
  const int grouped = ctx->variant == CLXENT_VARIANT_GROUP_PER_ROW && l->kernel != KERNEL_SIGMOID_XENT &&
                      l->kernel != KERNEL_BCE; /* the binary losses are elementwise on every device */
  const int softmax = l->kernel == KERNEL_SOFTMAX_HARD || l->kernel == KERNEL_SOFTMAX_SOFT;
  const size_t local = ctx->group_size, threads = grouped && softmax ? row_threads(ctx, l->c) : local;
  const size_t rows_per_group = local / threads;
  cl_float8 params = l->params;
  params.s[7] = (float)threads; /* CLXENT_P_ROW_THREADS */
  const cl_ulong rows = l->rows, c = l->c, first_row = l->first_row;
  cl_int err;
  if ((err = clSetKernelArg(k, 0, sizeof rows, &rows)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 1, sizeof c, &c)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 2, sizeof first_row, &first_row)) != CL_SUCCESS ||
      (err = set_mem_arg(k, 3, l->in)) != CL_SUCCESS || (err = set_mem_arg(k, 4, l->aux)) != CL_SUCCESS ||
      (err = set_mem_arg(k, 5, l->labels)) != CL_SUCCESS || (err = set_mem_arg(k, 6, l->weight)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 7, sizeof l->iarg, &l->iarg)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 8, sizeof params, &params)) != CL_SUCCESS ||
      (err = set_mem_arg(k, 9, l->grad)) != CL_SUCCESS || (err = set_mem_arg(k, 10, l->out)) != CL_SUCCESS ||
      (err = set_mem_arg(k, 11, l->lse)) != CL_SUCCESS || (err = set_mem_arg(k, 12, l->scales)) != CL_SUCCESS)
    return clxent_fail_cl(ctx, "clSetKernelArg", err);
  const size_t global = grouped ? (l->rows + rows_per_group - 1) / rows_per_group * local : l->rows;
  err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, grouped ? &local : NULL, 0, NULL, NULL);
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

#define PIPE_BLOCK_MAX ((cl_ulong)64 << 20) /* bytes per array and pipeline block */
#define CLXENT_SUM_CHUNK 64 /* values per chunk sum of the elementwise losses (kernels/reduce.cl) */

/* Folds a block of `count` per-value results, at batch position `first`, into the chunk sums. */
static clxent_status chunk_block(clxent_ctx *ctx, size_t first, size_t count, cl_mem values, cl_mem partial) {
  const cl_kernel k = ctx->kernels[KERNEL_CHUNK_SUM][0];
  const cl_ulong count_arg = count, first_arg = first;
  cl_int err;
  if ((err = clSetKernelArg(k, 0, sizeof count_arg, &count_arg)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 1, sizeof first_arg, &first_arg)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 2, sizeof values, &values)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 3, sizeof partial, &partial)) != CL_SUCCESS)
    return clxent_fail_cl(ctx, "clSetKernelArg(chunk_sum)", err);
  const size_t chunks = (first + count - 1) / CLXENT_SUM_CHUNK - first / CLXENT_SUM_CHUNK + 1;
  err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &chunks, NULL, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clEnqueueNDRangeKernel(chunk_sum)", err);
}

/* Adds the block's gradient rows to the bias gradient's chunk sums (kernels/bias.cl). */
static clxent_status bias_block(clxent_ctx *ctx, const row_job *job, size_t first, size_t rows, cl_mem grad,
                                cl_mem partial) {
  const cl_kernel k = ctx->kernels[KERNEL_COLUMN_PARTIAL][job->dtype];
  const cl_ulong rows_arg = rows, c_arg = job->c, first_arg = first;
  cl_int err;
  if ((err = clSetKernelArg(k, 0, sizeof rows_arg, &rows_arg)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 1, sizeof c_arg, &c_arg)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 2, sizeof first_arg, &first_arg)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 3, sizeof grad, &grad)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 4, sizeof partial, &partial)) != CL_SUCCESS)
    return clxent_fail_cl(ctx, "clSetKernelArg(column_partial)", err);
  const size_t chunks = (first + rows - 1) / CLXENT_BIAS_CHUNK - first / CLXENT_BIAS_CHUNK + 1;
  const size_t global[2] = {(job->c + ctx->vector_width - 1) / ctx->vector_width, chunks};
  err = clEnqueueNDRangeKernel(ctx->queue, k, 2, NULL, global, NULL, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clEnqueueNDRangeKernel(column_partial)", err);
}

/* The device work of one block of rows [first, first + rows) whose inputs are in `in`/`aux`: the
 * loss kernel, then what folds or streams its results. Enqueued on ctx->queue. */
static clxent_status block_kernels(clxent_ctx *ctx, const row_job *job, size_t first, size_t rows, cl_mem in,
                                   cl_mem aux, cl_mem grad, const call_buffers *cb) {
  clxent_row_launch l = {job->kernel, job->dtype, rows, job->c, first, in, aux, cb->labels, cb->weight,
                         job->iarg, job->params, grad, cb->out, cb->lse, NULL};
  /* elementwise: the block's results land at the start of cb->out; blocks hold whole rows,
   * so a value's column is its index in the block modulo c */
  if (job->elementwise) l.rows = rows * job->c, l.c = 1, l.first_row = 0;
  TRY(clxent_launch_rows(ctx, &l));
  if (job->elementwise && job->loss_out) {
    if (job->reduction != CLXENT_NONE) {
      TRY(chunk_block(ctx, first * job->c, rows * job->c, cb->out, cb->sum_partial));
    } else {
      const cl_int err = clEnqueueReadBuffer(ctx->queue, cb->out, CL_FALSE, 0, rows * job->c * sizeof(float),
                                             job->loss_out + first * job->c, 0, NULL, NULL);
      if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueReadBuffer(per-value losses)", err);
    }
  }
  if (cb->bias_partial) TRY(bias_block(ctx, job, first, rows, grad, cb->bias_partial));
  return CLXENT_OK;
}

/* One block on a device that shares host memory: its buffers wrap the caller's arrays and are
 * released when enqueued (OpenCL keeps them alive until the queued commands finish). */
static clxent_status zero_copy_block(clxent_ctx *ctx, const row_job *job, size_t first, size_t rows,
                                     const call_buffers *cb) {
  const size_t elem = clxent_dtype_size(job->dtype), offset = first * job->c * elem, bytes = rows * job->c * elem;
  const unsigned char *in_host = job->in, *aux_host = job->aux;
  unsigned char *grad_host = job->grad;
  const int in_place = job->grad && job->grad == job->in;
  cl_mem own[3] = {NULL, NULL, NULL}; /* wrapped in, aux, grad */
  clxent_status st =
      wrap_host(ctx, in_place ? CL_MEM_READ_WRITE : CL_MEM_READ_ONLY, in_host + offset, bytes, "the input", &own[0]);
  if (st == CLXENT_OK && aux_host)
    st = wrap_host(ctx, CL_MEM_READ_ONLY, aux_host + offset, bytes, "the targets", &own[1]);
  if (st == CLXENT_OK && grad_host && !in_place)
    /* read-write: the row-per-item kernel caches e^(z-m) in the gradient and reads it back */
    st = wrap_host(ctx, CL_MEM_READ_WRITE, grad_host + offset, bytes, "the gradient", &own[2]);
  const cl_mem grad = in_place ? own[0] : own[2];
  if (st == CLXENT_OK) st = block_kernels(ctx, job, first, rows, own[0], own[1], grad, cb);
  if (st == CLXENT_OK && grad) st = sync_to_host(ctx, grad, bytes);
  release_mems(own, 3);
  return st;
}

/* ---- the pipelined host path, for devices with memory of their own (GPUs)
 *
 * Three in-order queues work at once: uploads, kernels (ctx->queue), downloads. Blocks of rows
 * alternate between two sets of device buffers, so that while the kernels work on block b the
 * next block is uploading and block b-1's gradient is downloading. Transfers go through pinned
 * host memory (CL_MEM_ALLOC_HOST_PTR, mapped once): from the caller's arrays directly when they
 * lie in clxent_host_alloc memory, else through pinned staging that the host thread fills and
 * drains while the device works. Events order the reuse of every buffer:
 *   upload b    waits for block b-2's last use of the same device buffers (`done`);
 *   kernels b   wait for upload b;  download b waits for kernels b;
 *   staging in  is refilled once upload b-2 has read it; staging out is drained after download. */

enum { PIPE_IN, PIPE_AUX, PIPE_GRAD, PIPE_ARRAYS };

typedef struct pipe_slot {
  cl_mem dev[PIPE_ARRAYS];
  cl_event up, done;  /* upload finished; last use of the block's buffers (download or kernels) */
  size_t first, rows; /* the block in flight here; rows 0 = none */
} pipe_slot;

/* Caller memory from clxent_host_alloc that covers [p, p + bytes): transfers use it directly. */
static int host_pinned(const clxent_ctx *ctx, const void *p, size_t bytes) {
  const uintptr_t a = (uintptr_t)p;
  for (size_t i = 0; i < ctx->pinned_count; ++i) {
    const uintptr_t b = (uintptr_t)ctx->pinned[i].ptr;
    if (a >= b && a - b <= ctx->pinned[i].bytes && bytes <= ctx->pinned[i].bytes - (a - b)) return 1;
  }
  return 0;
}

/* Pinned staging buffer `array` of pipeline slot `s`, at least `bytes`, mapped for the host. */
static clxent_status staging(clxent_ctx *ctx, int s, int array, size_t bytes, unsigned char **out) {
  clxent_staging *st = &ctx->staging[s][array];
  if (st->mem && st->bytes >= bytes) {
    *out = st->ptr;
    return CLXENT_OK;
  }
  clxent_release_staging(ctx, st);
  cl_int err;
  st->mem = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &err);
  if (err != CL_SUCCESS) {
    st->mem = NULL;
    return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(CL_MEM_ALLOC_HOST_PTR, %zu bytes of staging) failed: %s (%d)",
                       bytes, clxent_cl_error_name(err), (int)err);
  }
  st->ptr = clEnqueueMapBuffer(ctx->upload_queue, st->mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL,
                               NULL, &err);
  if (err != CL_SUCCESS) {
    clReleaseMemObject(st->mem), st->mem = NULL, st->ptr = NULL;
    return clxent_fail_cl(ctx, "clEnqueueMapBuffer(staging)", err);
  }
  st->bytes = bytes;
  *out = st->ptr;
  return CLXENT_OK;
}

static clxent_status wait_event(clxent_ctx *ctx, cl_event ev, const char *what) {
  if (!ev) return CLXENT_OK;
  const cl_int err = clWaitForEvents(1, &ev);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, what, err);
}

static void replace_event(cl_event *slot, cl_event ev) {
  if (*slot) clReleaseEvent(*slot);
  *slot = ev;
}

/* Copies a finished block's gradient from staging to the caller (a no-op when it went directly). */
static clxent_status drain_block(clxent_ctx *ctx, const row_job *job, pipe_slot *slot, int s) {
  if (!slot->rows || !job->grad) return CLXENT_OK;
  const size_t elem = clxent_dtype_size(job->dtype), bytes = slot->rows * job->c * elem;
  unsigned char *dst = (unsigned char *)job->grad + slot->first * job->c * elem;
  TRY(wait_event(ctx, slot->done, "clWaitForEvents(gradient download)"));
  if (!host_pinned(ctx, dst, bytes)) memcpy(dst, ctx->staging[s][PIPE_GRAD].ptr, bytes);
  slot->rows = 0;
  return CLXENT_OK;
}

/* Enqueues block [first, first + rows) in pipeline slot s (see above). */
static clxent_status pipe_block(clxent_ctx *ctx, const row_job *job, size_t first, size_t rows, pipe_slot *slot,
                                int s, const call_buffers *cb) {
  const size_t elem = clxent_dtype_size(job->dtype), offset = first * job->c * elem, bytes = rows * job->c * elem;
  const void *src[2] = {(const unsigned char *)job->in + offset, job->aux ? (const unsigned char *)job->aux + offset : NULL};
  const int staged[2] = {!host_pinned(ctx, src[PIPE_IN], bytes), src[PIPE_AUX] && !host_pinned(ctx, src[PIPE_AUX], bytes)};
  const int in_place = job->grad && job->grad == job->in;
  cl_int err;
  /* block b-2's uploads have read this slot's staging before the host refills it */
  if (staged[PIPE_IN] || staged[PIPE_AUX]) TRY(wait_event(ctx, slot->up, "clWaitForEvents(upload)"));
  /* inputs up, after block b-2 is done with the device buffers */
  for (int a = PIPE_IN; a <= PIPE_AUX; ++a) {
    if (!src[a]) continue;
    const void *from = src[a];
    if (staged[a]) {
      unsigned char *stage;
      TRY(staging(ctx, s, a, bytes, &stage));
      memcpy(stage, from, bytes);
      from = stage;
    }
    cl_event up = NULL;
    err = clEnqueueWriteBuffer(ctx->upload_queue, slot->dev[a], CL_FALSE, 0, bytes, from, slot->done ? 1 : 0,
                               slot->done ? &slot->done : NULL, &up);
    if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueWriteBuffer(input block)", err);
    replace_event(&slot->up, up);
  }
  /* the kernels, after the upload */
  if ((err = clEnqueueBarrierWithWaitList(ctx->queue, 1, &slot->up, NULL)) != CL_SUCCESS)
    return clxent_fail_cl(ctx, "clEnqueueBarrierWithWaitList(upload)", err);
  const cl_mem grad = !job->grad ? NULL : in_place ? slot->dev[PIPE_IN] : slot->dev[PIPE_GRAD];
  TRY(block_kernels(ctx, job, first, rows, slot->dev[PIPE_IN], job->aux ? slot->dev[PIPE_AUX] : NULL, grad, cb));
  cl_event computed = NULL;
  if ((err = clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &computed)) != CL_SUCCESS)
    return clxent_fail_cl(ctx, "clEnqueueMarkerWithWaitList(kernels)", err);
  replace_event(&slot->done, computed);
  /* the gradient down, after the kernels */
  if (grad) {
    unsigned char *to = (unsigned char *)job->grad + offset;
    if (!host_pinned(ctx, to, bytes)) TRY(staging(ctx, s, PIPE_GRAD, bytes, &to));
    cl_event down = NULL;
    err = clEnqueueReadBuffer(ctx->download_queue, grad, CL_FALSE, 0, bytes, to, 1, &slot->done, &down);
    if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueReadBuffer(gradient block)", err);
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

/* The whole batch through the pipeline; returns with all three queues drained, on every path. */
static clxent_status run_pipeline(clxent_ctx *ctx, const row_job *job, size_t block_rows, const call_buffers *cb) {
  static const enum clxent_slot device_slots[2][PIPE_ARRAYS] = {{SLOT_IN, SLOT_AUX, SLOT_GRAD},
                                                                 {SLOT_IN_1, SLOT_AUX_1, SLOT_GRAD_1}};
  const size_t block_bytes = block_rows * job->c * clxent_dtype_size(job->dtype);
  const int blocks = job->n > block_rows ? 2 : 1;
  pipe_slot slots[2];
  memset(slots, 0, sizeof slots);
  clxent_status st = CLXENT_OK;
  for (int s = 0; s < blocks && st == CLXENT_OK; ++s) {
    const int used[PIPE_ARRAYS] = {1, job->aux != NULL, job->grad && job->grad != job->in};
    for (int a = 0; a < PIPE_ARRAYS && st == CLXENT_OK; ++a)
      if (used[a]) st = clxent_buffer(ctx, device_slots[s][a], block_bytes, &slots[s].dev[a]);
  }
  size_t b = 0;
  for (size_t first = 0; st == CLXENT_OK && first < job->n; first += block_rows, ++b) {
    const int s = (int)(b & 1);
    const size_t rows = job->n - first < block_rows ? job->n - first : block_rows;
    st = pipe_block(ctx, job, first, rows, &slots[s], s, cb);
    if (st == CLXENT_OK) st = drain_block(ctx, job, &slots[s ^ 1], s ^ 1); /* block b-1, while b runs */
  }
  if (st == CLXENT_OK) st = drain_block(ctx, job, &slots[(b - 1) & 1], (int)((b - 1) & 1));
  /* drained on every path: nothing queued may outlive the caller's arrays */
  const cl_int e1 = clFinish(ctx->upload_queue), e2 = clFinish(ctx->queue), e3 = clFinish(ctx->download_queue);
  for (int s = 0; s < 2; ++s) replace_event(&slots[s].up, NULL), replace_event(&slots[s].done, NULL);
  if (st == CLXENT_OK && (e1 || e2 || e3)) st = clxent_fail_cl(ctx, "clFinish", e1 ? e1 : e2 ? e2 : e3);
  return st;
}

/* A device buffer for the call holding a copy of host data (or, zero-copy, the host data itself). */
static clxent_status upload(clxent_ctx *ctx, enum clxent_slot slot, const void *host, size_t bytes, const char *what,
                            cl_mem *wrapped, cl_mem *out) {
  if (ctx->zero_copy) {
    TRY(wrap_host(ctx, CL_MEM_READ_ONLY, host, bytes, what, wrapped));
    *out = *wrapped;
    return CLXENT_OK;
  }
  TRY(clxent_buffer(ctx, slot, bytes, out));
  const cl_int err = clEnqueueWriteBuffer(ctx->queue, *out, CL_FALSE, 0, bytes, host, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clEnqueueWriteBuffer(labels or weights)", err);
}

/* Runs job over the batch in blocks of rows that fit the device's block buffers; the per-row
 * results stay on the device in cb->out ([n] floats, or n·c for elementwise jobs), the gradient
 * lands in job->grad. Returns with the queue drained, on every path (nothing queued may outlive
 * the caller's arrays). */
clxent_status clxent_run_rows(clxent_ctx *ctx, const row_job *job, call_buffers *cb) {
  const size_t row_bytes = job->c * clxent_dtype_size(job->dtype);
  if ((cl_ulong)row_bytes > ctx->block_bytes)
    return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY,
                       "one row of c = %zu values (%zu bytes) exceeds the largest block buffer on %s (%llu bytes)",
                       job->c, row_bytes, ctx->device_name, (unsigned long long)ctx->block_bytes);
  size_t block_rows = (size_t)(ctx->block_bytes / row_bytes);
  if (block_rows > job->n) block_rows = job->n;

  cl_mem wrapped[2] = {NULL, NULL};
  memset(cb, 0, sizeof *cb);
  /* per-row results: the whole batch's for the row kernels; a block's for the elementwise ones,
   * which stream them out (any n·c then works, even past one allocation) */
  TRY(clxent_buffer(ctx, SLOT_ROW_OUT, (job->elementwise ? block_rows * job->c : job->n) * sizeof(float), &cb->out));
  if (job->elementwise && job->loss_out && job->reduction != CLXENT_NONE)
    TRY(clxent_buffer(ctx, SLOT_SUM_PARTIAL,
                      (job->n * job->c + CLXENT_SUM_CHUNK - 1) / CLXENT_SUM_CHUNK * sizeof(float), &cb->sum_partial));
  if (job->lse) TRY(clxent_buffer(ctx, SLOT_LSE, job->n * sizeof(float), &cb->lse));
  if (job->bias_grad) {
    const size_t chunks = (job->n + CLXENT_BIAS_CHUNK - 1) / CLXENT_BIAS_CHUNK;
    TRY(clxent_buffer(ctx, SLOT_BIAS_PARTIAL, chunks * job->c * sizeof(float), &cb->bias_partial));
  }
  if (!ctx->zero_copy) {
    TRY(transfer_queues(ctx));
    /* pipeline blocks: several in a batch so that transfers overlap the kernels, each big
     * enough (>= 4 MiB) to move at full transfer speed, and at most PIPE_BLOCK_MAX */
    const size_t target = (job->n + 7) / 8, floor_rows = ((size_t)4 << 20) / row_bytes + 1;
    const size_t cap = (size_t)(ctx->block_bytes < PIPE_BLOCK_MAX ? ctx->block_bytes : PIPE_BLOCK_MAX) / row_bytes;
    block_rows = target > floor_rows ? target : floor_rows;
    if (block_rows > cap) block_rows = cap ? cap : 1;
    if (block_rows > job->n) block_rows = job->n;
  }
  clxent_status st = CLXENT_OK;
  if (job->labels)
    st = upload(ctx, SLOT_LABELS, job->labels, job->n * sizeof(int32_t), "the labels", &wrapped[0], &cb->labels);
  if (st == CLXENT_OK && job->weight)
    st = upload(ctx, SLOT_WEIGHT, job->weight, job->c * sizeof(float), "the weights", &wrapped[1], &cb->weight);
  if (!ctx->zero_copy) {
    if (st == CLXENT_OK) st = run_pipeline(ctx, job, block_rows, cb);
    else clFinish(ctx->queue);
    release_mems(wrapped, 2);
    return st;
  }
  /* zero-copy: the queue is in order, the device works in the caller's memory block after block */
  for (size_t first = 0; st == CLXENT_OK && first < job->n; first += block_rows)
    st = zero_copy_block(ctx, job, first, job->n - first < block_rows ? job->n - first : block_rows, cb);
  const cl_int err = clFinish(ctx->queue);
  release_mems(wrapped, 2);
  if (st == CLXENT_OK && err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clFinish", err);
  return st;
}

/* Enqueues Σ values[0..n) / divisor in the fixed order of kernels/reduce.cl; the divisor is
 * divisor_dev[3] when given (device-resident calls). The last stage writes final (one float);
 * with final NULL, a context buffer, returned in *result. */
static clxent_status enqueue_reduce(clxent_ctx *ctx, cl_mem values, size_t n, float divisor, cl_mem divisor_dev,
                                    cl_mem final, cl_mem *result) {
  const size_t local = ctx->group_size, span = local * 16 /* REDUCE_ITEMS */;
  const cl_kernel k = ctx->kernels[KERNEL_REDUCE_SUM][0];
  cl_mem src = values;
  enum clxent_slot slot = SLOT_PARTIAL_A;
  size_t count = n;
  cl_int err;
  do {
    const size_t groups = (count + span - 1) / span;
    const int last = groups == 1;
    cl_mem dst = final;
    if (!last || !final) TRY(clxent_buffer(ctx, slot, groups * sizeof(float), &dst));
    const cl_ulong count_arg = count;
    const cl_float d = last ? divisor : 1.0f;
    if ((err = clSetKernelArg(k, 0, sizeof count_arg, &count_arg)) != CL_SUCCESS ||
        (err = clSetKernelArg(k, 1, sizeof src, &src)) != CL_SUCCESS ||
        (err = clSetKernelArg(k, 2, sizeof dst, &dst)) != CL_SUCCESS ||
        (err = clSetKernelArg(k, 3, sizeof d, &d)) != CL_SUCCESS ||
        (err = set_mem_arg(k, 4, last ? divisor_dev : NULL)) != CL_SUCCESS)
      return clxent_fail_cl(ctx, "clSetKernelArg(reduce_sum)", err);
    const size_t global = groups * local;
    err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, &local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueNDRangeKernel(reduce_sum)", err);
    src = dst;
    count = groups;
    slot = slot == SLOT_PARTIAL_A ? SLOT_PARTIAL_B : SLOT_PARTIAL_A;
  } while (count > 1);
  *result = src;
  return CLXENT_OK;
}

/* result = Σ values[0..n) / divisor, to the host. */
clxent_status clxent_reduce_values(clxent_ctx *ctx, cl_mem values, size_t n, float divisor, float *result) {
  cl_mem src = NULL;
  TRY(enqueue_reduce(ctx, values, n, divisor, NULL, NULL, &src));
  const cl_int err = clEnqueueReadBuffer(ctx->queue, src, CL_TRUE, 0, sizeof(float), result, 0, NULL, NULL);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueReadBuffer(batch loss)", err);
  return CLXENT_OK;
}

/* Enqueues out[j] = Σ_k partial[k][j] for the n rows' chunks (kernels/reduce.cl). */
static clxent_status enqueue_column_sum(clxent_ctx *ctx, size_t n, size_t c, cl_mem partial, cl_mem out) {
  const cl_kernel k = ctx->kernels[KERNEL_COLUMN_SUM][0];
  const cl_ulong chunks = (n + CLXENT_BIAS_CHUNK - 1) / CLXENT_BIAS_CHUNK, c_arg = c;
  cl_int err;
  if ((err = clSetKernelArg(k, 0, sizeof chunks, &chunks)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 1, sizeof c_arg, &c_arg)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 2, sizeof partial, &partial)) != CL_SUCCESS ||
      (err = clSetKernelArg(k, 3, sizeof out, &out)) != CL_SUCCESS)
    return clxent_fail_cl(ctx, "clSetKernelArg(column_sum)", err);
  const size_t global = c;
  err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clEnqueueNDRangeKernel(column_sum)", err);
}

/* bias_grad[j] = Σ_k partial[k][j], then to the host. */
clxent_status clxent_deliver_bias(clxent_ctx *ctx, const row_job *job, cl_mem partial) {
  cl_mem out;
  TRY(clxent_buffer(ctx, SLOT_BIAS, job->c * sizeof(float), &out));
  TRY(enqueue_column_sum(ctx, job->n, job->c, partial, out));
  const cl_int err =
      clEnqueueReadBuffer(ctx->queue, out, CL_TRUE, 0, job->c * sizeof(float), job->bias_grad, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, "clEnqueueReadBuffer(bias gradient)", err);
}

/* Runs the job, then hands the results over: the loss (all values for NONE and the distributions,
 * else their reduction), the per-row lse and the bias gradient. */
static clxent_status run_and_deliver(clxent_ctx *ctx, const row_job *job, clxent_reduction reduction, float divisor,
                                     float *loss) {
  if (ctx->member_count) return clxent_run_split(ctx, job, reduction, divisor, loss);
  call_buffers cb;
  TRY(clxent_run_rows(ctx, job, &cb));
  cl_int err;
  if (job->elementwise) { /* NONE: already streamed into loss; MEAN/SUM: from the chunk sums */
    if (loss && reduction != CLXENT_NONE)
      TRY(clxent_reduce_values(ctx, cb.sum_partial, (job->n * job->c + CLXENT_SUM_CHUNK - 1) / CLXENT_SUM_CHUNK, divisor,
                      loss));
  } else if (loss && reduction != CLXENT_NONE) {
    TRY(clxent_reduce_values(ctx, cb.out, job->n, divisor, loss));
  } else if (loss) {
    err = clEnqueueReadBuffer(ctx->queue, cb.out, CL_TRUE, 0, job->n * sizeof(float), loss, 0, NULL, NULL);
    if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueReadBuffer(per-row results)", err);
  }
  if (job->lse) {
    err = clEnqueueReadBuffer(ctx->queue, cb.lse, CL_TRUE, 0, job->n * sizeof(float), job->lse, 0, NULL, NULL);
    if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clEnqueueReadBuffer(lse)", err);
  }
  if (job->bias_grad) TRY(clxent_deliver_bias(ctx, job, cb.bias_partial));
  return CLXENT_OK;
}

/* The kernels' scalars for a reduction: the cross-entropy terms divide by `divisor` (the weighted
 * or plain count of rows), the z-loss by `counted` rows (CLXENT_P_* in kernels/common.cl). A zero
 * divisor (all rows ignored, or all their weights 0) gives the loss x/0 as in PyTorch: NaN (0/0),
 * or +inf when label smoothing leaves a positive x from the other classes' weights; the gradient
 * is 0. */
static cl_float8 loss_params(const clxent_opts *o, double divisor, size_t counted, float weight_sum,
                             float *reduce_divisor) {
  cl_float8 p;
  memset(&p, 0, sizeof p);
  const int mean = o->reduction == CLXENT_MEAN;
  *reduce_divisor = mean ? (float)divisor : 1.0f;
  p.s[0] = o->label_smoothing;
  p.s[1] = o->z_loss;
  p.s[2] = o->softcap;
  p.s[3] = !mean ? 1.0f : divisor > 0 ? 1.0f / (float)divisor : 0.0f;
  p.s[4] = !mean ? 1.0f : counted > 0 ? 1.0f / (float)counted : 0.0f;
  p.s[5] = !mean ? 1.0f : (divisor > 0 && counted > 0) ? (float)(divisor / (double)counted) : 0.0f;
  p.s[6] = weight_sum;
  return p;
}

static size_t loss_count(clxent_reduction r, size_t values) { return r == CLXENT_NONE ? values : 1; }

/* ---------------------------------------------------------------- public entries */

clxent_status clxent_softmax_xent_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits, const int32_t *labels,
                                     const clxent_opts *opts, const clxent_ex *ex, float *loss, void *grad) {
  const clxent_opts o = opts ? *opts : clxent_opts_default();
  const clxent_ex x = ex ? *ex : clxent_ex_default();
  float weight_sum = 0.0f;
  TRY(check_ctx(ctx));
  TRY(check_shape(ctx, n, c, "classes"));
  TRY(check_ptr(ctx, logits, "logits"));
  TRY(check_ptr(ctx, labels, "labels"));
  TRY(check_outputs(ctx, loss, grad));
  TRY(check_ex(ctx, &x, FAMILY_SOFTMAX, grad));
  const size_t mat = n * c * clxent_dtype_size(x.dtype);
  const region regions[] = {
      {"logits", logits, mat, 0, clxent_dtype_size(x.dtype)},         {"labels", labels, n * sizeof(int32_t), 0, 0},
      {"opts->class_weight", o.class_weight, c * sizeof(float), 0, 0},
      {"grad", grad, mat, 1, clxent_dtype_size(x.dtype)},             {"loss", loss, loss_count(o.reduction, n) * sizeof(float), 1, 0},
      {"ex->lse", x.lse, n * sizeof(float), 1, 0}, {"ex->bias_grad", x.bias_grad, c * sizeof(float), 1, 0}};
  TRY(check_regions(ctx, regions, (int)(sizeof regions / sizeof regions[0]), 1));
  TRY(check_opts(ctx, &o, FAMILY_SOFTMAX, c, &weight_sum));
  size_t counted = 0;
  double weighted = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t y = labels[i];
    if (y == o.ignore_index) continue;
    if (y < 0 || (size_t)y >= c)
      return clxent_fail(ctx, CLXENT_ERR_LABEL_RANGE,
                         "labels[%zu] = %d is outside [0, %zu) and is not ignore_index (%d)", i, (int)y, c,
                         (int)o.ignore_index);
    ++counted;
    weighted += o.class_weight ? o.class_weight[y] : 1.0;
  }
  float divisor;
  const row_job job = {KERNEL_SOFTMAX_HARD, x.dtype, n, c, 0, logits, NULL, labels, o.class_weight,
                       o.ignore_index, loss_params(&o, weighted, counted, weight_sum, &divisor),
                       grad, x.lse, x.bias_grad, NULL, o.reduction};
  return run_and_deliver(ctx, &job, o.reduction, divisor, loss);
}

clxent_status clxent_softmax_xent_soft_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                          const void *targets, const clxent_opts *opts, const clxent_ex *ex,
                                          float *loss, void *grad) {
  const clxent_opts o = opts ? *opts : clxent_opts_default();
  const clxent_ex x = ex ? *ex : clxent_ex_default();
  float weight_sum = 0.0f;
  TRY(check_ctx(ctx));
  TRY(check_shape(ctx, n, c, "classes"));
  TRY(check_ptr(ctx, logits, "logits"));
  TRY(check_ptr(ctx, targets, "targets"));
  TRY(check_outputs(ctx, loss, grad));
  TRY(check_ex(ctx, &x, FAMILY_SOFTMAX, grad));
  const size_t mat = n * c * clxent_dtype_size(x.dtype);
  const region regions[] = {
      {"logits", logits, mat, 0, clxent_dtype_size(x.dtype)},         {"targets", targets, mat, 0, clxent_dtype_size(x.dtype)},
      {"opts->class_weight", o.class_weight, c * sizeof(float), 0, 0},
      {"grad", grad, mat, 1, clxent_dtype_size(x.dtype)},             {"loss", loss, loss_count(o.reduction, n) * sizeof(float), 1, 0},
      {"ex->lse", x.lse, n * sizeof(float), 1, 0}, {"ex->bias_grad", x.bias_grad, c * sizeof(float), 1, 0}};
  TRY(check_regions(ctx, regions, (int)(sizeof regions / sizeof regions[0]), 1));
  TRY(check_opts(ctx, &o, FAMILY_SOFTMAX, c, &weight_sum));
  float divisor; /* soft targets: MEAN divides by n, weights or not (PyTorch) */
  const row_job job = {KERNEL_SOFTMAX_SOFT, x.dtype, n, c, 0, logits, targets, NULL, o.class_weight,
                       0, loss_params(&o, (double)n, n, weight_sum, &divisor), grad, x.lse, x.bias_grad,
                       NULL, o.reduction};
  return run_and_deliver(ctx, &job, o.reduction, divisor, loss);
}

/* The two elementwise binary losses share everything but their kernel and input check. */
static clxent_status binary_loss(clxent_ctx *ctx, clxent_kernel_id kernel, const char *in_name, size_t n, size_t c,
                                 const void *in, const void *targets, const clxent_opts *opts, const clxent_ex *ex,
                                 float *loss, void *grad) {
  const clxent_opts o = opts ? *opts : clxent_opts_default();
  const clxent_ex x = ex ? *ex : clxent_ex_default();
  float weight_sum = 0.0f;
  TRY(check_ctx(ctx));
  TRY(check_shape(ctx, n, c, "columns"));
  TRY(check_ptr(ctx, in, in_name));
  TRY(check_ptr(ctx, targets, "targets"));
  TRY(check_outputs(ctx, loss, grad));
  TRY(check_ex(ctx, &x, FAMILY_BINARY, grad));
  if (c > (size_t)INT32_MAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "c (columns) = %zu exceeds INT32_MAX", c);
  const size_t values = n * c, mat = values * clxent_dtype_size(x.dtype);
  const region regions[] = {
      {in_name, in, mat, 0, clxent_dtype_size(x.dtype)},          {"targets", targets, mat, 0, clxent_dtype_size(x.dtype)},
      {"opts->pos_weight", o.pos_weight, c * sizeof(float), 0, 0},
      {"grad", grad, mat, 1, clxent_dtype_size(x.dtype)},         {"loss", loss, loss_count(o.reduction, values) * sizeof(float), 1, 0},
      {"ex->bias_grad", x.bias_grad, c * sizeof(float), 1, 0}};
  TRY(check_regions(ctx, regions, (int)(sizeof regions / sizeof regions[0]), 1));
  TRY(check_opts(ctx, &o, FAMILY_BINARY, c, &weight_sum));
  if (kernel == KERNEL_BCE)
    for (size_t k = 0; k < values; ++k) {
      const float a = load_value(in, k, x.dtype);
      if (a < 0.0f || a > 1.0f) /* NaN passes: it must reach the result */
        return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s[%zu] = %g is not a probability in [0, 1]", in_name, k,
                           (double)a);
    }
  float divisor;
  const row_job job = {kernel,    x.dtype, n, c, 1, in, targets, NULL, o.pos_weight, (cl_int)c,
                       loss_params(&o, (double)values, values, weight_sum, &divisor), grad, NULL, x.bias_grad,
                       loss, o.reduction};
  return run_and_deliver(ctx, &job, o.reduction, divisor, loss);
}

clxent_status clxent_sigmoid_xent_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits, const void *targets,
                                     const clxent_opts *opts, const clxent_ex *ex, float *loss, void *grad) {
  return binary_loss(ctx, KERNEL_SIGMOID_XENT, "logits", n, c, logits, targets, opts, ex, loss, grad);
}

clxent_status clxent_bce_ex(clxent_ctx *ctx, size_t n, size_t c, const void *probs, const void *targets,
                            const clxent_opts *opts, const clxent_ex *ex, float *loss, void *grad) {
  return binary_loss(ctx, KERNEL_BCE, "probs", n, c, probs, targets, opts, ex, loss, grad);
}

/* The float32 entries are the typed ones with default extras. */
clxent_status clxent_softmax_xent(clxent_ctx *ctx, size_t n, size_t c, const float *logits, const int32_t *labels,
                                  const clxent_opts *opts, float *loss, float *grad) {
  return clxent_softmax_xent_ex(ctx, n, c, logits, labels, opts, NULL, loss, grad);
}

clxent_status clxent_softmax_xent_soft(clxent_ctx *ctx, size_t n, size_t c, const float *logits,
                                       const float *targets, const clxent_opts *opts, float *loss, float *grad) {
  return clxent_softmax_xent_soft_ex(ctx, n, c, logits, targets, opts, NULL, loss, grad);
}

clxent_status clxent_sigmoid_xent(clxent_ctx *ctx, size_t n, const float *logits, const float *targets,
                                  const clxent_opts *opts, float *loss, float *grad) {
  return clxent_sigmoid_xent_ex(ctx, n, 1, logits, targets, opts, NULL, loss, grad);
}

clxent_status clxent_bce(clxent_ctx *ctx, size_t n, const float *probs, const float *targets,
                         const clxent_opts *opts, float *loss, float *grad) {
  return clxent_bce_ex(ctx, n, 1, probs, targets, opts, NULL, loss, grad);
}

enum { MODE_ENTROPY = 0, MODE_CROSS_ENTROPY = 1, MODE_KL = 2 }; /* kernels/distributions.cl */

static clxent_status row_information(clxent_ctx *ctx, int mode, size_t n, size_t c, const float *p, const float *q,
                                     float *out) {
  TRY(check_ctx(ctx));
  TRY(check_shape(ctx, n, c, "classes"));
  TRY(check_ptr(ctx, p, "p"));
  if (mode != MODE_ENTROPY) TRY(check_ptr(ctx, q, "q"));
  TRY(check_ptr(ctx, out, "out"));
  const size_t mat = n * c * sizeof(float);
  const region regions[] = {{"p", p, mat, 0, 0}, {"q", mode == MODE_ENTROPY ? NULL : q, mat, 0, 0},
                            {"out", out, n * sizeof(float), 1, 0}};
  TRY(check_regions(ctx, regions, 3, 0));
  const row_job job = {KERNEL_ROW_INFORMATION, CLXENT_FLOAT32, n, c, 0, p, mode == MODE_ENTROPY ? NULL : q,
                       NULL, NULL, mode, clxent_plain_params(1.0f, c), NULL, NULL, NULL, NULL, CLXENT_NONE};
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

/* ---------------------------------------------------------------- device-resident calls (clxent_cl.h) */

/* A cl_mem argument as the byte range it covers of its root buffer, for the size and overlap checks. */
typedef struct mem_region {
  const char *name;
  cl_mem mem, root;
  size_t offset, size, need;
  int output;
} mem_region;

static clxent_status describe_mem(clxent_ctx *ctx, mem_region *r) {
  if (!r->mem) return CLXENT_OK;
  cl_context owner = NULL;
  cl_mem parent = NULL;
  cl_int err = clGetMemObjectInfo(r->mem, CL_MEM_SIZE, sizeof r->size, &r->size, NULL);
  if (err == CL_SUCCESS) err = clGetMemObjectInfo(r->mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL);
  if (err == CL_SUCCESS) err = clGetMemObjectInfo(r->mem, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, NULL);
  if (err == CL_SUCCESS) err = clGetMemObjectInfo(r->mem, CL_MEM_OFFSET, sizeof r->offset, &r->offset, NULL);
  if (err != CL_SUCCESS)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s is not a valid cl_mem (clGetMemObjectInfo: %s)", r->name,
                       clxent_cl_error_name(err));
  if (owner != ctx->context)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s belongs to another OpenCL context than the clxent context's",
                       r->name);
  if (r->size < r->need)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s holds %zu bytes; the call needs %zu", r->name, r->size, r->need);
  r->root = parent ? parent : r->mem;
  return CLXENT_OK;
}

/* Sizes, contexts, and outputs overlapping nothing before them except grad == the first input. */
static clxent_status check_mems(clxent_ctx *ctx, mem_region *r, int count) {
  for (int i = 0; i < count; ++i) TRY(describe_mem(ctx, &r[i]));
  for (int i = 0; i < count; ++i) {
    if (!r[i].mem || !r[i].output) continue;
    for (int j = 0; j < i; ++j) {
      if (!r[j].mem || r[i].root != r[j].root) continue;
      const size_t a0 = r[i].offset, a1 = a0 + r[i].need, b0 = r[j].offset, b1 = b0 + r[j].need;
      if (a0 >= b1 || b0 >= a1) continue;
      const int in_place = j == 0 && !strcmp(r[i].name, "grad");
      if (in_place && r[i].mem == r[j].mem) continue;
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "%s overlaps %s%s", r[i].name, r[j].name,
                         in_place ? " without being the same buffer (only exact in-place is allowed)" : "");
    }
  }
  return CLXENT_OK;
}

/* The call's weights, copied into a buffer at once (the caller may reuse its array on return);
 * released by the caller of this once its commands are enqueued. */
static clxent_status weights_buffer(clxent_ctx *ctx, const float *w, size_t c, cl_mem *out) {
  *out = NULL;
  if (!w) return CLXENT_OK;
  cl_int err;
  *out = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, c * sizeof(float), (void *)(uintptr_t)w,
                        &err);
  if (err == CL_SUCCESS) return CLXENT_OK;
  *out = NULL;
  return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(weights, %zu bytes) failed: %s (%d)",
                     c * sizeof(float), clxent_cl_error_name(err), (int)err);
}

typedef struct mem_call {
  clxent_kernel_id kernel;
  enum family family;
  size_t n, c;
  cl_mem in, aux, labels, loss, grad;
  const clxent_opts *opts;
  const clxent_mem_ex *ex;
  cl_uint num_wait;
  const cl_event *wait;
  cl_event *done;
} mem_call;

static clxent_status run_mem(clxent_ctx *ctx, const mem_call *m) {
  if (ctx->member_count)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "ctx spans %zu devices (%s); the _mem entries need a context on one device "
                       "(clxent_create_from_queue, or clxent_create with one device)",
                       ctx->member_count, ctx->device_name);
  const clxent_opts o = m->opts ? *m->opts : clxent_opts_default();
  const clxent_mem_ex x = m->ex ? *m->ex : clxent_mem_ex_default();
  const int elementwise = m->family == FAMILY_BINARY, hard = m->kernel == KERNEL_SOFTMAX_HARD;
  float weight_sum = 0.0f;
  TRY(check_shape(ctx, m->n, m->c, elementwise ? "columns" : "classes"));
  TRY(check_ptr(ctx, m->in, elementwise && m->kernel == KERNEL_BCE ? "probs" : "logits"));
  TRY(check_ptr(ctx, hard ? m->labels : m->aux, hard ? "labels" : "targets"));
  TRY(check_outputs(ctx, m->loss, m->grad));
  if ((unsigned)x.dtype > (unsigned)CLXENT_BFLOAT16)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->dtype = %d is not a clxent_dtype", (int)x.dtype);
  if (x.lse && m->family != FAMILY_SOFTMAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->lse applies to the softmax losses only");
  if (x.bias_grad && !m->grad) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->bias_grad needs grad");
  if (x.bad_labels && !hard)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->bad_labels applies to class-index labels only");
  if (m->num_wait && !m->wait) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "wait is NULL but num_wait = %u", m->num_wait);
  if (elementwise && m->c > (size_t)INT32_MAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "c (columns) = %zu exceeds INT32_MAX", m->c);
  const size_t values = m->n * m->c, mat = values * clxent_dtype_size(x.dtype);
  const size_t losses = o.reduction == CLXENT_NONE ? (elementwise ? values : m->n) : 1;
  mem_region r[] = {
      {elementwise && m->kernel == KERNEL_BCE ? "probs" : "logits", m->in, NULL, 0, 0, mat, 0},
      {"labels", m->labels, NULL, 0, 0, m->n * sizeof(cl_int), 0},
      {"targets", m->aux, NULL, 0, 0, mat, 0},
      {"grad", m->grad, NULL, 0, 0, mat, 1},
      {"loss", m->loss, NULL, 0, 0, losses * sizeof(float), 1},
      {"ex->lse", x.lse, NULL, 0, 0, m->n * sizeof(float), 1},
      {"ex->bias_grad", x.bias_grad, NULL, 0, 0, m->c * sizeof(float), 1},
      {"ex->bad_labels", x.bad_labels, NULL, 0, 0, sizeof(cl_uint), 1}};
  TRY(check_mems(ctx, r, (int)(sizeof r / sizeof r[0])));
  TRY(check_opts(ctx, &o, m->family, m->c, &weight_sum));

  /* Host-known scales: soft targets and binary losses divide by n or n·c; hard labels get
   * theirs from label_stats on the device. */
  float divisor;
  cl_float8 params = loss_params(&o, (double)(elementwise ? values : m->n), elementwise ? values : m->n, weight_sum,
                                 &divisor);
  cl_mem weight = NULL, scales = NULL, row_out = NULL, partial = NULL, result;
  clxent_status st = weights_buffer(ctx, elementwise ? o.pos_weight : o.class_weight, m->c, &weight);
  cl_int err = CL_SUCCESS;
  if (st == CLXENT_OK && m->num_wait &&
      (err = clEnqueueBarrierWithWaitList(ctx->queue, m->num_wait, m->wait, NULL)) != CL_SUCCESS)
    st = clxent_fail_cl(ctx, "clEnqueueBarrierWithWaitList(wait)", err);
  if (st == CLXENT_OK && hard) {
    st = clxent_buffer(ctx, SLOT_SCALES, 4 * sizeof(float), &scales);
    const cl_kernel k = ctx->kernels[KERNEL_LABEL_STATS][0];
    const cl_ulong n_arg = m->n, c_arg = m->c;
    const cl_int mean = o.reduction == CLXENT_MEAN;
    if (st == CLXENT_OK &&
        ((err = clSetKernelArg(k, 0, sizeof n_arg, &n_arg)) != CL_SUCCESS ||
         (err = clSetKernelArg(k, 1, sizeof c_arg, &c_arg)) != CL_SUCCESS ||
         (err = clSetKernelArg(k, 2, sizeof m->labels, &m->labels)) != CL_SUCCESS ||
         (err = set_mem_arg(k, 3, weight)) != CL_SUCCESS ||
         (err = clSetKernelArg(k, 4, sizeof o.ignore_index, &o.ignore_index)) != CL_SUCCESS ||
         (err = clSetKernelArg(k, 5, sizeof mean, &mean)) != CL_SUCCESS ||
         (err = clSetKernelArg(k, 6, sizeof scales, &scales)) != CL_SUCCESS ||
         (err = set_mem_arg(k, 7, x.bad_labels)) != CL_SUCCESS))
      st = clxent_fail_cl(ctx, "clSetKernelArg(label_stats)", err);
    const size_t local = ctx->group_size;
    if (st == CLXENT_OK && (err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &local, &local, 0, NULL, NULL)))
      st = clxent_fail_cl(ctx, "clEnqueueNDRangeKernel(label_stats)", err);
  }
  if (st == CLXENT_OK && o.reduction != CLXENT_NONE)
    st = clxent_buffer(ctx, SLOT_ROW_OUT, (elementwise ? values : m->n) * sizeof(float), &row_out);
  if (st == CLXENT_OK && x.bias_grad)
    st = clxent_buffer(ctx, SLOT_BIAS_PARTIAL,
                       (m->n + CLXENT_BIAS_CHUNK - 1) / CLXENT_BIAS_CHUNK * m->c * sizeof(float), &partial);
  if (st == CLXENT_OK) {
    const cl_mem out = o.reduction == CLXENT_NONE ? m->loss : row_out;
    clxent_row_launch l = {m->kernel, x.dtype, m->n, m->c, 0, m->in, m->aux, m->labels, weight,
                           hard ? o.ignore_index : elementwise ? (cl_int)m->c : 0, params, m->grad, out, x.lse,
                           scales};
    if (elementwise) l.rows = values, l.c = 1;
    if (!out) { /* loss NULL with NONE: the per-row results still need a home */
      st = clxent_buffer(ctx, SLOT_ROW_OUT, (elementwise ? values : m->n) * sizeof(float), &l.out);
    }
    if (st == CLXENT_OK) st = clxent_launch_rows(ctx, &l);
  }
  if (st == CLXENT_OK && x.bias_grad) {
    const row_job job = {m->kernel, x.dtype, m->n, m->c, elementwise, NULL, NULL, NULL, NULL, 0, params, NULL, NULL,
                         NULL, NULL, o.reduction};
    st = bias_block(ctx, &job, 0, m->n, m->grad, partial);
    if (st == CLXENT_OK) st = enqueue_column_sum(ctx, m->n, m->c, partial, x.bias_grad);
  }
  if (st == CLXENT_OK && m->loss && o.reduction != CLXENT_NONE)
    st = enqueue_reduce(ctx, row_out, elementwise ? values : m->n, divisor, scales, m->loss, &result);
  if (st == CLXENT_OK && m->done && (err = clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, m->done)) != CL_SUCCESS)
    st = clxent_fail_cl(ctx, "clEnqueueMarkerWithWaitList(done)", err);
  if (weight) clReleaseMemObject(weight); /* OpenCL keeps it until the queued commands are done */
  if (st == CLXENT_OK) clFlush(ctx->queue); /* start the work; the host does not wait for it */
  return st;
}

clxent_status clxent_softmax_xent_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits, cl_mem labels,
                                      const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                                      cl_uint num_wait, const cl_event *wait, cl_event *done) {
  TRY(check_ctx(ctx));
  const mem_call m = {KERNEL_SOFTMAX_HARD, FAMILY_SOFTMAX, n, c, logits, NULL, labels, loss, grad, opts, ex,
                      num_wait, wait, done};
  return run_mem(ctx, &m);
}

clxent_status clxent_softmax_xent_soft_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits, cl_mem targets,
                                           const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                                           cl_uint num_wait, const cl_event *wait, cl_event *done) {
  TRY(check_ctx(ctx));
  const mem_call m = {KERNEL_SOFTMAX_SOFT, FAMILY_SOFTMAX, n, c, logits, targets, NULL, loss, grad, opts, ex,
                      num_wait, wait, done};
  return run_mem(ctx, &m);
}

clxent_status clxent_sigmoid_xent_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits, cl_mem targets,
                                      const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                                      cl_uint num_wait, const cl_event *wait, cl_event *done) {
  TRY(check_ctx(ctx));
  const mem_call m = {KERNEL_SIGMOID_XENT, FAMILY_BINARY, n, c, logits, targets, NULL, loss, grad, opts, ex,
                      num_wait, wait, done};
  return run_mem(ctx, &m);
}

clxent_status clxent_bce_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem probs, cl_mem targets,
                             const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                             cl_uint num_wait, const cl_event *wait, cl_event *done) {
  TRY(check_ctx(ctx));
  const mem_call m = {KERNEL_BCE, FAMILY_BINARY, n, c, probs, targets, NULL, loss, grad, opts, ex,
                      num_wait, wait, done};
  return run_mem(ctx, &m);
}
