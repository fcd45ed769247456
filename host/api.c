/*
 * The public host-pointer entries (clxent.h): read the caller's structs, validate everything
 * (validate.c: a rejected call writes nothing), make the call's plan, and hand it to the engine of
 * one device (stream.c) or of several (group.c).
 */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

static clxent_status execute(clxent_ctx *ctx, const clxent_plan *plan) {
  PIECE(ctx, "checks and plan", NULL);
  if (clxent_direct_takes(ctx, plan)) { /* small calls on a CPU device: the host, same bits */
    int done;
    CHECK(clxent_direct(ctx, plan, &done));
    if (done) return CLXENT_OK;
  }
  return ctx->group ? clxent_group_execute(ctx, plan) : clxent_execute(ctx, plan);
}

static size_t loss_count(clxent_reduction r, size_t values) { return r == CLXENT_NONE ? values : 1; }

/* The checks every loss shares: shape, pointers, structs, and the memory the call touches. *rows
 * receives the number of rows: n, or n·S with the classes not innermost (ex->inner = S > 1). */
typedef struct loss_call {
  enum clxent_family family;
  size_t n, c;
  const char *in_name, *aux_name;
  const void *in, *aux;
  const int32_t *labels;
  const clxent_opts *opts;
  const clxent_ex *ex;
  float *loss;
  void *grad;
  int row_losses; /* loss holds one value per row whatever the reduction (clxent_softmax_xent_part) */
} loss_call;

static clxent_status check_call(clxent_ctx *ctx, const loss_call *call, clxent_opts *o, clxent_ex *x,
                                float *weight_sum, size_t *rows) {
  const int softmax = call->family == FAMILY_SOFTMAX;
  CHECK(clxent_check_shape(ctx, call->n, call->c, softmax ? "classes" : "columns"));
  CHECK(clxent_check_ptr(ctx, call->in, call->in_name));
  CHECK(clxent_check_ptr(ctx, call->labels ? (const void *)call->labels : call->aux, call->aux_name));
  CHECK(clxent_check_outputs(ctx, call->loss, call->grad));
  CHECK(clxent_read_opts(ctx, call->opts, o));
  CHECK(clxent_read_ex(ctx, call->ex, x));
  CHECK(clxent_check_dtype(ctx, x->dtype));
  const size_t inner = x->inner > 1 ? x->inner : 1;
  if (inner > 1 && !softmax)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "ex->inner = %zu applies to the softmax losses only (the binary losses are elementwise: "
                       "any layout is n·c values)",
                       x->inner);
  if (inner > 1 && (call->n > SIZE_MAX / inner || call->n * inner > SIZE_MAX / call->c))
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "n x c x ex->inner = %zu x %zu x %zu overflows size_t", call->n,
                       call->c, inner);
  *rows = call->n * inner;
  if (x->lse && !softmax) return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->lse applies to the softmax losses only");
  if (x->argmax && !softmax)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->argmax applies to the softmax losses only");
  if (x->correct && !call->labels)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->correct applies to hard labels only (clxent_softmax_xent_ex)");
  if ((x->argmax || x->correct) && call->c > (size_t)INT32_MAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "c (classes) = %zu exceeds INT32_MAX: ex->%s cannot index it",
                       call->c, x->argmax ? "argmax" : "correct");
  if (x->bias_grad && !call->grad)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ex->bias_grad needs grad (it is the sum of the gradient's rows)");
  if (!softmax && call->c > (size_t)INT32_MAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "c (columns) = %zu exceeds INT32_MAX", call->c);
  const size_t elem = clxent_dtype_size(x->dtype), values = *rows * call->c, mat = values * elem;
  const size_t upstream = clxent_upstream_count(o, softmax ? *rows : values);
  clxent_region r[] = {
      {.name = call->in_name, .host = call->in, .bytes = mat, .element = elem},
      {.name = call->aux_name, .host = call->labels ? (const void *)call->labels : call->aux,
       .bytes = call->labels ? *rows * sizeof(int32_t) : mat, .element = call->labels ? 0 : elem},
      {.name = softmax ? "opts->class_weight" : "opts->pos_weight", .host = softmax ? o->class_weight : o->pos_weight,
       .bytes = call->c * sizeof(float)},
      {.name = "opts->grad_output", .host = o->grad_output, .bytes = upstream * sizeof(float)},
      {.name = "grad", .host = call->grad, .bytes = mat, .output = 1, .element = elem},
      {.name = call->row_losses ? "row_loss" : "loss", .host = call->loss,
       .bytes = loss_count(call->row_losses ? CLXENT_NONE : o->reduction, softmax ? *rows : values) * sizeof(float),
       .output = 1},
      {.name = "ex->lse", .host = x->lse, .bytes = *rows * sizeof(float), .output = 1},
      {.name = "ex->argmax", .host = x->argmax, .bytes = *rows * sizeof(int32_t), .output = 1},
      {.name = "ex->correct", .host = x->correct, .bytes = sizeof(uint64_t), .output = 1, .element = sizeof(uint64_t)},
      {.name = "ex->bias_grad", .host = x->bias_grad, .bytes = call->c * sizeof(float), .output = 1}};
  CHECK(clxent_check_regions(ctx, r, (int)(sizeof r / sizeof r[0])));
  CHECK(clxent_check_opts(ctx, o, call->family, call->c, weight_sum)); /* after the overlaps: see validate.c */
  return clxent_check_upstream(ctx, o, upstream);
}

