/*
 * clxent_linear_xent: the fused linear layer + softmax cross-entropy (kernels/linear_xent.cl has
 * the mathematics). The public entry validates everything first (validate.c: a rejected call
 * writes nothing), makes the kernels' scalars as clxent_softmax_xent does (plan.c), then walks the
 * batch in blocks of R rows × V classes: per row chunk, the logits of every class chunk for the
 * running softmax state and the rows' losses, then, if a gradient is wanted, every class chunk
 * again for G and the three products (the last few chunks' logits kept from the forward pass where
 * the memory bound allows: kept_blocks). The per-row losses are reduced as the softmax losses'
 * are (reduce.c), so the loss has their bits for the same logits' state.
 *
 * Device memory beyond the inputs and outputs: the block of logits (R·V' floats, V' = V rounded
 * up to 16, plus 16; with a gradient up to kept_blocks more of them), the state of a
 * row chunk (R·8 floats), the n per-row losses (and n lse if wanted), the row chunk of hidden
 * packed transposed for the logits (R'·d floats, R' = R rounded up to a panel of 2·VEC rows), the
 * packed operands of the gradient products (V·d' and R·d' floats, d' = d rounded up to a panel);
 * with 16-bit storage also the
 * float32 accumulators of the gradients asked for: R·d (grad_hidden), v·d (grad_weight), v
 * (grad_bias), each rounded once into the caller's type. The inputs and outputs are used in place on a
 * device that shares host memory (PoCL), else copied to and from buffers of their size.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "clxent_cl.h"
#include "internal.h"

#define LINEAR_STATE 8 /* LIN_STATE of kernels/linear_xent.cl */

/* A buffer for a caller's array: wrapped in place (zero-copy), or a device buffer, written from
 * it when `upload`. */
static clxent_status array_buffer(clxent_ctx *ctx, const void *host, size_t bytes, int upload, const char *what,
                                  cl_mem *out) {
  if (ctx->zero_copy) return clxent_wrap_host(ctx, CL_MEM_READ_WRITE, host, bytes, what, out);
  if ((cl_ulong)bytes > ctx->max_alloc)
    return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "%s (%zu bytes) exceeds the largest buffer of %s (%llu bytes)",
                       what, bytes, ctx->device_name, (unsigned long long)ctx->max_alloc);
  cl_int err;
  *out = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (err != CL_SUCCESS) {
    *out = NULL;
    return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(%zu bytes of %s) failed: %s (%d)", bytes, what,
                       clxent_cl_error_name(err), (int)err);
  }
  if (upload)
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

/* Blocks of logits the forward pass keeps for the backward: of each row chunk's `chunks` class
 * chunks, the last K, which the backward then does not compute again. Each logit has the same bits
 * either way (linear_logits's sum depends on its hidden and weight rows alone), so K changes the
 * time, never the results. K is as many blocks as fit, beside the call's other scratch (`rest`
 * floats, one block among them), in 4.5% of the n·v floats of the logits (issue 17 bounds the
 * scratch by 5%), at most every chunk. A whole row chunk kept (logits once, 6ndv flops) would need
 * small row chunks at large v, and those pack the weight for grad_hidden once per row chunk:
 * docs/PERFORMANCE.md measures that trade. */
static size_t kept_blocks(size_t n, size_t v, size_t rest, size_t block, size_t chunks) {
  const double budget = 0.045 * (double)n * (double)v;
  if (budget < (double)(rest + block)) return 0;
  const double k = (budget - (double)rest) / (double)block - 1.0;
  return k >= (double)chunks ? chunks : (size_t)k;
}

/* Every kernel of a call whose arrays are in buffers: l holds the inputs, the per-row outputs and
 * the scales; gh, gw, gb are the gradients' buffers (of the call's type) or NULL. Float32
 * gradients are accumulated in them directly, 16-bit ones in float32 scratch and rounded once. */
/* The scratch of a call but its kept blocks, in floats, with R rows per block: one block, the
 * state, the row losses, the packs, the 16-bit gradients' accumulators. */
static size_t scratch_rest(const clxent_ctx *ctx, const linear_call *c, size_t R, size_t V, int gh, int gw, int gb) {
  const size_t n = c->n, v = c->v, d = c->d;
  return R * clxent_linear_ldz(V) + R * LINEAR_STATE + n + clxent_linear_packed_t(ctx, R, d) +
         (gh ? clxent_linear_packed(ctx, V, d) : 0) + (gw ? clxent_linear_packed(ctx, R, d) : 0) +
         (c->dtype != CLXENT_FLOAT32 ? (gh ? R * d : 0) + (gw ? v * d : 0) + (gb ? v : 0) : 0);
}

