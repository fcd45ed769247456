/*
 * Softmax cross-entropy over a column slice (experimental, clxent.h @ref slice): the two entries
 * behind clxent_mpi_softmax_xent_vocab. Validation as the other entries (validate.c: a rejected
 * call writes nothing), then the batch in row blocks that fit the context's block size, each
 * block's arrays wrapped in place on a device that shares host memory (CL_MEM_USE_HOST_PTR, as
 * stream.c) or copied through the context's reusable buffers otherwise, one kernel per block
 * (kernels/softmax_slice.cl, through launch.c).
 */
#include <math.h>

#include "internal.h"

/* One array of a block: wrapped in place (zero-copy), or in the context's buffer `slot`, written
 * from the host first when it is an input. */
static clxent_status block_array(clxent_ctx *ctx, enum clxent_slot slot, const void *host, size_t bytes, int input,
                                 int writable, const char *what, cl_mem *out, int *owned) {
  *out = NULL, *owned = 0;
  if (!host) return CLXENT_OK;
  if (ctx->zero_copy) {
    const cl_mem_flags flags = (writable ? (input ? CL_MEM_READ_WRITE : CL_MEM_WRITE_ONLY) : CL_MEM_READ_ONLY);
    CHECK(clxent_wrap_host(ctx, flags, host, bytes, what, out));
    *owned = 1;
    return CLXENT_OK;
  }
  CHECK(clxent_buffer(ctx, slot, bytes, out));
  if (input)
    CHECK_CL(ctx, clEnqueueWriteBuffer(ctx->queue, *out, CL_FALSE, 0, bytes, host, 0, NULL, NULL),
             "clEnqueueWriteBuffer(slice block)");
  return CLXENT_OK;
}

typedef struct slice_call {
  size_t n, c, off, c_total;
  clxent_dtype dtype;
  const unsigned char *logits;
  const int32_t *labels;
  clxent_opts o;
  /* stats */
  float *stats;
  /* grad */
  const float *lse, *wy;
  clxent_params p;
  unsigned char *grad;
} slice_call;

enum { A_LOGITS, A_LABELS, A_OUT, A_LSE, A_WY, A_SCALE, A_COUNT };

