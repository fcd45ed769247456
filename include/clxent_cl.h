/**
 * @file clxent_cl.h
 * @brief OpenCL interop: clxent on the caller's queue, over data already in device buffers.
 *
 * For programs that keep their logits on the device: the loss runs on the caller's in-order
 * command queue, reads and writes the caller's cl_mem buffers, and returns at once. Every command
 * waits for `wait`, and `done` (if not NULL) receives an event that completes when every output
 * is written; the caller releases it. Nothing blocks the host, except the copies of the host
 * arrays of opts (class_weight / pos_weight, and grad_output), which the call takes at once (the
 * caller may reuse them when the call returns).
 *
 * opts->mean_denominator D, when given, is the MEAN divisor of every loss here too: hard labels then
 * take their scales from the host, not from the label counts made on the device (which still
 * count ex->bad_labels).
 *
 * Labels are not read on the host: a label outside [0, c) that is not ignore_index is found on
 * the device. That row's loss, lse and gradient are NaN (so a MEAN or SUM loss is NaN too), it is
 * left out of the MEAN divisor, and ex->bad_labels (if given) receives the number of such rows.
 * Read it after `done`. Probabilities of clxent_bce_mem are not range-checked either: a value
 * outside [0, 1] gives NaN.
 *
 * Arguments are checked before anything is enqueued, as in clxent.h: a buffer smaller than the
 * shape needs (CL_MEM_SIZE), a buffer of another context, grad that is neither NULL nor logits
 * but overlaps it — CLXENT_ERR_INVALID_ARG, nothing enqueued, clxent_last_error names it.
 */
#ifndef CLXENT_CL_H
#define CLXENT_CL_H

#ifndef CL_TARGET_OPENCL_VERSION
/** The OpenCL API version the header is written against (1.2), unless the program set its own. */
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "clxent.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief Creates a context on the caller's command queue (its context and device).
 * @param ctx    receives the context; NULL on failure.
 * @param queue  an in-order queue; retained by the context and released by clxent_destroy(), as
 *               is its OpenCL context.
 * @return CLXENT_OK; CLXENT_ERR_INVALID_ARG (NULL, or an out-of-order queue); CLXENT_ERR_BUILD;
 *   CLXENT_ERR_OUT_OF_MEMORY; CLXENT_ERR_OPENCL. On failure clxent_last_error(NULL) says why.
 */
CLXENT_API clxent_status clxent_create_from_queue(clxent_ctx **ctx, cl_command_queue queue);

/**
 * @brief The command queue ctx enqueues on, for making buffers in its OpenCL context.
 *
 * A context from clxent_create() owns its queue; this lends it (not retained: it lives as long as
 * ctx), so that a program can create the cl_mem buffers of the _mem calls in the same OpenCL
 * context (clGetCommandQueueInfo(CL_QUEUE_CONTEXT)) and order its own commands with clxent's.
 * @param ctx  the context.
 * @return the queue; NULL for NULL or for a context over several devices (which has no one queue).
 */
CLXENT_API cl_command_queue clxent_queue(const clxent_ctx *ctx);

/** The device-resident calls' storage type and extra outputs. Start from CLXENT_MEM_EX_INIT or
 * clxent_mem_ex_default(). The _mem calls take the [n][c] layout only: PyTorch's (N, C, d1, ...)
 * layout (clxent_ex::inner) is a host-pointer feature. */
typedef struct clxent_mem_ex {
  size_t size;        /**< sizeof(clxent_mem_ex) as the caller compiled it */
  clxent_dtype dtype; /**< of logits / probabilities, dense targets and grad */
  cl_mem lse;         /**< softmax: n floats receive each row's log-sum-exp, or NULL */
  cl_mem bias_grad;   /**< c floats receive Σ_i grad[i][j] (fixed order); needs grad. Or NULL */
  cl_mem bad_labels;  /**< hard labels: one cl_uint receives the number of bad labels. Or NULL */
} clxent_mem_ex;