/* Rows per block with a gradient, where the caller did not set them: the tuning table's R, or
 * fewer (a multiple of 16, at least 64) if with them a row chunk keeps every one of its blocks
 * (kept_blocks): each logit then computed once, 6ndv flops instead of 8ndv. At 2048 × 1024 ×
 * 32000 that is 64 rows: 6.5-6.8 s against 7.8-8.2 s with 256 beside a test suite, medians of
 * 4.62 against 4.78 s on a quiet machine (docs/PERFORMANCE.md); the cost is grad_hidden's weight
 * packed once per 64 rows, not 256, and four times the launches. Below
 * 64 rows that packing grows past what the pass saves, so the table's R stays. The results are the
 * same bits for any R (test_block_shapes). */
static size_t rows_per_block(const clxent_ctx *ctx, const linear_call *c, size_t V, int gh, int gw, int gb) {
  const size_t n = c->n, v = c->v, chunks = (v + V - 1) / V;
  const size_t R = ctx->linear_rows < n ? ctx->linear_rows : n;
  if (!ctx->linear_rows_table || !(gh || gw || gb)) return R;
  for (size_t r = R; r >= 64; r = (r - 1) / 16 * 16)
    if (kept_blocks(n, v, scratch_rest(ctx, c, r, V, gh, gw, gb), r * clxent_linear_ldz(V), chunks) == chunks) return r;
  return R;
}

static clxent_status enqueue_blocks(clxent_ctx *ctx, const linear_call *c, clxent_linear_launch l, cl_mem gh, cl_mem gw,
                                    cl_mem gb) {
  const size_t n = c->n, v = c->v, d = c->d;
  const size_t V = ctx->linear_classes < v ? ctx->linear_classes : v;
  const size_t R = rows_per_block(ctx, c, V, gh != NULL, gw != NULL, gb != NULL);
  const int narrow = c->dtype != CLXENT_FLOAT32; /* 16-bit gradients: float32 accumulators, rounded once */
  const int backward = gh || gw || gb;
  const size_t block = R * clxent_linear_ldz(V), chunks = (v + V - 1) / V, packed_t = clxent_linear_packed_t(ctx, R, d);
  const size_t packed_w = gh ? clxent_linear_packed(ctx, V, d) : 0, packed_h = gw ? clxent_linear_packed(ctx, R, d) : 0;
  const size_t rest = scratch_rest(ctx, c, R, V, gh != NULL, gw != NULL, gb != NULL);
  const size_t kept = backward ? kept_blocks(n, v, rest, block, chunks) : 0;
  /* slots 0..kept-1: the kept chunks chunks-kept.. in order; slot kept: every other chunk */
  const size_t slots = kept < chunks ? kept + 1 : chunks;
  CHECK(clxent_buffer(ctx, SLOT_LINEAR_Z, slots * block * sizeof(float), &l.z));
  CHECK(clxent_buffer(ctx, SLOT_LINEAR_STATE, R * LINEAR_STATE * sizeof(float), &l.state));
  CHECK(clxent_buffer(ctx, SLOT_LINEAR_PACK_HT, packed_t * sizeof(float), &l.hq));
  l.gh = gh, l.gw = gw, l.gb = gb;
  if (narrow && gh) CHECK(clxent_buffer(ctx, SLOT_LINEAR_GH, R * d * sizeof(float), &l.gh));
  if (narrow && gw) CHECK(clxent_buffer(ctx, SLOT_LINEAR_GW, v * d * sizeof(float), &l.gw));
  if (narrow && gb) CHECK(clxent_buffer(ctx, SLOT_LINEAR_GB, v * sizeof(float), &l.gb));
  if (gh) CHECK(clxent_buffer(ctx, SLOT_LINEAR_PACK_W, packed_w * sizeof(float), &l.wp));
  if (gw) CHECK(clxent_buffer(ctx, SLOT_LINEAR_PACK_H, packed_h * sizeof(float), &l.hp));
  for (size_t r0 = 0; r0 < n; r0 += R) {
    l.first_row = r0, l.rows = n - r0 < R ? n - r0 : R;
    l.gh_row = narrow ? 0 : r0;
    CHECK(clxent_launch_linear(ctx, LINEAR_PACK_HT, &l)); /* both passes' logits read it */
    for (size_t j0 = 0, q = 0; j0 < v; j0 += V, ++q) {
      l.first_class = j0, l.classes = v - j0 < V ? v - j0 : V;
      l.first = j0 == 0, l.last = j0 + V >= v;
      l.z_off = (q + kept >= chunks ? q + kept - chunks : kept) * block;
      CHECK(clxent_launch_linear(ctx, LINEAR_LOGITS, &l));
      CHECK(clxent_launch_linear(ctx, LINEAR_STATS, &l));
    }
    if (!backward) continue;
    if (gw) CHECK(clxent_launch_linear(ctx, LINEAR_PACK_H, &l));
    for (size_t j0 = 0, q = 0; j0 < v; j0 += V, ++q) { /* in increasing j: the gradients' sums' order */
      l.first_class = j0, l.classes = v - j0 < V ? v - j0 : V;
      const int is_kept = q + kept >= chunks;
      l.z_off = (is_kept ? q + kept - chunks : kept) * block;
      if (!is_kept) CHECK(clxent_launch_linear(ctx, LINEAR_LOGITS, &l));
      CHECK(clxent_launch_linear(ctx, LINEAR_GRAD, &l));
      l.first = j0 == 0; /* grad_hidden's rows start at the first class chunk */
      if (gh) CHECK(clxent_launch_linear(ctx, LINEAR_PACK_W, &l));
      if (gh) CHECK(clxent_launch_linear(ctx, LINEAR_DHIDDEN, &l));
      l.first = r0 == 0; /* grad_weight's and grad_bias's classes at the first row chunk */
      if (gw) CHECK(clxent_launch_linear(ctx, LINEAR_DWEIGHT, &l));
      if (gb) CHECK(clxent_launch_linear(ctx, LINEAR_DBIAS, &l));
    }
    if (narrow && gh) CHECK(clxent_launch_linear_narrow(ctx, c->dtype, l.rows * d, l.gh, gh, r0 * d));
  }
  if (narrow && gw) CHECK(clxent_launch_linear_narrow(ctx, c->dtype, v * d, l.gw, gw, 0));
  if (narrow && gb) CHECK(clxent_launch_linear_narrow(ctx, c->dtype, v, l.gb, gb, 0));
  return CLXENT_OK;
}