static clxent_status run_blocks(clxent_ctx *ctx, const slice_call *s) {
  const size_t c = s->c, row_bytes = c * clxent_dtype_size(s->dtype);
  size_t block = ctx->block_bytes / row_bytes;
  if (block == 0) block = 1;
  if (block > s->n) block = s->n;
  const float *row_scale = s->grad && s->o.grad_output && s->o.reduction == CLXENT_NONE ? s->o.grad_output : NULL;
  const int in_place = s->grad && (const unsigned char *)s->grad == s->logits;
  clxent_status st = CLXENT_OK;
  cl_mem weight = NULL;
  int weight_owned = 0;
  CHECK_GOTO(block_array(ctx, SLOT_WEIGHT, s->o.class_weight, c * sizeof(float), 1, 0, "opts->class_weight", &weight,
                         &weight_owned),
             st, done);
  for (size_t first = 0; first < s->n; first += block) {
    const size_t rows = s->n - first < block ? s->n - first : block;
    cl_mem m[A_COUNT] = {NULL};
    int owned[A_COUNT] = {0};
    void *out_host = s->stats ? (void *)(s->stats + first * CLXENT_SLICE_VALUES) : (void *)(s->grad + first * row_bytes);
    const size_t out_bytes = s->stats ? rows * CLXENT_SLICE_VALUES * sizeof(float) : rows * row_bytes;
    CHECK_GOTO(block_array(ctx, SLOT_IN, s->logits + first * row_bytes, rows * row_bytes, 1, in_place, "the logits", &m[A_LOGITS],
                           &owned[A_LOGITS]),
               st, block_done);
    CHECK_GOTO(block_array(ctx, SLOT_LABELS, s->labels + first, rows * sizeof(int32_t), 1, 0, "the labels", &m[A_LABELS],
                           &owned[A_LABELS]),
               st, block_done);
    if (in_place) {
      m[A_OUT] = m[A_LOGITS];
    } else {
      CHECK_GOTO(block_array(ctx, s->stats ? SLOT_ROW_OUT : SLOT_GRAD, out_host, out_bytes, 0, 1, "the output", &m[A_OUT],
                             &owned[A_OUT]),
                 st, block_done);
    }
    if (s->stats) {
      CHECK_GOTO(clxent_launch_slice_stats(ctx, s->dtype, rows, c, s->off, m[A_LOGITS], m[A_LABELS], weight, s->o.ignore_index,
                                           s->o.softcap, s->o.label_smoothing > 0.0f, m[A_OUT]),
                 st, block_done);
    } else {
      CHECK_GOTO(block_array(ctx, SLOT_LSE, s->lse + first, rows * sizeof(float), 1, 0, "lse", &m[A_LSE], &owned[A_LSE]),
                 st, block_done);
      CHECK_GOTO(block_array(ctx, SLOT_SCALES, s->wy ? s->wy + first : NULL, rows * sizeof(float), 1, 0, "label_weight",
                             &m[A_WY], &owned[A_WY]),
                 st, block_done);
      CHECK_GOTO(block_array(ctx, SLOT_ROW_SCALE, row_scale ? row_scale + first : NULL, rows * sizeof(float), 1, 0,
                             "opts->grad_output", &m[A_SCALE], &owned[A_SCALE]),
                 st, block_done);
      CHECK_GOTO(clxent_launch_slice_grad(ctx, s->dtype, rows, c, s->off, s->c_total, m[A_LOGITS], m[A_LABELS], weight,
                                          s->o.ignore_index, &s->p, m[A_LSE], m[A_WY], m[A_SCALE], m[A_OUT]),
                 st, block_done);
    }
    {
      /* Zero-copy too: the output wraps the caller's memory (CL_MEM_USE_HOST_PTR), but a device
       * may compute in a cached copy of it (NVIDIA does) and the host memory is current only after
       * a read or map. A read into its own host_ptr, as stream.c does for the gradient; a device
       * that worked in place (PoCL) copies nothing. */
      const cl_int err = clEnqueueReadBuffer(ctx->queue, m[A_OUT], CL_FALSE, 0, out_bytes, out_host, 0, NULL, NULL);
      if (err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clEnqueueReadBuffer(slice block)", err);
    }
  block_done:
    for (int k = 0; k < A_COUNT; ++k)
      if (owned[k] && m[k]) clReleaseMemObject(m[k]); /* OpenCL keeps them alive for the queued work */
    if (st != CLXENT_OK) break;
  }
done:
  if (weight_owned) clReleaseMemObject(weight);
  {
    const cl_int err = clFinish(ctx->queue); /* the queue drained on every path */
    if (st == CLXENT_OK && err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clFinish", err);
  }
  return st;
}

/* The checks both entries share; *o receives the caller's options. */
static clxent_status check_slice(clxent_ctx *ctx, size_t n, size_t c_local, size_t c_offset, size_t c_total,
                                 clxent_dtype dtype, const void *logits, const int32_t *labels, const clxent_opts *opts, clxent_opts *o,
                                 float *weight_sum) {
  CHECK(clxent_check_ctx(ctx));
  clxent_clear_error(ctx);
  if (ctx->group)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "the slice entries take a one-device context (this one has %zu)",
                       clxent_group_count(ctx));
  CHECK(clxent_check_shape(ctx, n, c_local, "c_local"));
  if (c_total > (size_t)INT32_MAX || c_offset > c_total || c_local > c_total - c_offset)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "columns [%zu, %zu + %zu) do not lie in [0, c_total = %zu ≤ INT32_MAX)",
                       c_offset, c_offset, c_local, c_total);
  CHECK(clxent_check_dtype(ctx, dtype));
  CHECK(clxent_check_ptr(ctx, logits, "logits"));
  CHECK(clxent_check_ptr(ctx, labels, "labels"));
  CHECK(clxent_read_opts(ctx, opts, o));
  CHECK(clxent_check_opts(ctx, o, FAMILY_SOFTMAX, c_local, weight_sum));
  return CLXENT_OK;
}

static clxent_status check_labels(clxent_ctx *ctx, const int32_t *labels, size_t n, size_t c_total, const clxent_opts *o) {
  size_t counted;
  double weighted;
  return clxent_check_labels(ctx, labels, n, c_total, 1, o->ignore_index, NULL, &counted, &weighted);
}