/** Initializer of a clxent_mem_ex: CLXENT_FLOAT32, no extra outputs. */
#define CLXENT_MEM_EX_INIT {sizeof(clxent_mem_ex), CLXENT_FLOAT32, NULL, NULL, NULL}

/** @brief The default extras. Inline, so that `size` is the caller's sizeof.
 * @return CLXENT_MEM_EX_INIT. */
static inline clxent_mem_ex clxent_mem_ex_default(void) {
  const clxent_mem_ex x = CLXENT_MEM_EX_INIT;
  return x;
}

/**
 * @defgroup mem_losses The losses on device buffers
 * The losses of clxent.h over cl_mem buffers, enqueued on the context's queue; shapes, formulas
 * and options as in clxent_softmax_xent_ex() and friends. Each returns CLXENT_OK once everything
 * is enqueued; CLXENT_ERR_INVALID_ARG for bad arguments, as in clxent.h, and also a buffer smaller
 * than the shape needs, of another OpenCL context, or overlapping another (nothing enqueued);
 * CLXENT_ERR_OUT_OF_MEMORY or CLXENT_ERR_OPENCL if enqueueing failed.
 * @{
 */

/**
 * @brief clxent_softmax_xent_ex() on device buffers.
 * @param logits  n×c values of ex->dtype.
 * @param labels  n cl_int; one outside [0, c) that is not ignore_index makes its row NaN and is
 *                counted in ex->bad_labels.
 * @param ctx       a one-device context (from clxent_create_from_queue(), or clxent_create() with
 *                  one device: clxent_queue() gives its queue).
 * @param n, c      rows and classes (binary forms: rows and columns).
 * @param opts      NULL = CLXENT_OPTS_INIT; its weights and grad_output are copied at once.
 * @param ex        NULL = CLXENT_MEM_EX_INIT.
 * @param loss      1 float (MEAN, SUM) or the per-row (binary: per-value) losses (NONE), or NULL
 *                  if grad is not.
 * @param grad      n×c values of ex->dtype, NULL, or the first input buffer itself (in place).
 * @param num_wait  how many events in wait.
 * @param wait      events every command waits for (NULL with num_wait 0).
 * @param done      receives an event for the call's completion (the caller releases it), or NULL.
 * @return a status of @ref mem_losses.
 */
CLXENT_API clxent_status clxent_softmax_xent_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits, cl_mem labels,
                                                 const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss,
                                                 cl_mem grad, cl_uint num_wait, const cl_event *wait,
                                                 cl_event *done);
/**
 * @brief clxent_softmax_xent_soft_ex() on device buffers.
 * @param logits   n×c values of ex->dtype.
 * @param targets  n×c values of ex->dtype.
 * @param ctx       a one-device context (from clxent_create_from_queue(), or clxent_create() with
 *                  one device: clxent_queue() gives its queue).
 * @param n, c      rows and classes (binary forms: rows and columns).
 * @param opts      NULL = CLXENT_OPTS_INIT; its weights and grad_output are copied at once.
 * @param ex        NULL = CLXENT_MEM_EX_INIT.
 * @param loss      1 float (MEAN, SUM) or the per-row (binary: per-value) losses (NONE), or NULL
 *                  if grad is not.
 * @param grad      n×c values of ex->dtype, NULL, or the first input buffer itself (in place).
 * @param num_wait  how many events in wait.
 * @param wait      events every command waits for (NULL with num_wait 0).
 * @param done      receives an event for the call's completion (the caller releases it), or NULL.
 * @return a status of @ref mem_losses.
 */
CLXENT_API clxent_status clxent_softmax_xent_soft_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits,
                                                      cl_mem targets, const clxent_opts *opts,
                                                      const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                                                      cl_uint num_wait, const cl_event *wait, cl_event *done);
