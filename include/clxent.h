/**
 * @file clxent.h
 * @brief clxent — fused softmax / sigmoid cross-entropy, loss and gradient, on any OpenCL device.
 *
 * One call takes a batch of logits and labels and returns the batch loss and dL/dlogits. The work
 * runs on an OpenCL device (a GPU through its vendor driver, or the CPU through PoCL).
 *
 * Conventions for every function below:
 *   - Matrices are row-major [n][c] float arrays; sizes are size_t end to end.
 *   - Natural logarithms. 0·ln 0 = 0.
 *   - A call either succeeds (CLXENT_OK) or returns another status; a call rejected for its
 *     arguments (CLXENT_ERR_INVALID_ARG, CLXENT_ERR_LABEL_RANGE) writes no output at all.
 *   - clxent_last_error(ctx) then names the bad argument, row or OpenCL call.
 *   - Threads: a context is used by one thread at a time. Use one context per thread, or guard a
 *     shared one with your own lock. Different contexts are independent.
 */
#ifndef CLXENT_H
#define CLXENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header; clxent_version() gives the library's. The major version is the SONAME's:
 * within it, a program built against an older header keeps working. */
#define CLXENT_VERSION_MAJOR 0
#define CLXENT_VERSION_MINOR 2
#define CLXENT_VERSION_PATCH 0
#define CLXENT_VERSION_NUMBER (CLXENT_VERSION_MAJOR * 10000 + CLXENT_VERSION_MINOR * 100 + CLXENT_VERSION_PATCH)

/* The library exports only the functions below (CLXENT_API); everything else is hidden. */
#if defined(_WIN32) && defined(CLXENT_BUILDING_SHARED)
#define CLXENT_API __declspec(dllexport)
#elif defined(__GNUC__) && defined(CLXENT_BUILDING_SHARED)
#define CLXENT_API __attribute__((visibility("default")))
#else
#define CLXENT_API
#endif

/** @return CLXENT_VERSION_NUMBER of the library linked (compare with the header's to detect a mismatch). */
CLXENT_API unsigned clxent_version(void);
/** @return "MAJOR.MINOR.PATCH" of the library linked; static storage, never NULL. */
CLXENT_API const char *clxent_version_string(void);

/** Result of every call; clxent_status_str() names each value, clxent_last_error() explains it. */
typedef enum clxent_status {
  CLXENT_OK = 0,
  CLXENT_ERR_INVALID_ARG,   /* NULL pointer, zero size, unknown enum value, bad option value */
  CLXENT_ERR_LABEL_RANGE,   /* a label outside [0, classes) that is not opts.ignore_index */
  CLXENT_ERR_NO_DEVICE,     /* no OpenCL platform/device matches the request */
  CLXENT_ERR_BUILD,         /* kernels failed to compile for the device (log in clxent_last_error) */
  CLXENT_ERR_OUT_OF_MEMORY, /* host or device allocation failed */
  CLXENT_ERR_OPENCL         /* any other OpenCL failure (call and CL error name in clxent_last_error) */
} clxent_status;            /* more values may be added later; never renumber these */

/** Opaque context: one OpenCL device (or several, see clxent_create), its queues, the built kernels
 * and reusable buffers. */
typedef struct clxent_ctx clxent_ctx;

/**
 * @brief Creates a context on a device and builds (or loads from the program cache) its kernels.
 * @param ctx     receives the context; set to NULL on failure.
 * @param device  which device:
 *   - NULL: $CLXENT_DEVICE if set, else the first GPU, else the first OpenCL device of any type;
 *   - "gpu": the first GPU; "cpu": the first CPU device (PoCL, for example);
 *   - "P:D": platform index P, device index D within it (as `clxent devices` lists them);
 *   - other: the first device whose device or platform name contains it (case-insensitive);
 *   - "all", or a comma-separated list of the above ("gpu,cpu", "0:0,1:0"): several devices. A
 *     call is split by rows among them in proportion to their speed (measured here on a small
 *     batch, then refined after every call from each device's time; CLXENT_SPLIT="w0,w1,..."
 *     fixes the shares instead), each device working on its own thread. Split points are
 *     multiples of 64 rows, and the partial sums are reduced in batch order on the first device:
 *     devices of one kind give exactly the bits of a one-device context, at any split. Devices of
 *     different kinds differ in the last bits of per-row values, so for the same bits run after
 *     run fix the shares. "all" with one device present gives an ordinary context. Listing a
 *     device twice is CLXENT_ERR_INVALID_ARG.
 * @return CLXENT_OK; CLXENT_ERR_INVALID_ARG (ctx NULL, a bad CLXENT_* environment variable);
 *   CLXENT_ERR_NO_DEVICE (no platform, or nothing matches); CLXENT_ERR_BUILD (the kernels do not
 *   compile; the build log is in the message); CLXENT_ERR_OUT_OF_MEMORY; CLXENT_ERR_OPENCL.
 *   On failure clxent_last_error(NULL) describes why (kept per thread).
 */