/* A host-pointer call: the arrays wrapped (zero-copy) or copied, the blocks, the gradients back,
 * the loss reduced (reduce.c). */
static clxent_status run(clxent_ctx *ctx, const linear_call *c, const clxent_plan *plan) {
  cl_mem mem[A_COUNT] = {NULL};
  clxent_results res = {NULL, NULL, NULL, NULL, NULL};
  clxent_status st = CLXENT_OK;
  clxent_linear_launch l = {.dtype = c->dtype, .v = c->v, .d = c->d, .ignore_index = c->ignore_index,
                            .params = c->params};
  CHECK_GOTO(clxent_buffer(ctx, SLOT_ROW_OUT, c->n * sizeof(float), &res.rows), st, drain);
  if (plan->lse) CHECK_GOTO(clxent_buffer(ctx, SLOT_LINEAR_LSE, c->n * sizeof(float), &res.lse), st, drain);
  static const char *const names[A_COUNT] = {"hidden", "weight", "bias", "labels", "opts->class_weight",
                                             "grad_hidden", "grad_weight", "grad_bias"};
  for (int a = 0; a < A_COUNT; ++a)
    if (c->host[a]) CHECK_GOTO(array_buffer(ctx, c->host[a], c->bytes[a], a < A_GH, names[a], &mem[a]), st, drain);
  l.hidden = mem[A_HIDDEN], l.weight = mem[A_WEIGHT], l.bias = mem[A_BIAS], l.labels = mem[A_LABELS];
  l.class_weight = mem[A_CLASS_WEIGHT], l.row_loss = res.rows, l.row_lse = res.lse;
  CHECK_GOTO(enqueue_blocks(ctx, c, l, mem[A_GH], mem[A_GW], mem[A_GB]), st, drain);
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

/* The output checks both entries share: something to compute, and no ex->bias_grad (grad_bias is it). */
static clxent_status check_outputs(clxent_ctx *ctx, int any_output, int bias_grad_set) {
  if (!any_output)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "loss, grad_hidden, grad_weight, grad_bias and ex->lse are all NULL: nothing to compute");
  if (bias_grad_set)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "ex->bias_grad does not apply to clxent_linear_xent: its grad_bias argument is the bias gradient");
  return CLXENT_OK;
}