/* What a call computes of a larger batch (clxent_softmax_xent_part): that batch's MEAN statistics
 * in place of the call's own, and where J's divisor goes. */
typedef struct batch_part {
  double weight;    /* Σ w_{y_i} over the batch's counted rows, summed in row order */
  uint64_t counted; /* the batch's counted rows */
  float *divisor;   /* receives J's divisor, or NULL */
} batch_part;

static clxent_status check_part(clxent_ctx *ctx, const clxent_opts *o, const batch_part *part, size_t counted) {
  if (!part || o->reduction != CLXENT_MEAN || o->mean_denominator > 0) return CLXENT_OK; /* the statistics unused */
  if (o->class_weight && !(isfinite(part->weight) && part->weight >= 0.0))
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "batch_weight = %g must be finite and >= 0", part->weight);
  if (part->counted < counted)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "batch_counted = %llu is below the %zu rows this call counts",
                       (unsigned long long)part->counted, counted);
  return CLXENT_OK;
}

/* The scales of the batch's reduction (plan.c), the class weights rescaled by a power of two when
 * its divisor is far from 1: *scaled receives the copy (the caller frees it) or NULL. */
static clxent_status batch_params(clxent_ctx *ctx, clxent_opts *o, size_t c, double weighted, size_t counted,
                                  float weight_sum, float **scaled, clxent_params *p, float *divisor) {
  int shift = 0;
  *scaled = NULL;
  /* a divisor far from 1: see plan.c (a caller's mean_denominator is the divisor as given) */
  if (o->class_weight && o->reduction == CLXENT_MEAN && o->mean_denominator == 0.0)
    CHECK(clxent_scaled_weights(ctx, o->class_weight, c, weighted, scaled, &weight_sum, &shift));
  if (*scaled) o->class_weight = *scaled, weighted = ldexp(weighted, shift);
  *p = clxent_loss_params(o, weighted, counted, weight_sum, divisor);
  return CLXENT_OK;
}

/* A part of no rows: its options checked, and the batch's divisor, what a process holding none of
 * the batch's rows needs to finish J as the others do. */
static clxent_status empty_part(clxent_ctx *ctx, size_t c, const clxent_opts *opts, const clxent_ex *ex,
                                const batch_part *part) {
  clxent_opts o;
  clxent_ex x;
  float weight_sum, *scaled = NULL, divisor;
  clxent_params p;
  CHECK(clxent_check_shape(ctx, 1, c, "classes"));
  CHECK(clxent_read_opts(ctx, opts, &o));
  CHECK(clxent_read_ex(ctx, ex, &x));
  CHECK(clxent_check_dtype(ctx, x.dtype));
  CHECK(clxent_check_opts(ctx, &o, FAMILY_SOFTMAX, c, &weight_sum));
  CHECK(clxent_check_upstream(ctx, &o, clxent_upstream_count(&o, 0)));
  CHECK(check_part(ctx, &o, part, 0));
  const double weighted = o.class_weight ? part->weight : (double)part->counted;
  CHECK(batch_params(ctx, &o, c, weighted, part->counted, weight_sum, &scaled, &p, &divisor));
  free(scaled);
  if (part->divisor) *part->divisor = divisor;
  return CLXENT_OK;
}