CLXENT_API clxent_status clxent_create(clxent_ctx **ctx, const char *device);
/** @brief Waits for the context's work, then releases everything it holds. NULL is a no-op. */
CLXENT_API void clxent_destroy(clxent_ctx *ctx);

/** @return the name of status ("CLXENT_ERR_LABEL_RANGE: ..."); never NULL, also for unknown values. */
CLXENT_API const char *clxent_status_str(clxent_status status);
/**
 * @return the detail of the last failure on ctx ("" if none), naming the bad argument, row or
 *   OpenCL call. With ctx == NULL: the last failed clxent_create of the calling thread. Valid until
 *   the next call on ctx.
 */
CLXENT_API const char *clxent_last_error(const clxent_ctx *ctx);
/** @return the OpenCL name of the context's device ("" for NULL); with several devices, their
 *   names joined by " + ". */
CLXENT_API const char *clxent_device_name(const clxent_ctx *ctx);
/** @return how many devices ctx computes on (1, or more for "all" or a list); 0 for NULL. */
CLXENT_API size_t clxent_device_count(const clxent_ctx *ctx);
/** @return the fraction of the next batch's rows device k takes (they sum to 1; they follow the
 *   speeds measured in the calls, once those differ by 8 points, unless CLXENT_SPLIT fixed them);
 *   0 when k is out of range. */
CLXENT_API double clxent_device_share(const clxent_ctx *ctx, size_t k);

/**
 * @brief Page-locked ("pinned") host memory for arrays passed to ctx's loss calls.
 *
 * A GPU copies pinned memory by DMA at several times the speed of ordinary (pageable) memory.
 * Arrays passed in ordinary memory go through the context's own pinned staging, which costs a
 * host memcpy each way; arrays that lie in memory from this function are transferred directly.
 * On devices that share host memory (PoCL) it is ordinary memory and costs nothing extra.
 * @return at least `bytes` bytes, aligned to 128 bytes, or NULL (clxent_last_error(ctx) says why:
 *   ctx NULL, bytes 0, or the allocation failed). Free it with clxent_host_free on the same
 *   context; clxent_destroy frees what is left.
 */
CLXENT_API void *clxent_host_alloc(clxent_ctx *ctx, size_t bytes);
/** @brief Frees memory from clxent_host_alloc(ctx, ...). NULL is a no-op.
 * @return CLXENT_OK; CLXENT_ERR_INVALID_ARG if ptr did not come from clxent_host_alloc on ctx. */
CLXENT_API clxent_status clxent_host_free(clxent_ctx *ctx, void *ptr);

/** How per-row losses become the result. */
typedef enum clxent_reduction {
  CLXENT_MEAN = 0, /* J = Σ_i loss_i / (number of rows counted) */
  CLXENT_SUM = 1,  /* J = Σ_i loss_i */
  CLXENT_NONE = 2  /* loss_i per row; the gradient is that of Σ_i loss_i */
} clxent_reduction;

/** Options of a loss call. Start from clxent_opts_default() and set what you need; every option is
 * validated (NaN, infinity or a value out of range is CLXENT_ERR_INVALID_ARG, nothing written),
 * and an option set on a loss it does not apply to is rejected rather than ignored. */
typedef struct clxent_opts {
  clxent_reduction reduction;
  int32_t ignore_index; /* hard labels: rows whose label equals this have loss 0, gradient 0 and do
                           not count (any value; -100 by default, as in PyTorch) */
  /* Softmax losses (clxent_softmax_xent*): */
  const float *class_weight; /* [c] w_j ≥ 0 and finite, or NULL (all 1). Hard labels: loss_i is
                                scaled by w_{y_i}, MEAN divides by Σ w_{y_i} over the rows counted.
                                Soft targets: each class's term is scaled by w_j, MEAN divides by n.
                                (PyTorch's CrossEntropyLoss(weight=...)) */
  float label_smoothing;     /* ε ∈ [0, 1): the target becomes (1-ε)·target + ε/c, as in PyTorch
                                (hard labels: (1-ε)·onehot(y) + ε/c, weighted by w_j per class) */
  float z_loss;              /* λ ≥ 0: adds λ·lse_i² to loss_i (PaLM; Liger's lse_square_scale),
                                gradient 2λ·lse_i·a_ij. Not class-weighted; MEAN divides it by
                                the number of rows counted */
  float softcap;             /* s ≥ 0; s > 0 replaces each logit z by s·tanh(z/s) before the
                                softmax (Gemma 2), with the chain rule in the gradient; z = -inf
                                stays -inf (a mask). 0 = off */
  /* Binary losses (clxent_sigmoid_xent*, clxent_bce*): */
  const float *pos_weight;   /* [c] p_j ≥ 0 and finite per column, or NULL (all 1): loss =
                                -[p·y ln a + (1-y) ln(1-a)] (BCEWithLogitsLoss's pos_weight) */
} clxent_opts;