clxent_status clxent_softmax_slice_stats(clxent_ctx *ctx, size_t n, size_t c_local, size_t c_offset, size_t c_total,
                                         clxent_dtype dtype, const void *logits, const int32_t *labels, const clxent_opts *opts,
                                         float *stats) {
  slice_call s = {.n = n, .c = c_local, .off = c_offset, .c_total = c_total, .dtype = dtype, .logits = logits,
                  .labels = labels};
  float weight_sum;
  CHECK(check_slice(ctx, n, c_local, c_offset, c_total, dtype, logits, labels, opts, &s.o, &weight_sum));
  CHECK(clxent_check_ptr(ctx, stats, "stats"));
  CHECK(clxent_check_upstream(ctx, &s.o, clxent_upstream_count(&s.o, n)));
  const size_t elem = clxent_dtype_size(dtype);
  clxent_region r[] = {{.name = "logits", .host = logits, .bytes = n * c_local * elem, .element = elem},
                       {.name = "labels", .host = labels, .bytes = n * sizeof(int32_t)},
                       {.name = "opts->class_weight", .host = s.o.class_weight, .bytes = c_local * sizeof(float)},
                       {.name = "stats", .host = stats, .bytes = n * CLXENT_SLICE_VALUES * sizeof(float), .output = 1}};
  CHECK(clxent_check_regions(ctx, r, 4));
  CHECK(check_labels(ctx, labels, n, c_total, &s.o));
  s.stats = stats;
  return run_blocks(ctx, &s);
}

clxent_status clxent_softmax_slice_grad(clxent_ctx *ctx, size_t n, size_t c_local, size_t c_offset, size_t c_total,
                                        clxent_dtype dtype, const void *logits, const int32_t *labels, const clxent_opts *opts,
                                        const float *lse, const float *label_weight, float weight_sum, float scale,
                                        float z_scale, void *grad) {
  slice_call s = {.n = n, .c = c_local, .off = c_offset, .c_total = c_total, .dtype = dtype, .logits = logits,
                  .labels = labels};
  float slice_weight_sum;
  CHECK(check_slice(ctx, n, c_local, c_offset, c_total, dtype, logits, labels, opts, &s.o, &slice_weight_sum));
  CHECK(clxent_check_ptr(ctx, lse, "lse"));
  CHECK(clxent_check_ptr(ctx, grad, "grad"));
  if (!isfinite(weight_sum)) /* scale and z_scale may be NaN: a MEAN of 0/0 (counted rows of weight 0) */
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "weight_sum = %g must be finite", (double)weight_sum);
  const size_t upstream = clxent_upstream_count(&s.o, n);
  CHECK(clxent_check_upstream(ctx, &s.o, upstream));
  const size_t elem = clxent_dtype_size(dtype);
  clxent_region r[] = {{.name = "logits", .host = logits, .bytes = n * c_local * elem, .element = elem},
                       {.name = "labels", .host = labels, .bytes = n * sizeof(int32_t)},
                       {.name = "opts->class_weight", .host = s.o.class_weight, .bytes = c_local * sizeof(float)},
                       {.name = "opts->grad_output", .host = s.o.grad_output, .bytes = upstream * sizeof(float)},
                       {.name = "lse", .host = lse, .bytes = n * sizeof(float)},
                       {.name = "label_weight", .host = label_weight, .bytes = n * sizeof(float)},
                       {.name = "grad", .host = grad, .bytes = n * c_local * elem, .output = 1, .element = elem}};
  CHECK(clxent_check_regions(ctx, r, 7));
  CHECK(check_labels(ctx, labels, n, c_total, &s.o));
  const float g = s.o.grad_output && s.o.reduction != CLXENT_NONE ? s.o.grad_output[0] : 1.0f;
  s.p.smoothing = s.o.label_smoothing;
  s.p.z_loss = s.o.z_loss;
  s.p.softcap = s.o.softcap;
  s.p.scale = scale * g;
  s.p.z_scale = z_scale * g;
  s.p.z_loss_row = 1.0f;
  s.p.weight_sum = weight_sum;
  s.p.row_threads = 1;
  s.lse = lse, s.wy = label_weight, s.grad = grad;
  return run_blocks(ctx, &s);
}
