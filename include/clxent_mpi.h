/**
 * @file clxent_mpi.h
 * @brief clxent over MPI: one cross-entropy computed by several processes (optional component).
 *
 * A separate library, libclxent_mpi, built when CMake finds MPI (-DCLXENT_MPI=AUTO|ON|OFF); the
 * core library never depends on MPI. Link clxent::clxent_mpi (CMake) or `pkg-config clxent-mpi`.
 *
 * Every function here is collective over the caller's communicator: every rank calls it, with its
 * own clxent context (its own device), the same c and the same options. A call rejected on any
 * rank (a bad label, an option out of range, options or sizes that differ between ranks) returns
 * the same status on every rank and writes nothing anywhere: the ranks agree on validity with one
 * small collective before any output is written. clxent_mpi_last_error() names the rank that
 * failed and why. A host allocation failing on one rank is agreed on in a fixed-size collective
 * too: every rank returns CLXENT_ERR_OUT_OF_MEMORY, none waits alone, nothing aborts. After
 * CLXENT_ERR_OUT_OF_MEMORY or CLXENT_ERR_OPENCL on any rank (which every rank then returns) the
 * outputs are unspecified, as for the one-process calls (nothing is written when the agreement
 * itself or the weight sharing could not be had).
 */
#ifndef CLXENT_MPI_H
#define CLXENT_MPI_H

#include <mpi.h>

#include "clxent.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @def CLXENT_MPI_API
 * Marks the functions libclxent_mpi exports. */
#if defined(__GNUC__) && defined(CLXENT_MPI_BUILDING_SHARED)
#define CLXENT_MPI_API __attribute__((visibility("default")))
#else
#define CLXENT_MPI_API
#endif

/**
 * @brief Data-parallel clxent_softmax_xent(): the global batch is the concatenation of every rank's
 * rows, in rank order.
 *
 * Each rank passes its own n_local rows (0 is allowed: such a rank passes NULL arrays and still
 * takes part). The loss is that of the whole global batch — MEAN divides by the global number of
 * counted rows (or the global Σ w_{y_i}) — and every rank gets it (1 value; NONE: this rank's
 * n_local values). The gradient [n_local][c] carries the global scale. The result has the bits of
 * one process calling clxent_softmax_xent() on the concatenated batch (on a device of the same
 * kind), for any number of ranks and any split of the rows: the per-row losses are summed in the
 * library's own fixed reduction order over the global batch, with one small MPI_Allgatherv of the
 * few per-row values at each rank's block boundaries. This holds for every option (class
 * weights with z-loss under MEAN included): each rank's rows are computed with the global
 * batch's divisor and counted rows (clxent_softmax_xent_part), as one process computes them.
 *
 * opts: as for clxent_softmax_xent(), the same on every rank (class_weight: the same c values
 * everywhere; grad_output: MEAN and SUM one value g, the same on every rank; NONE n_local values).
 * @return CLXENT_OK or a status of @ref losses, the same on every rank.
 */
CLXENT_MPI_API clxent_status clxent_mpi_softmax_xent(clxent_ctx *ctx, MPI_Comm comm, size_t n_local, size_t c,
                                                     const float *logits, const int32_t *labels,
                                                     const clxent_opts *opts, float *loss, float *grad);

/**
 * @brief clxent_mpi_softmax_xent() on arrays of ex->dtype (float32 or a 16-bit type), with ex->lse.
 * ex->bias_grad is not supported here (CLXENT_ERR_INVALID_ARG on every rank).
 * @return as clxent_mpi_softmax_xent().
 */
CLXENT_MPI_API clxent_status clxent_mpi_softmax_xent_ex(clxent_ctx *ctx, MPI_Comm comm, size_t n_local, size_t c,
                                                        const void *logits, const int32_t *labels,
                                                        const clxent_opts *opts, const clxent_ex *ex, float *loss,
                                                        void *grad);

/**
 * @brief Vocabulary-parallel clxent_softmax_xent(): every rank holds all n rows, but only the
 * columns [c_offset, c_offset + c_local) of c_total (Megatron-LM's vocab_parallel_cross_entropy).
 *
 * The ranks' slices, in rank order, must tile [0, c_total) (widths may differ, c_local ≥ 1).
 * labels are global class indices, the same n values on every rank; opts->class_weight, if set,
 * holds this rank's c_local weights; opts->grad_output: MEAN/SUM one value, NONE n values, the
 * same on every rank. Per row the ranks agree on the maximum, Σ e^(u-m), the label's logit and
 * the label smoothing term through one MPI_Allgather of 5 floats per row, combined in rank order
 * on every rank; then each rank writes the gradient of its own columns.
 * @param loss  MEAN, SUM: 1 value; NONE: n values; the same on every rank.
 * @param grad  [n][c_local], NULL, or == logits.
 * The results equal one process's clxent_softmax_xent() on the full rows within float32
 * rounding, are identical on every rank and run to run for a fixed number of ranks. Both passes
 * over the logits run on ctx's device (clxent_softmax_slice_stats / _grad, docs/MPI.md); ctx
 * must be a one-device context.
 * @return CLXENT_OK or a status of @ref losses, the same on every rank; mismatched n, c_total,
 *   labels or options, or slices that do not tile [0, c_total): CLXENT_ERR_INVALID_ARG everywhere.
 */
CLXENT_MPI_API clxent_status clxent_mpi_softmax_xent_vocab(clxent_ctx *ctx, MPI_Comm comm, size_t n, size_t c_local,
                                                           size_t c_offset, size_t c_total, const float *logits,
                                                           const int32_t *labels, const clxent_opts *opts,
                                                           float *loss, float *grad);

/**
 * @brief clxent_mpi_softmax_xent_vocab() on logits and gradient of ex->dtype (float32 or a 16-bit
 * type, float32 math), with ex->lse ([n] floats: each row's global log-sum-exp, the same on every
 * rank). ex->bias_grad, argmax, correct and inner are not supported (CLXENT_ERR_INVALID_ARG on
 * every rank).
 * @return as clxent_mpi_softmax_xent_vocab().
 */
CLXENT_MPI_API clxent_status clxent_mpi_softmax_xent_vocab_ex(clxent_ctx *ctx, MPI_Comm comm, size_t n,
                                                              size_t c_local, size_t c_offset, size_t c_total,
                                                              const void *logits, const int32_t *labels,
                                                              const clxent_opts *opts, const clxent_ex *ex,
                                                              float *loss, void *grad);

/**
 * @brief The detail of the calling thread's last failed clxent_mpi_* call ("" if none): which
 * rank failed and its message. Static per thread; valid until the thread's next call.
 */
CLXENT_MPI_API const char *clxent_mpi_last_error(void);

/** Where the calling thread's last clxent_mpi_* call spent its time (for benchmarks). */
typedef struct clxent_mpi_stats {
  double total_s;          /**< the whole call, seconds */
  double comm_s;           /**< inside its MPI collectives (waiting for other ranks included) */
  uint64_t bytes_sent;     /**< by this rank, over all its collectives */
  uint64_t bytes_received; /**< by this rank */
  unsigned collectives;    /**< how many collectives the call made */
} clxent_mpi_stats;

/** @brief The calling thread's last call's clxent_mpi_stats (all 0 before the first call). */
CLXENT_MPI_API clxent_mpi_stats clxent_mpi_last_stats(void);

#ifdef __cplusplus
}
#endif

#endif /* CLXENT_MPI_H */