/** @return CLXENT_MEAN, ignore_index = -100 (PyTorch's default), no weights, ε = λ = s = 0. */
CLXENT_API clxent_opts clxent_opts_default(void);

/** Storage type of the dense arrays of the _ex entries (logits or probabilities, dense targets and
 * the gradient, all of the same type); math is float32 for all. Losses, lse, weights and the bias
 * gradient stay float32. */
typedef enum clxent_dtype {
  CLXENT_FLOAT32 = 0,
  CLXENT_FLOAT16 = 1, /* IEEE binary16; rounded to nearest even */
  CLXENT_BFLOAT16 = 2 /* the high 16 bits of a float32 (uint16_t in C); rounded to nearest even */
} clxent_dtype;

/** The _ex entries' storage type and extra outputs. Start from clxent_ex_default(). */
typedef struct clxent_ex {
  clxent_dtype dtype; /* of logits / probabilities, dense targets and grad */
  float *lse;         /* softmax losses: [n] receives lse_i = ln Σ_j e^{u_ij} (after softcap), or NULL */
  float *bias_grad;   /* [c] receives Σ_i grad_ij, the gradient of a bias added to the logits, summed in
                         a fixed order (bit-identical run to run); needs grad. Or NULL */
} clxent_ex;

/** @return CLXENT_FLOAT32, no extra outputs. */
CLXENT_API clxent_ex clxent_ex_default(void);

/*
 * Every loss function below:
 * @return CLXENT_OK;
 *   CLXENT_ERR_INVALID_ARG: ctx or an input NULL, n or c 0, n·c overflowing size_t, loss and grad
 *     both NULL, an output overlapping an input (grad == the first input exactly is allowed), an
 *     option out of range or NaN/inf, or set on a loss it does not apply to — nothing written;
 *   CLXENT_ERR_LABEL_RANGE (hard labels): a label outside [0, c) that is not ignore_index — checked
 *     before anything runs, the message names the first bad row, nothing written;
 *   CLXENT_ERR_OUT_OF_MEMORY: a device buffer could not be had (or one row exceeds a block);
 *   CLXENT_ERR_OPENCL: an OpenCL call failed (named in clxent_last_error). After these two the
 *     outputs are unspecified; the context stays usable.
 */

/**
 * @brief Multiclass cross-entropy with class-index labels, fused with softmax and the gradient.
 *
 * a = softmax(z_i), loss_i = -ln a_{i,y_i} = lse(z_i) - z_{i,y_i}, dL/dz_{i,j} = scale · (a_{i,j} - [j == y_i]).
 * MEAN divides by the number of rows not ignored (all ignored: loss NaN, gradient 0, as in
 * PyTorch); the gradient carries the reduction's scale (1/count for MEAN, 1 otherwise).
 * @param ctx     the context.
 * @param n, c    rows and classes.
 * @param logits  [n][c] float.
 * @param labels  [n], each in [0, c) or opts->ignore_index.
 * @param opts    NULL = clxent_opts_default(); class_weight, label_smoothing, z_loss and softcap
 *                apply (see clxent_opts and the README's toolbox table).
 * @param loss    MEAN, SUM: 1 value; NONE: n values. May be NULL if grad is not.
 * @param grad    [n][c], NULL (loss only) or == logits (written in place).
 * @return as listed above.
 */
CLXENT_API clxent_status clxent_softmax_xent(clxent_ctx *ctx, size_t n, size_t c, const float *logits,
                                  const int32_t *labels, const clxent_opts *opts, float *loss,
                                  float *grad);

/**
 * @brief Multiclass cross-entropy with dense targets (probabilities, or any non-negative weights).
 *
 * loss_i = -Σ_j t_{i,j} ln a_{i,j}, dL/dz_{i,j} = scale · (a_{i,j} · Σ_k t_{i,k} - t_{i,j}).
 * Terms with t = 0 contribute 0 even where z = -inf. ignore_index does not apply; MEAN divides by n.
 * @param logits, targets  [n][c] float.  @param opts, loss, grad  as for clxent_softmax_xent.
 * @return as listed above (never CLXENT_ERR_LABEL_RANGE).
 */