/* The hard-label softmax loss: a whole batch (part NULL), or some rows of one (part). */
static clxent_status softmax_hard(clxent_ctx *ctx, size_t n, size_t c, const void *logits, const int32_t *labels,
                                  const clxent_opts *opts, const clxent_ex *ex, const batch_part *part, float *loss,
                                  void *grad) {
  CHECK(clxent_check_ctx(ctx));
  if (part && n == 0) return empty_part(ctx, c, opts, ex, part);
  const loss_call call = {FAMILY_SOFTMAX, n, c, "logits", "labels", logits, NULL, labels, opts, ex, loss, grad,
                          part != NULL};
  clxent_opts o;
  clxent_ex x;
  float weight_sum;
  size_t counted;
  double weighted;
  float *scaled = NULL;
  size_t rows = 0;
  CHECK(check_call(ctx, &call, &o, &x, &weight_sum, &rows));
  CHECK(clxent_check_labels(ctx, labels, rows, c, x.inner, o.ignore_index, o.class_weight, &counted, &weighted));
  CHECK(check_part(ctx, &o, part, counted));
  if (part) /* the batch's statistics for the call's own: the scales of one call on the whole batch */
    counted = (size_t)part->counted, weighted = o.class_weight ? part->weight : (double)part->counted;
  /* ex->correct without ex->argmax: the device's argmax goes to scratch of the call's own */
  int32_t *argmax = x.argmax, *own_argmax = NULL;
  if (x.correct && !argmax) {
    argmax = own_argmax = malloc(rows * sizeof(int32_t));
    if (!argmax)
      return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "malloc of %zu bytes for the argmax behind ex->correct failed",
                         rows * sizeof(int32_t));
  }
  /* a part writes each row's term of the batch's Σ loss_i (NONE's row losses, z-loss terms scaled
   * by the batch's z_loss_row); its MEAN and SUM upstream gradient g is in the scales */
  clxent_plan plan = {.kernel = KERNEL_SOFTMAX_HARD, .dtype = x.dtype, .n = rows, .c = c, .inner = x.inner,
                      .in = logits, .labels = labels, .ignore_index = o.ignore_index, .grad = grad, .lse = x.lse,
                      .argmax = argmax, .bias_grad = x.bias_grad, .loss = loss,
                      .row_scale = clxent_row_scale(&o, grad), .reduction = part ? CLXENT_NONE : o.reduction};
  clxent_status st = batch_params(ctx, &o, c, weighted, counted, weight_sum, &scaled, &plan.params, &plan.divisor);
  plan.weight = o.class_weight;
  if (st == CLXENT_OK) st = execute(ctx, &plan);
  if (st == CLXENT_OK && x.correct) { /* the rows counted whose argmax is their label */
    uint64_t hits = 0;
    for (size_t i = 0; i < rows; ++i) hits += labels[i] != o.ignore_index && argmax[i] == labels[i];
    *x.correct = hits;
  }
  if (st == CLXENT_OK && part && part->divisor) *part->divisor = plan.divisor;
  free(own_argmax);
  free(scaled);
  return st;
}

clxent_status clxent_softmax_xent_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits, const int32_t *labels,
                                     const clxent_opts *opts, const clxent_ex *ex, float *loss, void *grad) {
  return softmax_hard(ctx, n, c, logits, labels, opts, ex, NULL, loss, grad);
}

clxent_status clxent_softmax_xent_part(clxent_ctx *ctx, size_t n, size_t c, const void *logits, const int32_t *labels,
                                       const clxent_opts *opts, const clxent_ex *ex, double batch_weight,
                                       uint64_t batch_counted, float *row_loss, void *grad, float *divisor) {
  const batch_part part = {batch_weight, batch_counted, divisor};
  return softmax_hard(ctx, n, c, logits, labels, opts, ex, &part, row_loss, grad);
}