/* The checks of both entries before the arrays': context, shape, options. */
static clxent_status check_common(clxent_ctx *ctx, size_t n, size_t d, size_t v, const clxent_opts *opts,
                                  clxent_opts *o) {
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
  CHECK(clxent_read_opts(ctx, opts, o));
  if (o->grad_output || o->mean_denominator != 0.0)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "opts->grad_output and opts->mean_denominator are not implemented for clxent_linear_xent yet");
  return CLXENT_OK;
}

clxent_status clxent_linear_xent_ex(clxent_ctx *ctx, size_t n, size_t d, size_t v, const void *hidden,
                                    const void *weight, const void *bias, const int32_t *labels,
                                    const clxent_opts *opts, const clxent_ex *ex, float *loss, void *grad_hidden,
                                    void *grad_weight, void *grad_bias) {
  CHECK(clxent_check_ctx(ctx));
  clxent_opts o;
  clxent_ex x;
  CHECK(check_common(ctx, n, d, v, opts, &o));
  CHECK(clxent_check_ptr(ctx, hidden, "hidden"));
  CHECK(clxent_check_ptr(ctx, weight, "weight"));
  CHECK(clxent_check_ptr(ctx, labels, "labels"));
  CHECK(clxent_read_ex(ctx, ex, &x));
  CHECK(clxent_check_dtype(ctx, x.dtype));
  CHECK(check_outputs(ctx, loss || grad_hidden || grad_weight || grad_bias || x.lse, x.bias_grad != NULL));
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
  CHECK(clxent_check_labels(ctx, labels, n, v, 1, o.ignore_index, o.class_weight, &counted, &weighted));
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

/* ---------------------------------------------------------------- on device buffers (clxent_cl.h) */

static const size_t mem_ex_fields[] = {
    offsetof(clxent_mem_ex, dtype) + sizeof(clxent_dtype), offsetof(clxent_mem_ex, lse) + sizeof(cl_mem),
    offsetof(clxent_mem_ex, bias_grad) + sizeof(cl_mem), offsetof(clxent_mem_ex, bad_labels) + sizeof(cl_mem)};

/* As clxent_linear_xent_ex on the caller's buffers and queue: labels stay on the device, where
 * label_stats finds the MEAN divisor (and bad labels: their rows NaN, counted in ex->bad_labels);
 * everything is enqueued after `wait`, nothing waited for. */
clxent_status clxent_linear_xent_mem(clxent_ctx *ctx, size_t n, size_t d, size_t v, cl_mem hidden, cl_mem weight,
                                     cl_mem bias, cl_mem labels, const clxent_opts *opts, const clxent_mem_ex *ex,
                                     cl_mem loss, cl_mem grad_hidden, cl_mem grad_weight, cl_mem grad_bias,
                                     cl_uint num_wait, const cl_event *wait, cl_event *done) {
  CHECK(clxent_check_ctx(ctx));
  clxent_opts o;
  CHECK(check_common(ctx, n, d, v, opts, &o));
  CHECK(clxent_check_ptr(ctx, hidden, "hidden"));
  CHECK(clxent_check_ptr(ctx, weight, "weight"));
  CHECK(clxent_check_ptr(ctx, labels, "labels"));
  clxent_mem_ex x = clxent_mem_ex_default();
  if (ex) CHECK(clxent_read_sized(ctx, "ex", ex, &x, sizeof x, mem_ex_fields, sizeof mem_ex_fields / sizeof(size_t)));
  CHECK(clxent_check_dtype(ctx, x.dtype));
  CHECK(check_outputs(ctx, loss || grad_hidden || grad_weight || grad_bias || x.lse, x.bias_grad != NULL));
  if (num_wait && !wait) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "wait is NULL but num_wait = %u", num_wait);
  const size_t elem = clxent_dtype_size(x.dtype), hd = n * d * elem, wd = v * d * elem, vb = v * elem;
  clxent_region r[] = {{.name = "hidden", .mem = hidden, .bytes = hd},
                       {.name = "weight", .mem = weight, .bytes = wd},
                       {.name = "bias", .mem = bias, .bytes = vb},
                       {.name = "labels", .mem = labels, .bytes = n * sizeof(cl_int)},
                       {.name = "loss", .mem = loss, .bytes = (o.reduction == CLXENT_NONE ? n : 1) * sizeof(float),
                        .output = 1},
                       {.name = "grad_hidden", .mem = grad_hidden, .bytes = hd, .output = 1},
                       {.name = "grad_weight", .mem = grad_weight, .bytes = wd, .output = 1},
                       {.name = "grad_bias", .mem = grad_bias, .bytes = vb, .output = 1},
                       {.name = "ex->lse", .mem = x.lse, .bytes = n * sizeof(float), .output = 1},
                       {.name = "ex->bad_labels", .mem = x.bad_labels, .bytes = sizeof(cl_uint), .output = 1}};
  CHECK(clxent_check_regions(ctx, r, (int)(sizeof r / sizeof r[0])));
  float weight_sum;
  CHECK(clxent_check_opts(ctx, &o, FAMILY_SOFTMAX, v, &weight_sum));
  /* MEAN with weights: scaled by the largest weight as api_cl.c does (the labels are not seen) */
  float *scaled = NULL;
  int shift;
  if (o.class_weight && o.reduction == CLXENT_MEAN) {
    float largest = 0.0f;
    for (size_t j = 0; j < v; ++j) largest = o.class_weight[j] > largest ? o.class_weight[j] : largest;
    CHECK(clxent_scaled_weights(ctx, o.class_weight, v, largest, &scaled, &weight_sum, &shift));
  }
  if (scaled) o.class_weight = scaled;
  cl_mem cw = NULL;
  clxent_status st = CLXENT_OK;
  if (o.class_weight) {
    cl_int err;
    cw = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, v * sizeof(float),
                        (void *)(uintptr_t)o.class_weight, &err);
    if (err != CL_SUCCESS) {
      free(scaled);
      return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(class weights, %zu bytes) failed: %s (%d)",
                         v * sizeof(float), clxent_cl_error_name(err), (int)err);
    }
  }
  free(scaled); /* copied into the buffer */
  const linear_call c = {.n = n, .d = d, .v = v, .dtype = x.dtype, .ignore_index = o.ignore_index};
  float divisor;
  clxent_linear_launch l = {.dtype = x.dtype, .v = v, .d = d, .ignore_index = o.ignore_index, .hidden = hidden,
                            .weight = weight, .bias = bias, .labels = labels, .class_weight = cw, .row_lse = x.lse};
  /* the scales of the reduction from the device's count of the labels (label_stats) */
  l.params = clxent_loss_params(&o, (double)n, n, weight_sum, &divisor);
  l.params.scale = l.params.z_scale = 1.0f; /* call_params (common.cl) multiplies them by the device's */
  l.params.row_threads = 1;
  cl_mem total;
  if (num_wait)
    CHECK_GOTO(clEnqueueBarrierWithWaitList(ctx->queue, num_wait, wait, NULL) == CL_SUCCESS
                   ? CLXENT_OK
                   : clxent_fail(ctx, CLXENT_ERR_OPENCL, "clEnqueueBarrierWithWaitList(wait) failed"),
               st, out);
  CHECK_GOTO(clxent_buffer(ctx, SLOT_SCALES, CLXENT_SCALES_COUNT * sizeof(float), &l.dev_scales), st, out);
  CHECK_GOTO(clxent_launch_label_stats(ctx, n, v, labels, cw, o.ignore_index, o.reduction == CLXENT_MEAN,
                                       l.dev_scales, x.bad_labels),
             st, out);
  if (o.reduction == CLXENT_NONE && loss) l.row_loss = loss;
  else CHECK_GOTO(clxent_buffer(ctx, SLOT_ROW_OUT, n * sizeof(float), &l.row_loss), st, out);
  CHECK_GOTO(enqueue_blocks(ctx, &c, l, grad_hidden, grad_weight, grad_bias), st, out);
  if (loss && o.reduction != CLXENT_NONE)
    CHECK_GOTO(clxent_enqueue_reduce(ctx, l.row_loss, n, divisor, l.dev_scales, loss, &total), st, out);
  if (done)
    CHECK_GOTO(clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, done) == CL_SUCCESS
                   ? CLXENT_OK
                   : clxent_fail(ctx, CLXENT_ERR_OPENCL, "clEnqueueMarkerWithWaitList(done) failed"),
               st, out);
  clFlush(ctx->queue); /* start the work; the host does not wait for it */
out:
  if (cw) clReleaseMemObject(cw); /* OpenCL keeps it until the queued commands are done */
  return st;
}