CLXENT_API clxent_status clxent_softmax_xent_soft(clxent_ctx *ctx, size_t n, size_t c, const float *logits,
                                       const float *targets, const clxent_opts *opts, float *loss,
                                       float *grad);

/**
 * @brief Binary cross-entropy from logits with the sigmoid fused, elementwise over n values.
 *
 * a = sigmoid(z), loss = -[y ln a + (1-y) ln(1-a)] = max(z,0) - z·y + ln(1 + e^{-|z|}),
 * dL/dz = scale · (a - y). MEAN divides by n.
 * @param logits, targets  [n] float (targets in [0, 1]).
 * @param opts  pos_weight (1 value) applies.  @param loss  1 or n values.  @param grad  [n], NULL or == logits.
 * @return as listed above (never CLXENT_ERR_LABEL_RANGE).
 */
CLXENT_API clxent_status clxent_sigmoid_xent(clxent_ctx *ctx, size_t n, const float *logits,
                                  const float *targets, const clxent_opts *opts, float *loss,
                                  float *grad);

/**
 * @brief Binary cross-entropy from probabilities a ∈ [0, 1] (PyTorch's BCELoss).
 *
 * loss = -[y ln a + (1-y) ln(1-a)] with each log clamped at -100,
 * dL/da = scale · (a - y) / max(a(1-a), 1e-12).
 * @param probs, targets  [n] float.  @param opts  pos_weight (1 value) applies.
 * @param loss  1 or n values.  @param grad  [n], NULL or == probs.
 * @return as listed above; an a outside [0, 1] is CLXENT_ERR_INVALID_ARG (NaN passes: it propagates).
 */
CLXENT_API clxent_status clxent_bce(clxent_ctx *ctx, size_t n, const float *probs, const float *targets,
                         const clxent_opts *opts, float *loss, float *grad);

/**
 * @brief Typed forms with extra outputs: the same losses on arrays of ex->dtype.
 *
 * The options of opts apply as above; ex->lse and ex->bias_grad are filled in the same call.
 * The binary forms take n rows of c independent binary values (c = 1 is the untyped form); MEAN
 * divides by n·c and pos_weight has c values.
 * @param logits, probs, targets, grad  n×c values of ex->dtype (uint16_t for the 16-bit types);
 *   grad may be NULL or == the first input (in place).
 * @param ex  NULL = clxent_ex_default(). ex->lse applies to the softmax forms only; ex->bias_grad
 *   needs grad.
 * @param loss  float32, as in the untyped forms (n·c values for NONE in the binary forms).
 * @return as listed above; also CLXENT_ERR_INVALID_ARG for an unknown ex->dtype.
 */
CLXENT_API clxent_status clxent_softmax_xent_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                     const int32_t *labels, const clxent_opts *opts,
                                     const clxent_ex *ex, float *loss, void *grad);
CLXENT_API clxent_status clxent_softmax_xent_soft_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                          const void *targets, const clxent_opts *opts,
                                          const clxent_ex *ex, float *loss, void *grad);
CLXENT_API clxent_status clxent_sigmoid_xent_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                     const void *targets, const clxent_opts *opts,
                                     const clxent_ex *ex, float *loss, void *grad);
CLXENT_API clxent_status clxent_bce_ex(clxent_ctx *ctx, size_t n, size_t c, const void *probs,
                            const void *targets, const clxent_opts *opts, const clxent_ex *ex,
                            float *loss, void *grad);

/**
 * @brief Information measures per row of distributions p, q [n][c] (float32) into out [n].
 *
 * Natural log, 0·ln 0 = 0, p·ln 0 = -inf for p > 0.
 *   - entropy:        H(p)    = -Σ p ln p
 *   - cross_entropy:  H(p,q)  = -Σ p ln q
 *   - kl_div:         D(p‖q)  =  Σ p ln(p/q) = H(p,q) - H(p)
 * @return CLXENT_OK; CLXENT_ERR_INVALID_ARG (NULL, zero size, overflow, out overlapping p or q);
 *   CLXENT_ERR_OUT_OF_MEMORY; CLXENT_ERR_OPENCL.
 */
CLXENT_API clxent_status clxent_entropy(clxent_ctx *ctx, size_t n, size_t c, const float *p, float *out);
CLXENT_API clxent_status clxent_cross_entropy(clxent_ctx *ctx, size_t n, size_t c, const float *p,
                                   const float *q, float *out);
CLXENT_API clxent_status clxent_kl_div(clxent_ctx *ctx, size_t n, size_t c, const float *p, const float *q,
                            float *out);

#ifdef __cplusplus
}
#endif

#endif /* CLXENT_H */