clxent_status clxent_softmax_xent_soft_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                          const void *targets, const clxent_opts *opts, const clxent_ex *ex,
                                          float *loss, void *grad) {
  CHECK(clxent_check_ctx(ctx));
  const loss_call call = {FAMILY_SOFTMAX, n, c, "logits", "targets", logits, targets, NULL, opts, ex, loss, grad, 0};
  clxent_opts o;
  clxent_ex x;
  float weight_sum;
  size_t rows = 0;
  CHECK(check_call(ctx, &call, &o, &x, &weight_sum, &rows));
  clxent_plan plan = {.kernel = KERNEL_SOFTMAX_SOFT, .dtype = x.dtype, .n = rows, .c = c, .inner = x.inner,
                      .in = logits, .aux = targets,
                      .weight = o.class_weight, .grad = grad, .lse = x.lse, .argmax = x.argmax,
                      .bias_grad = x.bias_grad, .loss = loss,
                      .row_scale = clxent_row_scale(&o, grad), .reduction = o.reduction};
  /* soft targets: MEAN divides by the rows, weights or not (PyTorch; n·S for (N, C, d1, ...)) */
  plan.params = clxent_loss_params(&o, (double)rows, rows, weight_sum, &plan.divisor);
  return execute(ctx, &plan);
}

/* The two elementwise binary losses share everything but their kernel and input check. */
static clxent_status binary_loss(clxent_ctx *ctx, clxent_kernel_id kernel, const char *in_name, size_t n, size_t c,
                                 const void *in, const void *targets, const clxent_opts *opts, const clxent_ex *ex,
                                 float *loss, void *grad) {
  CHECK(clxent_check_ctx(ctx));
  const loss_call call = {FAMILY_BINARY, n, c, in_name, "targets", in, targets, NULL, opts, ex, loss, grad, 0};
  clxent_opts o;
  clxent_ex x;
  float weight_sum;
  size_t rows = 0;
  CHECK(check_call(ctx, &call, &o, &x, &weight_sum, &rows));
  if (kernel == KERNEL_BCE) CHECK(clxent_check_probs(ctx, in, n * c, x.dtype, in_name));
  clxent_plan plan = {.kernel = kernel, .dtype = x.dtype, .n = n, .c = c, .elementwise = 1, .in = in, .aux = targets,
                      .weight = o.pos_weight, .grad = grad, .bias_grad = x.bias_grad, .loss = loss,
                      .row_scale = clxent_row_scale(&o, grad), .reduction = o.reduction};
  plan.params = clxent_loss_params(&o, (double)(n * c), n * c, weight_sum, &plan.divisor);
  return execute(ctx, &plan);
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

static clxent_status row_information(clxent_ctx *ctx, int mode, size_t n, size_t c, const float *p, const float *q,
                                     float *out) {
  CHECK(clxent_check_ctx(ctx));
  CHECK(clxent_check_shape(ctx, n, c, "classes"));
  CHECK(clxent_check_ptr(ctx, p, "p"));
  if (mode != CLXENT_MODE_ENTROPY) CHECK(clxent_check_ptr(ctx, q, "q"));
  CHECK(clxent_check_ptr(ctx, out, "out"));
  const size_t mat = n * c * sizeof(float);
  const float *aux = mode == CLXENT_MODE_ENTROPY ? NULL : q;
  clxent_region r[] = {{.name = "p", .host = p, .bytes = mat},
                       {.name = "q", .host = aux, .bytes = mat},
                       {.name = "out", .host = out, .bytes = n * sizeof(float), .output = 1}};
  CHECK(clxent_check_regions(ctx, r, 3));
  const clxent_plan plan = {.kernel = KERNEL_ROW_INFORMATION, .dtype = CLXENT_FLOAT32, .n = n, .c = c, .in = p,
                            .aux = aux, .mode = mode, .loss = out, .reduction = CLXENT_NONE, .divisor = 1.0f};
  return execute(ctx, &plan);
}

clxent_status clxent_entropy(clxent_ctx *ctx, size_t n, size_t c, const float *p, float *out) {
  return row_information(ctx, CLXENT_MODE_ENTROPY, n, c, p, NULL, out);
}

clxent_status clxent_cross_entropy(clxent_ctx *ctx, size_t n, size_t c, const float *p, const float *q, float *out) {
  return row_information(ctx, CLXENT_MODE_CROSS_ENTROPY, n, c, p, q, out);
}

clxent_status clxent_kl_div(clxent_ctx *ctx, size_t n, size_t c, const float *p, const float *q, float *out) {
  return row_information(ctx, CLXENT_MODE_KL, n, c, p, q, out);
}
