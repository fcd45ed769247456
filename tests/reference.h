/* The float64 reference of every clxent function: the one that the tests, the fuzz harness and its
 * corpus replay compare the library with. It follows the formulas of include/clxent.h, README.md
 * ("The loss toolbox") and the header comment of kernels/softmax_xent.cl term by term, in double
 * precision, and shares no code with the library. No test framework: the fuzz harness links it.
 *
 * Softmax losses (u = softcap(z), lse_i = ln Σ_j e^{u_ij}, a_ij = e^{u_ij - lse_i}):
 *   τ_ij     = w_j · ((1-ε) t_ij + ε/c)          t one-hot at y_i (hard) or the dense targets (soft)
 *   loss_i   = Σ_j τ_ij (lse_i - u_ij) + λ lse_i²  (terms with τ = 0 add 0, also where u = -inf)
 *   dJ/dz_ij = [S (a_ij Σ_k τ_ik - τ_ij) + 2 λ S_z lse_i a_ij] · du_ij/dz_ij
 * Rows whose label is ignore_index have loss 0, gradient 0 and do not count (lse is still given).
 * MEAN divides the cross-entropy terms by D and the z-loss terms by the rows counted (PyTorch,
 * Liger): D = Σ w_{y_i} over the rows counted for hard labels, n for soft targets; S = 1/D and
 * S_z = 1/counted (each 0 when its divisor is 0). SUM and NONE: S = S_z = 1. A zero D gives the
 * loss x/0 (NaN for 0/0, else ±inf) and no cross-entropy gradient.
 *
 * Binary losses over n rows × c columns (c = 1: the float32 entries), p_j = pos_weight[j]:
 *   sigmoid: loss = p·y·softplus(-z) + (1-y)·softplus(z),  dJ/dz = S·(a (p y + 1 - y) - p y)
 *   bce:     loss = -[p·y·max(ln a, -100) + (1-y)·max(ln(1-a), -100)],
 *            dJ/da = S·(a (1-y) - p y (1-a)) / max(a (1-a), 1e-12);  a = NaN gives NaN
 * MEAN divides by n·c (S = 1/(n·c)); SUM and NONE: S = 1.
 *
 * opts->mean_denominator D > 0 (MEAN): every term of the loss (z-loss included) and of the gradient
 * divides by D instead (S = S_z = 1/D). opts->grad_output: the gradient (and bias gradient) is
 * multiplied by g (MEAN, SUM: grad_output[0]) or by g_i of its own loss value (NONE: [n] softmax
 * rows, [n·c] binary values); losses are not scaled.
 */
#ifndef CLXENT_TEST_REFERENCE_H
#define CLXENT_TEST_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "clxent.h"

/* What a reference call computes. The caller points the arrays it wants at storage (NULL: not
 * computed); the call fills them and the scalars. */
typedef struct ref_out {
  double loss;   /* the loss the call returns for MEAN and SUM (for NONE: Σ of rows, as SUM) */
  double *rows;  /* [n] per-row losses (softmax), [n·c] per-value losses (binary); or NULL */
  double *grad;  /* [n·c] the gradient of the reduction's loss; or NULL */
  double *lse;   /* [n] log-sum-exp of each row after softcap (softmax only); or NULL */
  double *bias;  /* [c] Σ_i grad_ij, the bias gradient (needs grad); or NULL */
  double gscale; /* the largest magnitude of a term of any gradient element: what a float32 sum of
                    those terms errs relative to (a tolerance scale) */
} ref_out;

/* Hard labels: labels[i] in [0, c) or opts->ignore_index. opts NULL: clxent_opts_default().
 * Returns r->loss. */
double ref_softmax_xent(size_t n, size_t c, const float *z, const int32_t *labels, const clxent_opts *opts,
                        ref_out *r);
/* Dense targets t [n][c] (ignore_index does not apply). */
double ref_softmax_xent_soft(size_t n, size_t c, const float *z, const float *t, const clxent_opts *opts,
                             ref_out *r);
/* Binary cross-entropy from logits z [n][c], targets y [n][c]; pos_weight has c values. */
double ref_sigmoid_xent(size_t n, size_t c, const float *z, const float *y, const clxent_opts *opts, ref_out *r);
/* Binary cross-entropy from probabilities a [n][c]. */
double ref_bce(size_t n, size_t c, const float *a, const float *y, const clxent_opts *opts, ref_out *r);

/* Per row of the logits z [n][c] (raw, before any softcap), as torch.argmax: the index of the
 * first NaN if the row has one, else of the first largest value (a row of -inf only: 0). */
void ref_argmax(size_t n, size_t c, const float *z, int32_t *out);
/* Hard labels: the rows whose label is not ignore_index and equals their argmax. */
uint64_t ref_correct(size_t n, const int32_t *argmax, const int32_t *labels, int32_t ignore_index);

/* Information measures per row into out [n]: 0·ln 0 = 0, p·ln 0 = -inf for p > 0. */
enum ref_information_kind { REF_ENTROPY = 0, REF_CROSS_ENTROPY = 1, REF_KL_DIV = 2 };
void ref_information(enum ref_information_kind kind, size_t n, size_t c, const float *p, const float *q, double *out);

/* What a caller of clxent_softmax_slice_grad computes from the whole batch (hard labels,
 * ignore_index -100, class weights w or NULL for all 1): W = Σ_j w_j, the loss scale S (MEAN: one
 * over the counted rows' weight sum, else 1) and the z-loss scale Sz (MEAN: one over the counted
 * rows); and per row the lse as float (lse_f) and the label's weight (wy, 0 for an ignored row). */
typedef struct ref_slice_scales {
  double W;
  float S, Sz;
} ref_slice_scales;
ref_slice_scales ref_slice_batch(size_t n, size_t c, const int32_t *labels, const float *w, clxent_reduction reduction,
                                 const double *lse, float *lse_f, float *wy);

/* The statistics clxent_softmax_slice_stats gives a row over its slice [off, off + width) of the
 * row z [c_total] (hard labels, ignore_index -100, class weights w or NULL, softcap s or 0):
 * max u, Σ e^(u - max), Σ w_j (max - u_j) if smoothing (w_j = 0 skipped), and u_y and w_y where
 * the slice holds the label (else 0). */
void ref_slice_row(const float *z, size_t off, size_t width, int32_t label, const float *w, float softcap, int smoothing,
                   double want[5]);
/* The first of a row's five slice statistics outside the slice tests' tolerance, or -1. */
int ref_slice_row_mismatch(const float *got, const double want[5], size_t width);

/* The 16-bit storage formats, written independently of the library: round to nearest even,
 * NaN kept a NaN. decode/encode read and write element k of an array of type t. */
uint16_t ref_to_bf16(float f);
float ref_from_bf16(uint16_t h);
uint16_t ref_to_f16(float f);
float ref_from_f16(uint16_t h);
size_t ref_dtype_bytes(clxent_dtype t);
float ref_decode(const void *p, size_t k, clxent_dtype t);
void ref_encode(void *p, size_t k, float x, clxent_dtype t);

#endif
