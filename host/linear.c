/*
 * clxent_linear_xent: the fused linear layer + softmax cross-entropy (kernels/linear_xent.cl has
 * the mathematics). The public entry validates everything first (validate.c: a rejected call
 * writes nothing), makes the kernels' scalars as clxent_softmax_xent does (plan.c), then walks the
 * batch in blocks of R rows × V classes: per row chunk, the logits of every class chunk for the
 * running softmax state and the rows' losses, then, if a gradient is wanted, every class chunk
 * again for G and the three products. The per-row losses are reduced as the softmax losses' are
 * (reduce.c), so the loss has their bits for the same logits' state.
 *
 * Device memory beyond the inputs and outputs: the block of logits (R·V floats), the state of a
 * row chunk (R·8 floats), the n per-row losses (and n lse if wanted); with 16-bit storage also the
 * float32 accumulators of the gradients asked for: R·d (grad_hidden), v·d (grad_weight), v
 * (grad_bias), each rounded once into the caller's type. The inputs and outputs are used in place on a
 * device that shares host memory (PoCL), else copied to and from buffers of their size.
 */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

#define LINEAR_STATE 8 /* LIN_STATE of kernels/linear_xent.cl */

/* A buffer for a caller's array: wrapped in place (zero-copy), or a device buffer, written from
 * it when `upload`. */
static clxent_status array_buffer(clxent_ctx *ctx, const void *host, size_t bytes, int upload, const char *what,
                                  cl_mem *out) {
  cl_int err;
  if (ctx->zero_copy) {
    *out = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, (void *)(uintptr_t)host,
                          &err);
  } else {
    if ((cl_ulong)bytes > ctx->max_alloc)
      return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "%s (%zu bytes) exceeds the largest buffer of %s (%llu bytes)",
                         what, bytes, ctx->device_name, (unsigned long long)ctx->max_alloc);
    *out = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  }
  if (err != CL_SUCCESS) {
    *out = NULL;
    return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(%zu bytes of %s) failed: %s (%d)", bytes, what,
                       clxent_cl_error_name(err), (int)err);
  }
  if (upload && !ctx->zero_copy)
    CHECK_CL(ctx, clEnqueueWriteBuffer(ctx->queue, *out, CL_FALSE, 0, bytes, host, 0, NULL, NULL),
             "clEnqueueWriteBuffer(linear_xent input)");
  return CLXENT_OK;
}

/* The caller's arrays: the inputs, then the three gradients. */
enum { A_HIDDEN, A_WEIGHT, A_BIAS, A_LABELS, A_CLASS_WEIGHT, A_GH, A_GW, A_GB, A_COUNT };

typedef struct linear_call {
  size_t n, d, v;
  clxent_dtype dtype;
  const void *host[A_COUNT];
  size_t bytes[A_COUNT];
  cl_int ignore_index;
  clxent_params params;
} linear_call;