/**
 * @brief clxent_sigmoid_xent_ex() on device buffers.
 * @param logits   n×c values of ex->dtype.
 * @param targets  n×c values of ex->dtype.
 * @param ctx       a one-device context (from clxent_create_from_queue(), or clxent_create() with
 *                  one device: clxent_queue() gives its queue).
 * @param n, c      rows and classes (binary forms: rows and columns).
 * @param opts      NULL = CLXENT_OPTS_INIT; its weights and grad_output are copied at once.
 * @param ex        NULL = CLXENT_MEM_EX_INIT.
 * @param loss      1 float (MEAN, SUM) or the per-row (binary: per-value) losses (NONE), or NULL
 *                  if grad is not.
 * @param grad      n×c values of ex->dtype, NULL, or the first input buffer itself (in place).
 * @param num_wait  how many events in wait.
 * @param wait      events every command waits for (NULL with num_wait 0).
 * @param done      receives an event for the call's completion (the caller releases it), or NULL.
 * @return a status of @ref mem_losses.
 */
CLXENT_API clxent_status clxent_sigmoid_xent_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem logits, cl_mem targets,
                                                 const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss,
                                                 cl_mem grad, cl_uint num_wait, const cl_event *wait,
                                                 cl_event *done);
/**
 * @brief clxent_bce_ex() on device buffers. Probabilities are not range-checked: one outside
 * [0, 1] gives NaN.
 * @param probs    n×c values of ex->dtype.
 * @param targets  n×c values of ex->dtype.
 * @param ctx       a one-device context (from clxent_create_from_queue(), or clxent_create() with
 *                  one device: clxent_queue() gives its queue).
 * @param n, c      rows and classes (binary forms: rows and columns).
 * @param opts      NULL = CLXENT_OPTS_INIT; its weights and grad_output are copied at once.
 * @param ex        NULL = CLXENT_MEM_EX_INIT.
 * @param loss      1 float (MEAN, SUM) or the per-row (binary: per-value) losses (NONE), or NULL
 *                  if grad is not.
 * @param grad      n×c values of ex->dtype, NULL, or the first input buffer itself (in place).
 * @param num_wait  how many events in wait.
 * @param wait      events every command waits for (NULL with num_wait 0).
 * @param done      receives an event for the call's completion (the caller releases it), or NULL.
 * @return a status of @ref mem_losses.
 */
CLXENT_API clxent_status clxent_bce_mem(clxent_ctx *ctx, size_t n, size_t c, cl_mem probs, cl_mem targets,
                                        const clxent_opts *opts, const clxent_mem_ex *ex, cl_mem loss, cl_mem grad,
                                        cl_uint num_wait, const cl_event *wait, cl_event *done);
/**
 * @brief clxent_linear_xent_ex() on device buffers (since 1.1).
 * hidden [n][d], weight [v][d], bias [v] (or NULL) and the gradients in ex->dtype; labels n cl_int
 * (one outside [0, v) that is not ignore_index makes its row's loss, lse and gradients NaN and is
 * counted in ex->bad_labels); ex->lse n floats or NULL; ex->bias_grad does not apply (it is
 * grad_bias). Scratch as in clxent_linear_xent_ex(), from the context's buffers.
 * @param ctx       a one-device context.
 * @param n, d, v   rows, hidden size, classes.
 * @param hidden, weight, bias, labels  the inputs (bias may be NULL).
 * @param opts      NULL = CLXENT_OPTS_INIT; its weights are copied at once.
 * @param ex        NULL = CLXENT_MEM_EX_INIT.
 * @param loss      1 float (MEAN, SUM) or n (NONE), or NULL.
 * @param grad_hidden, grad_weight, grad_bias  n×d, v×d, v values of ex->dtype, or NULL.
 * @param num_wait  how many events in wait.
 * @param wait      events every command waits for (NULL with num_wait 0).
 * @param done      receives an event for the call's completion (the caller releases it), or NULL.
 * @return a status of @ref mem_losses.
 */
CLXENT_API clxent_status clxent_linear_xent_mem(clxent_ctx *ctx, size_t n, size_t d, size_t v, cl_mem hidden,
                                                cl_mem weight, cl_mem bias, cl_mem labels, const clxent_opts *opts,
                                                const clxent_mem_ex *ex, cl_mem loss, cl_mem grad_hidden,
                                                cl_mem grad_weight, cl_mem grad_bias, cl_uint num_wait,
                                                const cl_event *wait, cl_event *done);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* CLXENT_CL_H */