static clxent_status run(clxent_ctx *ctx, const linear_call *c, const clxent_plan *plan) {
  const size_t n = c->n, v = c->v, d = c->d;
  const size_t R = ctx->linear_rows < n ? ctx->linear_rows : n, V = ctx->linear_classes < v ? ctx->linear_classes : v;
  const int narrow = c->dtype != CLXENT_FLOAT32; /* 16-bit gradients: float32 accumulators, rounded once */
  cl_mem mem[A_COUNT] = {NULL};
  clxent_results res = {NULL, NULL, NULL, NULL};
  clxent_status st = CLXENT_OK;
  clxent_linear_launch l = {.dtype = c->dtype, .v = v, .d = d, .ignore_index = c->ignore_index, .params = c->params};
  CHECK_GOTO(clxent_buffer(ctx, SLOT_LINEAR_Z, R * V * sizeof(float), &l.z), st, drain);
  CHECK_GOTO(clxent_buffer(ctx, SLOT_LINEAR_STATE, R * LINEAR_STATE * sizeof(float), &l.state), st, drain);
  CHECK_GOTO(clxent_buffer(ctx, SLOT_ROW_OUT, n * sizeof(float), &res.rows), st, drain);
  if (plan->lse) CHECK_GOTO(clxent_buffer(ctx, SLOT_LINEAR_LSE, n * sizeof(float), &res.lse), st, drain);
  static const char *const names[A_COUNT] = {"hidden", "weight", "bias", "labels", "opts->class_weight",
                                             "grad_hidden", "grad_weight", "grad_bias"};
  for (int a = 0; a < A_COUNT; ++a)
    if (c->host[a]) CHECK_GOTO(array_buffer(ctx, c->host[a], c->bytes[a], a < A_GH, names[a], &mem[a]), st, drain);
  l.hidden = mem[A_HIDDEN], l.weight = mem[A_WEIGHT], l.bias = mem[A_BIAS], l.labels = mem[A_LABELS];
  l.class_weight = mem[A_CLASS_WEIGHT], l.gh = mem[A_GH], l.gw = mem[A_GW], l.gb = mem[A_GB];
  if (narrow && l.gh) CHECK_GOTO(clxent_buffer(ctx, SLOT_LINEAR_GH, R * d * sizeof(float), &l.gh), st, drain);
  if (narrow && l.gw) CHECK_GOTO(clxent_buffer(ctx, SLOT_LINEAR_GW, v * d * sizeof(float), &l.gw), st, drain);
  if (narrow && l.gb) CHECK_GOTO(clxent_buffer(ctx, SLOT_LINEAR_GB, v * sizeof(float), &l.gb), st, drain);
  l.row_loss = res.rows, l.row_lse = res.lse;
  const int backward = l.gh || l.gw || l.gb;
  for (size_t r0 = 0; r0 < n; r0 += R) {
    l.first_row = r0, l.rows = n - r0 < R ? n - r0 : R;
    l.gh_row = narrow ? 0 : r0;
    for (size_t j0 = 0; j0 < v; j0 += V) {
      l.first_class = j0, l.classes = v - j0 < V ? v - j0 : V;
      l.first = j0 == 0, l.last = j0 + V >= v;
      CHECK_GOTO(clxent_launch_linear(ctx, LINEAR_LOGITS, &l), st, drain);
      CHECK_GOTO(clxent_launch_linear(ctx, LINEAR_STATS, &l), st, drain);
    }
    if (!backward) continue;
    for (size_t j0 = 0; j0 < v; j0 += V) {
      l.first_class = j0, l.classes = v - j0 < V ? v - j0 : V;
      CHECK_GOTO(clxent_launch_linear(ctx, LINEAR_LOGITS, &l), st, drain);
      CHECK_GOTO(clxent_launch_linear(ctx, LINEAR_GRAD, &l), st, drain);
      l.first = j0 == 0; /* grad_hidden's rows start at the first class chunk */
      if (l.gh) CHECK_GOTO(clxent_launch_linear(ctx, LINEAR_DHIDDEN, &l), st, drain);
      l.first = r0 == 0; /* grad_weight's and grad_bias's classes at the first row chunk */
      if (l.gw) CHECK_GOTO(clxent_launch_linear(ctx, LINEAR_DWEIGHT, &l), st, drain);
      if (l.gb) CHECK_GOTO(clxent_launch_linear(ctx, LINEAR_DBIAS, &l), st, drain);
    }
    if (narrow && l.gh)
      CHECK_GOTO(clxent_launch_linear_narrow(ctx, c->dtype, l.rows * d, l.gh, mem[A_GH], r0 * d), st, drain);
  }
  if (narrow && l.gw) CHECK_GOTO(clxent_launch_linear_narrow(ctx, c->dtype, v * d, l.gw, mem[A_GW], 0), st, drain);
  if (narrow && l.gb) CHECK_GOTO(clxent_launch_linear_narrow(ctx, c->dtype, v, l.gb, mem[A_GB], 0), st, drain);
  /* the gradients to the caller: a read of each buffer into its own host memory where the device
   * worked in place (which copies nothing, and makes the writes visible), else from the device */
  for (int a = A_GH; a < A_COUNT; ++a) {
    if (!mem[a]) continue;
    const cl_int err = clEnqueueReadBuffer(ctx->queue, mem[a], CL_FALSE, 0, c->bytes[a], (void *)(uintptr_t)c->host[a],
                                           0, NULL, NULL);
    if (err != CL_SUCCESS) {
      st = clxent_fail_cl(ctx, "clEnqueueReadBuffer(a gradient)", err);
      goto drain;
    }
  }
  st = clxent_deliver(ctx, plan, &res); /* waits for everything, on every path */
  goto done;
drain: {
  const cl_int err = clFinish(ctx->queue);
  if (st == CLXENT_OK && err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clFinish", err);
}
done:
  for (int a = 0; a < A_COUNT; ++a)
    if (mem[a]) clReleaseMemObject(mem[a]);
  return st;
}

static int overflows(size_t a, size_t b) { return b && a > SIZE_MAX / sizeof(float) / b; }

clxent_status clxent_linear_xent_ex(clxent_ctx *ctx, size_t n, size_t d, size_t v, const void *hidden,
                                    const void *weight, const void *bias, const int32_t *labels,
                                    const clxent_opts *opts, const clxent_ex *ex, float *loss, void *grad_hidden,
                                    void *grad_weight, void *grad_bias) {
  CHECK(clxent_check_ctx(ctx));
  if (ctx->group)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "clxent_linear_xent needs a one-device context (this one has %zu devices)",
                       clxent_group_count(ctx));
  CHECK(clxent_check_shape(ctx, n, v, "classes"));
  if (d == 0) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "d (hidden size) is 0");
  if (overflows(n, d) || overflows(v, d))
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "n × d or v × d (%zu, %zu, %zu) floats overflows size_t", n, d, v);
  if (v > (size_t)INT32_MAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "v (classes) = %zu exceeds INT32_MAX (labels are int32)", v);
  CHECK(clxent_check_ptr(ctx, hidden, "hidden"));
  CHECK(clxent_check_ptr(ctx, weight, "weight"));
  CHECK(clxent_check_ptr(ctx, labels, "labels"));
  clxent_opts o;
  clxent_ex x;
  CHECK(clxent_read_opts(ctx, opts, &o));
  CHECK(clxent_read_ex(ctx, ex, &x));
  CHECK(clxent_check_dtype(ctx, x.dtype));
  if (!loss && !grad_hidden && !grad_weight && !grad_bias && !x.lse)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "loss, grad_hidden, grad_weight, grad_bias and ex->lse are all NULL: nothing to compute");
  if (o.grad_output || o.mean_denominator != 0.0)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "opts->grad_output and opts->mean_denominator are not implemented for clxent_linear_xent yet");
  if (x.bias_grad)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "ex->bias_grad does not apply to clxent_linear_xent: its grad_bias argument is the bias gradient");
  if (x.argmax || x.correct || x.inner > 1)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "ex->argmax, ex->correct and ex->inner are not implemented for clxent_linear_xent");
  const size_t elem = clxent_dtype_size(x.dtype);
  const size_t hd = n * d * elem, wd = v * d * elem, vb = v * elem;
  clxent_region r[] = {{.name = "hidden", .host = hidden, .bytes = hd, .element = elem},
                       {.name = "weight", .host = weight, .bytes = wd, .element = elem},
                       {.name = "bias", .host = bias, .bytes = vb, .element = elem},
                       {.name = "labels", .host = labels, .bytes = n * sizeof(int32_t)},
                       {.name = "opts->class_weight", .host = o.class_weight, .bytes = v * sizeof(float)},
                       {.name = "loss", .host = loss, .bytes = (o.reduction == CLXENT_NONE ? n : 1) * sizeof(float),
                        .output = 1},
                       {.name = "grad_hidden", .host = grad_hidden, .bytes = hd, .output = 1, .element = elem},
                       {.name = "grad_weight", .host = grad_weight, .bytes = wd, .output = 1, .element = elem},
                       {.name = "grad_bias", .host = grad_bias, .bytes = vb, .output = 1, .element = elem},
                       {.name = "ex->lse", .host = x.lse, .bytes = n * sizeof(float), .output = 1}};
  CHECK(clxent_check_regions(ctx, r, (int)(sizeof r / sizeof r[0])));
  float weight_sum;
  CHECK(clxent_check_opts(ctx, &o, FAMILY_SOFTMAX, v, &weight_sum));
  size_t counted;
  double weighted;
  CHECK(clxent_check_labels(ctx, labels, n, v, o.ignore_index, o.class_weight, &counted, &weighted));
  float *scaled = NULL;
  int shift = 0;
  if (o.class_weight && o.reduction == CLXENT_MEAN) /* a divisor far from 1: see plan.c */
    CHECK(clxent_scaled_weights(ctx, o.class_weight, v, weighted, &scaled, &weight_sum, &shift));
  if (scaled) o.class_weight = scaled, weighted = ldexp(weighted, shift);

  linear_call c = {.n = n, .d = d, .v = v, .dtype = x.dtype, .ignore_index = o.ignore_index};
  const void *host[A_COUNT] = {hidden, weight, bias, labels, o.class_weight, grad_hidden, grad_weight, grad_bias};
  const size_t bytes[A_COUNT] = {hd, wd, vb, n * sizeof(int32_t), v * sizeof(float), hd, wd, vb};
  for (int a = 0; a < A_COUNT; ++a) c.host[a] = host[a], c.bytes[a] = bytes[a];
  clxent_plan plan = {.kernel = KERNEL_LINEAR_STATS, .dtype = x.dtype, .n = n, .c = v, .labels = labels,
                      .loss = loss, .lse = x.lse, .reduction = o.reduction};
  c.params = clxent_loss_params(&o, weighted, counted, weight_sum, &plan.divisor);
  c.params.row_threads = 1;
  PIECE(ctx, "checks and plan", NULL);
  const clxent_status st = run(ctx, &c, &plan);
  free(scaled);
  return st;
}

clxent_status clxent_linear_xent(clxent_ctx *ctx, size_t n, size_t d, size_t v, const float *hidden,
                                 const float *weight, const float *bias, const int32_t *labels,
                                 const clxent_opts *opts, float *loss, float *grad_hidden, float *grad_weight,
                                 float *grad_bias) {
  return clxent_linear_xent_ex(ctx, n, d, v, hidden, weight, bias, labels, opts, NULL, loss, grad_hidden, grad_weight,
                               grad_bias);
}
