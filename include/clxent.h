/**
 * @file clxent.h
 * @brief clxent — fused softmax / sigmoid cross-entropy, loss and gradient, on any OpenCL device.
 *
 * One call takes a batch of logits and labels and returns the batch loss and dL/dlogits. The work
 * runs on an OpenCL device (a GPU through its vendor driver, or the CPU through PoCL).
 *
 * Conventions for every function below:
 *   - Matrices are row-major [n][c] arrays; sizes are size_t end to end.
 *   - Natural logarithms. 0·ln 0 = 0.
 *   - A call either succeeds (CLXENT_OK) or returns another status; a call rejected for its
 *     arguments (CLXENT_ERR_INVALID_ARG, CLXENT_ERR_LABEL_RANGE) writes no output at all.
 *   - clxent_last_error(ctx) then names the bad argument, row or OpenCL call.
 *   - Threads: a context is used by one thread at a time. Use one context per thread, or guard a
 *     shared one with your own lock. Different contexts are independent.
 *
 * Compatibility. The header has two sections:
 *   - the stable API (everything not under CLXENT_EXPERIMENTAL_API): within one major version
 *     (the SONAME's), a program built against an older header keeps working with a newer library.
 *     Structs that may grow (clxent_opts, clxent_ex, clxent_config) start with a `size` field
 *     that their initializer macro and _default() function set to the caller's sizeof; the library
 *     reads only the fields that fit in it and takes the defaults for the rest. Always start from
 *     the initializer (CLXENT_OPTS_INIT, clxent_opts_default(), ...), never from `{0}`. New fields
 *     are appended, in a layout without padding between them; an older library refuses a newer
 *     caller's struct only when a field it does not know is set (non-zero).
 *   - the experimental API (define CLXENT_EXPERIMENTAL_API before including): device shares,
 *     tuning knobs and the building blocks of clxent_mpi (batch parts, column slices), which may
 *     change in any release.
 */
#ifndef CLXENT_H
#define CLXENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header; clxent_version() gives the library's. The major version is the
 * SONAME's: within it, a program built against an older header keeps working. */
#define CLXENT_VERSION_MAJOR 1 /**< incompatible changes; the SONAME */
#define CLXENT_VERSION_MINOR 1 /**< additions that keep older callers working */
#define CLXENT_VERSION_PATCH 0 /**< fixes */
/** MAJOR·10000 + MINOR·100 + PATCH, as clxent_version() returns it. */
#define CLXENT_VERSION_NUMBER (CLXENT_VERSION_MAJOR * 10000 + CLXENT_VERSION_MINOR * 100 + CLXENT_VERSION_PATCH)

/** @def CLXENT_API
 * Marks the functions the library exports; everything else is hidden. */
#if defined(_WIN32) && defined(CLXENT_BUILDING_SHARED)
#define CLXENT_API __declspec(dllexport)
#elif defined(__GNUC__) && defined(CLXENT_BUILDING_SHARED)
#define CLXENT_API __attribute__((visibility("default")))
#else
#define CLXENT_API
#endif

/** @brief The library's version.
 * @return CLXENT_VERSION_NUMBER of the library linked (compare with the header's to detect a
 *   mismatch). */
CLXENT_API unsigned clxent_version(void);
/** @brief The library's version as text.
 * @return "MAJOR.MINOR.PATCH" of the library linked; static storage, never NULL. */
CLXENT_API const char *clxent_version_string(void);

/** Result of every call; clxent_status_str() names each value, clxent_last_error() explains it.
 * More values may be added later; these are never renumbered. */
typedef enum clxent_status {
  CLXENT_OK = 0,            /**< success */
  CLXENT_ERR_INVALID_ARG,   /**< NULL pointer, zero size, unknown enum value, bad option, config or
                                 CLXENT_* environment value */
  CLXENT_ERR_LABEL_RANGE,   /**< a label outside [0, classes) that is not opts.ignore_index */
  CLXENT_ERR_NO_DEVICE,     /**< no OpenCL platform/device matches the request */
  CLXENT_ERR_BUILD,         /**< kernels failed to compile for the device (log in clxent_last_error) */
  CLXENT_ERR_OUT_OF_MEMORY, /**< host or device allocation failed */
  CLXENT_ERR_OPENCL         /**< any other OpenCL failure (call and CL error name in clxent_last_error) */
} clxent_status;

/** Opaque context: one OpenCL device (or several, see clxent_create()), its queues, the built
 * kernels and reusable buffers. */
typedef struct clxent_ctx clxent_ctx;

/** A three-way switch of clxent_config: AUTO (0) leaves the choice to the CLXENT_* environment
 * variable, else to the library's default. */
typedef enum clxent_switch {
  CLXENT_AUTO = 0, /**< the environment variable's value if set, else the default */
  CLXENT_ON = 1,   /**< on, whatever the environment says */
  CLXENT_OFF = 2   /**< off, whatever the environment says */
} clxent_switch;

struct clxent_tuning; /* experimental knobs: see CLXENT_EXPERIMENTAL_API below */

/**
 * How a context is made (clxent_create_ex()). Every field left at its initial value (0 / NULL /
 * CLXENT_AUTO) takes the CLXENT_* environment variable named beside it if that is set, else the
 * default. The environment is parsed strictly: a value that is not entirely a valid one is
 * CLXENT_ERR_INVALID_ARG naming the variable. Start from CLXENT_CONFIG_INIT or
 * clxent_config_default().
 */
typedef struct clxent_config {
  size_t size;                        /**< sizeof(clxent_config) as the caller compiled it */
  clxent_switch cache;                /**< the on-disk program binary cache ($CLXENT_CACHE=0|1; default on) */
  const char *cache_dir;              /**< where the cache lives, or NULL: $CLXENT_CACHE_DIR, else
                                           $XDG_CACHE_HOME/clxent, else $HOME/.cache/clxent */
  uint64_t max_alloc;                 /**< cap in bytes on any one device buffer, or 0: $CLXENT_MAX_ALLOC,
                                           else the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE */
  const struct clxent_tuning *tuning; /**< experimental knobs (kernel shape, split, ...), or NULL */
} clxent_config;

/** Initializer of a clxent_config: every choice left to the environment or the default. */
#define CLXENT_CONFIG_INIT {sizeof(clxent_config), CLXENT_AUTO, NULL, 0, NULL}

/** @brief A clxent_config with every choice left to the environment or the default.
 * Inline, so that `size` is the caller's own sizeof.
 * @return CLXENT_CONFIG_INIT. */
static inline clxent_config clxent_config_default(void) {
  const clxent_config c = CLXENT_CONFIG_INIT;
  return c;
}

/**
 * @brief Creates a context on a device and builds (or loads from the program cache) its kernels.
 *
 * The same as clxent_create_ex(ctx, device, NULL): every setting from the environment or the
 * default.
 * @param ctx     receives the context; set to NULL on failure.
 * @param device  which device:
 *   - NULL: $CLXENT_DEVICE if set, else the first GPU, else the first OpenCL device of any type;
 *   - "gpu": the first GPU; "cpu": the first CPU device (PoCL, for example);
 *   - "P:D": platform index P, device index D within it (as `clxent devices` lists them);
 *   - other: the first device whose device or platform name contains it (case-insensitive);
 *   - "all", or a comma-separated list of the above ("gpu,cpu", "0:0,1:0"): several devices. A
 *     call is split by rows among them in proportion to their speed (measured here on a small
 *     batch, then refined after every call from each device's time; $CLXENT_SPLIT or the tuning's
 *     split fixes the shares instead), all devices working at once, each on its own thread. Split
 *     points are multiples of 64 rows, and the partial sums are reduced in batch order on the
 *     first device: devices of one kind give exactly the bits of a one-device context, at any
 *     split. Devices of different kinds differ in the last bits of per-row values, so for the same
 *     bits run after run fix the shares. "all" with one device present gives an ordinary context.
 *     Listing a device twice, however spelled, is CLXENT_ERR_INVALID_ARG.
 * @return CLXENT_OK; CLXENT_ERR_INVALID_ARG (ctx NULL, a bad CLXENT_* environment variable);
 *   CLXENT_ERR_NO_DEVICE (no platform, or nothing matches); CLXENT_ERR_BUILD (the kernels do not
 *   compile; the build log is in the message); CLXENT_ERR_OUT_OF_MEMORY; CLXENT_ERR_OPENCL.
 *   On failure clxent_last_error(NULL) describes why (kept per thread).
 */
CLXENT_API clxent_status clxent_create(clxent_ctx **ctx, const char *device);

/**
 * @brief Creates a context as clxent_create() does, with settings given in code.
 * @param ctx     receives the context; set to NULL on failure.
 * @param device  as for clxent_create().
 * @param config  NULL (all from the environment or the default), or a clxent_config started from
 *                CLXENT_CONFIG_INIT. The library reads the first config->size bytes; fields past
 *                them take their defaults; bytes past the fields this library knows must be 0.
 * @return as clxent_create(); also CLXENT_ERR_INVALID_ARG for a bad config (its size, a value out
 *   of range), named in clxent_last_error(NULL).
 */
CLXENT_API clxent_status clxent_create_ex(clxent_ctx **ctx, const char *device, const clxent_config *config);

/** @brief Waits for the context's work, then releases everything it holds.
 * @param ctx  the context; NULL is a no-op. */
CLXENT_API void clxent_destroy(clxent_ctx *ctx);

/** @brief The name of a status.
 * @param status  any value, known or not.
 * @return "CLXENT_ERR_LABEL_RANGE: ..." for each value; never NULL, also for unknown values. */
CLXENT_API const char *clxent_status_str(clxent_status status);
/**
 * @brief The detail of the last failure.
 * @param ctx  the context, or NULL for the last failed clxent_create() of the calling thread.
 * @return the message ("" if none), naming the bad argument, row or OpenCL call. Valid until the
 *   next call on ctx.
 */
CLXENT_API const char *clxent_last_error(const clxent_ctx *ctx);
/** @brief The device's name.
 * @param ctx  the context.
 * @return the OpenCL name of the context's device ("" for NULL); with several devices, their
 *   names joined by " + ". */
CLXENT_API const char *clxent_device_name(const clxent_ctx *ctx);

/**
 * @brief Page-locked ("pinned") host memory for arrays passed to ctx's loss calls.
 *
 * A GPU copies pinned memory by DMA at several times the speed of ordinary (pageable) memory.
 * Arrays passed in ordinary memory go through the context's own pinned staging, which costs a
 * host memcpy each way; arrays that lie in memory from this function are transferred directly.
 * On devices that share host memory (PoCL) it is ordinary memory and costs nothing extra.
 * @param ctx    the context.
 * @param bytes  how much.
 * @return at least `bytes` bytes, aligned to 128 bytes, or NULL (clxent_last_error(ctx) says why:
 *   ctx NULL, bytes 0, or the allocation failed). Free it with clxent_host_free() on the same
 *   context; clxent_destroy() frees what is left.
 */
CLXENT_API void *clxent_host_alloc(clxent_ctx *ctx, size_t bytes);
/** @brief Frees memory from clxent_host_alloc(ctx, ...).
 * @param ctx  the context it came from.  @param ptr  the memory; NULL is a no-op.
 * @return CLXENT_OK; CLXENT_ERR_INVALID_ARG if ptr did not come from clxent_host_alloc() on ctx. */
CLXENT_API clxent_status clxent_host_free(clxent_ctx *ctx, void *ptr);

/** How per-row losses become the result. */
typedef enum clxent_reduction {
  CLXENT_MEAN = 0, /**< J = Σ_i loss_i / (number of rows counted) */
  CLXENT_SUM = 1,  /**< J = Σ_i loss_i */
  CLXENT_NONE = 2  /**< loss_i per row; the gradient is that of Σ_i loss_i */
} clxent_reduction;

/** Options of a loss call. Start from CLXENT_OPTS_INIT or clxent_opts_default() and set what you
 * need; every option is validated (NaN, infinity or a value out of range is
 * CLXENT_ERR_INVALID_ARG, nothing written), and an option set on a loss it does not apply to is
 * rejected rather than ignored. */
typedef struct clxent_opts {
  size_t size;                /**< sizeof(clxent_opts) as the caller compiled it */
  clxent_reduction reduction; /**< MEAN (default), SUM or NONE */
  int32_t ignore_index;       /**< hard labels: rows whose label equals this have loss 0, gradient 0
                                   and do not count (any value; -100 by default, as in PyTorch) */
  const float *class_weight;  /**< softmax: [c] w_j ≥ 0 and finite, or NULL (all 1). Hard labels:
                                   loss_i is scaled by w_{y_i}, MEAN divides by Σ w_{y_i} over the
                                   rows counted. Soft targets: each class's term is scaled by w_j,
                                   MEAN divides by n (PyTorch's CrossEntropyLoss(weight=...)) */
  float label_smoothing;      /**< softmax: ε ∈ [0, 1), the target becomes (1-ε)·target + ε/c, as in
                                   PyTorch (hard labels: (1-ε)·onehot(y) + ε/c, weighted by w_j) */
  float z_loss;               /**< softmax: λ ≥ 0 adds λ·lse_i² to loss_i (PaLM; Liger's
                                   lse_square_scale), gradient 2λ·lse_i·a_ij. Not class-weighted;
                                   MEAN divides it by the number of rows counted */
  float softcap;              /**< softmax: s ≥ 0; s > 0 replaces each logit z by s·tanh(z/s) before
                                   the softmax (Gemma 2), with the chain rule in the gradient;
                                   z = -inf stays -inf (a mask). 0 = off; else 2^-126 ≤ s ≤ 2^126
                                   (1/s a normal float), or CLXENT_ERR_INVALID_ARG */
  const float *pos_weight;    /**< binary: [c] p_j ≥ 0 and finite per column, or NULL (all 1):
                                   loss = -[p·y ln a + (1-y) ln(1-a)] (BCEWithLogitsLoss's pos_weight) */
  /* since 1.1 */
  const float *grad_output;   /**< the upstream gradient, or NULL (all 1). MEAN and SUM: 1 value g,
                                   the gradient written is g·dJ/dz; NONE: one value g_i per loss
                                   value (n for the softmax losses, n·c for the binary ones), the
                                   gradient written for value i is g_i·dloss_i/dz_i. Every value
                                   read must be finite (else CLXENT_ERR_INVALID_ARG naming
                                   opts->grad_output[k]); the outputs may not overlap it. Only the
                                   gradient (and ex->bias_grad, its column sums) is scaled, never
                                   the loss or lse; with grad NULL it is checked and changes
                                   nothing. g = 1 gives the bits of NULL. So a framework's backward
                                   needs no pass over the gradient */
  double mean_denominator;    /**< MEAN only (set with SUM or NONE: CLXENT_ERR_INVALID_ARG): 0 = the
                                   library's divisor (Σ w_{y_i} over the rows counted, or the count
                                   n, n·c); D > 0, a finite value within float's normal range,
                                   divides the whole loss, its z-loss terms included, and the
                                   gradient by D instead, e.g. the non-ignored tokens of all
                                   micro-batches of a gradient-accumulation step. No divisor is
                                   then 0: a batch whose rows are all ignored (or all of class
                                   weight 0) has loss 0 and gradient 0 */
} clxent_opts;

/** Initializer of a clxent_opts: MEAN, ignore_index = -100 (PyTorch's default), no weights,
 * ε = λ = s = 0, no upstream gradient (1), the library's MEAN divisor. */
#define CLXENT_OPTS_INIT {sizeof(clxent_opts), CLXENT_MEAN, -100, NULL, 0.0f, 0.0f, 0.0f, NULL, NULL, 0.0}

/** @brief The default options. Inline, so that `size` is the caller's sizeof.
 * @return CLXENT_OPTS_INIT. */
static inline clxent_opts clxent_opts_default(void) {
  const clxent_opts o = CLXENT_OPTS_INIT;
  return o;
}

/** Storage type of the dense arrays of the _ex entries (logits or probabilities, dense targets and
 * the gradient, all of the same type); math is float32 for all. Losses, lse, weights and the bias
 * gradient stay float32. */
typedef enum clxent_dtype {
  CLXENT_FLOAT32 = 0, /**< IEEE binary32 */
  CLXENT_FLOAT16 = 1, /**< IEEE binary16 (uint16_t in C); rounded to nearest even */
  CLXENT_BFLOAT16 = 2 /**< the high 16 bits of a float32 (uint16_t in C); rounded to nearest even */
} clxent_dtype;

/** The _ex entries' storage type and extra outputs. Start from CLXENT_EX_INIT or
 * clxent_ex_default(). */
typedef struct clxent_ex {
  size_t size;        /**< sizeof(clxent_ex) as the caller compiled it */
  clxent_dtype dtype; /**< of logits / probabilities, dense targets and grad */
  float *lse;         /**< softmax losses: [n] receives lse_i = ln Σ_j e^{u_ij} (after softcap), or NULL */
  float *bias_grad;   /**< [c] receives Σ_i grad_ij, the gradient of a bias added to the logits,
                           summed in a fixed order (bit-identical run to run); needs grad. Or NULL */
  /* since 1.1 */
  int32_t *argmax;    /**< softmax losses: one int32 per row (ignored rows too) receives the index
                           of the row's largest logit z, before softcap (the first on ties; a row
                           holding a NaN: its first NaN, as torch.argmax; a row of -inf only: 0),
                           found in the loss's own pass. Or NULL. Binary losses: INVALID_ARG */
  uint64_t *correct;  /**< hard labels: receives the number of rows counted (label not
                           ignore_index) whose argmax equals the label (token accuracy); argmax may
                           be NULL. Or NULL. Soft targets, binary losses: INVALID_ARG */
  size_t inner;       /**< softmax losses: 0 or 1 = classes innermost, [n][c]. S > 1: PyTorch's
                           (N, C, d1, ...) layout with n = N and S = d1·d2·…: logits, targets and
                           grad are [n][c][S] (class j of row (i, s) at (i·c + j)·S + s), read in
                           place (no transposed copy); the n·S rows r = i·S + s index labels, NONE
                           losses, lse and argmax, [n][S]. Every option applies per row; MEAN counts
                           the n·S rows as torch.nn.functional.cross_entropy does for such input
                           (Σ w_y over the rows not ignored; soft targets: n·S); bias_grad sums all
                           n·S rows. The binary losses take no S > 1 (CLXENT_ERR_INVALID_ARG) */
} clxent_ex;

/** Initializer of a clxent_ex: CLXENT_FLOAT32, no extra outputs. */
#define CLXENT_EX_INIT {sizeof(clxent_ex), CLXENT_FLOAT32, NULL, NULL, NULL, NULL, 0}

/** @brief The default extras. Inline, so that `size` is the caller's sizeof.
 * @return CLXENT_EX_INIT. */
static inline clxent_ex clxent_ex_default(void) {
  const clxent_ex x = CLXENT_EX_INIT;
  return x;
}

/**
 * @defgroup losses The losses
 * Every loss function returns:
 *   - CLXENT_OK;
 *   - CLXENT_ERR_INVALID_ARG: ctx or an input NULL, n or c 0, n·c (n·c·ex->inner) overflowing size_t, loss and
 *     grad both NULL, an output overlapping an input (grad == the first input exactly is allowed),
 *     an array misaligned for its elements, an option out of range or NaN/inf, or set on a loss it
 *     does not apply to, a struct whose `size` is not one the library can read — nothing written;
 *   - CLXENT_ERR_LABEL_RANGE (hard labels): a label outside [0, c) that is not ignore_index —
 *     checked before anything runs, the message names the first bad row, nothing written;
 *   - CLXENT_ERR_OUT_OF_MEMORY: a device buffer could not be had (or one row exceeds a block);
 *   - CLXENT_ERR_OPENCL: an OpenCL call failed (named in clxent_last_error()).
 * After the last two the outputs are unspecified; the context stays usable.
 * @{
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
 * @param opts    NULL = CLXENT_OPTS_INIT; class_weight, label_smoothing, z_loss and softcap apply.
 * @param loss    MEAN, SUM: 1 value; NONE: n values. May be NULL if grad is not.
 * @param grad    [n][c], NULL (loss only) or == logits (written in place).
 * @return a status of @ref losses.
 */
CLXENT_API clxent_status clxent_softmax_xent(clxent_ctx *ctx, size_t n, size_t c, const float *logits,
                                             const int32_t *labels, const clxent_opts *opts, float *loss,
                                             float *grad);

/**
 * @brief Multiclass cross-entropy with dense targets (probabilities, or any non-negative weights).
 *
 * loss_i = -Σ_j t_{i,j} ln a_{i,j}, dL/dz_{i,j} = scale · (a_{i,j} · Σ_k t_{i,k} - t_{i,j}).
 * Terms with t = 0 contribute 0 even where z = -inf. ignore_index does not apply; MEAN divides by n.
 * @param ctx      the context.
 * @param n, c     rows and classes.
 * @param logits   [n][c] float.
 * @param targets  [n][c] float.
 * @param opts     NULL = CLXENT_OPTS_INIT; class_weight, label_smoothing, z_loss, softcap apply.
 * @param loss     MEAN, SUM: 1 value; NONE: n values. May be NULL if grad is not.
 * @param grad     [n][c], NULL or == logits.
 * @return a status of @ref losses (never CLXENT_ERR_LABEL_RANGE).
 */
CLXENT_API clxent_status clxent_softmax_xent_soft(clxent_ctx *ctx, size_t n, size_t c, const float *logits,
                                                  const float *targets, const clxent_opts *opts, float *loss,
                                                  float *grad);

/**
 * @brief Binary cross-entropy from logits with the sigmoid fused, elementwise over n values.
 *
 * a = sigmoid(z), loss = -[y ln a + (1-y) ln(1-a)] = max(z,0) - z·y + ln(1 + e^{-|z|}),
 * dL/dz = scale · (a - y). MEAN divides by n.
 * @param ctx      the context.
 * @param n        values.
 * @param logits   [n] float.
 * @param targets  [n] float in [0, 1].
 * @param opts     NULL = CLXENT_OPTS_INIT; pos_weight (1 value) applies.
 * @param loss     1 or n values.
 * @param grad     [n], NULL or == logits.
 * @return a status of @ref losses (never CLXENT_ERR_LABEL_RANGE).
 */
CLXENT_API clxent_status clxent_sigmoid_xent(clxent_ctx *ctx, size_t n, const float *logits, const float *targets,
                                             const clxent_opts *opts, float *loss, float *grad);

/**
 * @brief Binary cross-entropy from probabilities a ∈ [0, 1] (PyTorch's BCELoss).
 *
 * loss = -[y ln a + (1-y) ln(1-a)] with each log clamped at -100,
 * dL/da = scale · (a - y) / max(a(1-a), 1e-12).
 * @param ctx      the context.
 * @param n        values.
 * @param probs    [n] float in [0, 1] (NaN passes: it propagates).
 * @param targets  [n] float.
 * @param opts     NULL = CLXENT_OPTS_INIT; pos_weight (1 value) applies.
 * @param loss     1 or n values.
 * @param grad     [n], NULL or == probs.
 * @return a status of @ref losses; an a outside [0, 1] is CLXENT_ERR_INVALID_ARG.
 */
CLXENT_API clxent_status clxent_bce(clxent_ctx *ctx, size_t n, const float *probs, const float *targets,
                                    const clxent_opts *opts, float *loss, float *grad);

/**
 * @brief clxent_softmax_xent() on arrays of ex->dtype, with extra outputs.
 *
 * The options of opts apply as in the float32 form; ex->lse, ex->bias_grad, ex->argmax and
 * ex->correct are filled in the same call. With ex->inner = S > 1 the layout is PyTorch's
 * (N, C, d1, ...): n·S rows, see clxent_ex::inner.
 * @param ctx     the context.
 * @param n, c    rows (samples N with ex->inner > 1) and classes.
 * @param logits  n×c values of ex->dtype (uint16_t for the 16-bit types); [n][c][S] with inner S.
 * @param labels  [n] class indices; [n][S] with inner S (a bad one is named by its i and s).
 * @param opts    NULL = CLXENT_OPTS_INIT.
 * @param ex      NULL = CLXENT_EX_INIT.
 * @param loss    float32: 1 value, or n (n·S) for NONE.
 * @param grad    n×c (n×c×S) values of ex->dtype, NULL, or == logits.
 * @return a status of @ref losses; also CLXENT_ERR_INVALID_ARG for an unknown ex->dtype.
 */
CLXENT_API clxent_status clxent_softmax_xent_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                                const int32_t *labels, const clxent_opts *opts,
                                                const clxent_ex *ex, float *loss, void *grad);
/**
 * @brief clxent_softmax_xent_soft() on arrays of ex->dtype, with extra outputs.
 * With ex->inner = S > 1 the layout is PyTorch's (N, C, d1, ...): see clxent_ex::inner.
 * @param ctx      the context.
 * @param n, c     rows (samples N with ex->inner > 1) and classes.
 * @param logits   n×c values of ex->dtype; [n][c][S] with inner S.
 * @param targets  n×c values of ex->dtype, laid out as the logits.
 * @param opts     NULL = CLXENT_OPTS_INIT.
 * @param ex       NULL = CLXENT_EX_INIT.
 * @param loss     float32: 1 value, or n (n·S) for NONE.
 * @param grad     n×c (n×c×S) values of ex->dtype, NULL, or == logits.
 * @return a status of @ref losses (never CLXENT_ERR_LABEL_RANGE).
 */
CLXENT_API clxent_status clxent_softmax_xent_soft_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                                     const void *targets, const clxent_opts *opts,
                                                     const clxent_ex *ex, float *loss, void *grad);
/**
 * @brief clxent_sigmoid_xent() over n rows of c independent binary values of ex->dtype.
 * MEAN divides by n·c; opts->pos_weight has c values (one per column); ex->lse does not apply.
 * @param ctx      the context.
 * @param n, c     rows and columns (c = 1 is the untyped form).
 * @param logits   n×c values of ex->dtype.
 * @param targets  n×c values of ex->dtype.
 * @param opts     NULL = CLXENT_OPTS_INIT.
 * @param ex       NULL = CLXENT_EX_INIT.
 * @param loss     float32: 1 value, or n·c for NONE.
 * @param grad     n×c values of ex->dtype, NULL, or == logits.
 * @return a status of @ref losses (never CLXENT_ERR_LABEL_RANGE).
 */
CLXENT_API clxent_status clxent_sigmoid_xent_ex(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                                const void *targets, const clxent_opts *opts,
                                                const clxent_ex *ex, float *loss, void *grad);
/**
 * @brief clxent_bce() over n rows of c independent binary values of ex->dtype.
 * MEAN divides by n·c; opts->pos_weight has c values; ex->lse does not apply.
 * @param ctx      the context.
 * @param n, c     rows and columns.
 * @param probs    n×c values of ex->dtype, each in [0, 1] or NaN.
 * @param targets  n×c values of ex->dtype.
 * @param opts     NULL = CLXENT_OPTS_INIT.
 * @param ex       NULL = CLXENT_EX_INIT.
 * @param loss     float32: 1 value, or n·c for NONE.
 * @param grad     n×c values of ex->dtype, NULL, or == probs.
 * @return a status of @ref losses; a probability outside [0, 1] is CLXENT_ERR_INVALID_ARG.
 */
CLXENT_API clxent_status clxent_bce_ex(clxent_ctx *ctx, size_t n, size_t c, const void *probs,
                                       const void *targets, const clxent_opts *opts, const clxent_ex *ex,
                                       float *loss, void *grad);
/**
 * @brief Fused linear layer + softmax cross-entropy: the loss of a language-model head and the
 * gradients of its inputs, without the logits ever stored whole (since 1.1).
 *
 * z = hidden · weightᵀ + bias (z_ij = Σ_k hidden_ik weight_jk + bias_j) and then exactly the loss
 * of clxent_softmax_xent() on z, with every option of it: reductions, ignore_index, class_weight,
 * label_smoothing, z_loss, softcap (same validation, same messages). The gradients are
 * grad_hidden = G · weight, grad_weight = Gᵀ · hidden, grad_bias = Σ_i G_i with G = dJ/dz.
 * The logits are computed block by block (rows × classes, the block's shape from the tuning table)
 * and the block is computed again for the gradients, but for a row chunk's last blocks, kept from
 * the forward pass while the whole scratch stays within 4.5% of n·v floats; with a gradient and
 * the table's rows per block, a call takes fewer rows (at least 64) if then a row chunk keeps all
 * its blocks, so that each logit is computed once. Extra device memory
 * beyond the inputs and outputs, in floats: R·V' (one block of logits, V' = V rounded up to 16,
 * plus 16; CPUs: 256 × 512, GPUs: 1024 × 4096), R'·d (the row block of hidden packed for the
 * logits, R' = R rounded up to 16 on CPUs, 8 on GPUs), 8·R, n (the per-row losses), for the
 * gradient products the block's weight rows and hidden rows packed, V·d' with grad_hidden and R·d'
 * with grad_weight (d' = d rounded up to 16 on CPUs, 8 on GPUs), and with a gradient the kept
 * blocks, R·V' each, as many as fit in 4.5% of n·v with the rest — never n·v: at n = 2048,
 * d = 1024, v = 32000 on a CPU, 10.6 MiB with the gradients (64 rows per block, all 63 blocks of a
 * row chunk kept), 4.3% of the 262 MB of logits; 1.5 MiB for the loss alone.
 * (On devices with memory of their own the inputs and outputs are copied to device buffers of
 * their size.)
 * Deterministic: every gradient element is the sum of its terms in increasing class (grad_hidden)
 * or row (grad_weight, grad_bias) order, without atomics, whatever the block shape; repeated calls
 * give the same bits. No BLAS: the matrix products are clxent's own kernels.
 * opts->grad_output and opts->mean_denominator are not implemented for it yet (rejected).
 * @param ctx          the context (one device).
 * @param n, d, v      rows, hidden size, classes; v ≤ INT32_MAX.
 * @param hidden       [n][d] float.
 * @param weight       [v][d] float: row j is class j's vector (PyTorch's nn.Linear weight).
 * @param bias         [v] float, or NULL (no bias).
 * @param labels       [n], each in [0, v) or opts->ignore_index.
 * @param opts         NULL = CLXENT_OPTS_INIT.
 * @param loss         MEAN, SUM: 1 value; NONE: n values; or NULL.
 * @param grad_hidden  [n][d], or NULL (not wanted).
 * @param grad_weight  [v][d], or NULL.
 * @param grad_bias    [v], or NULL (bias may be NULL: the gradient of a zero bias).
 * @return a status of @ref losses; loss and the three gradients all NULL is
 *   CLXENT_ERR_INVALID_ARG; no output may overlap an input or another output.
 */
CLXENT_API clxent_status clxent_linear_xent(clxent_ctx *ctx, size_t n, size_t d, size_t v, const float *hidden,
                                            const float *weight, const float *bias, const int32_t *labels,
                                            const clxent_opts *opts, float *loss, float *grad_hidden,
                                            float *grad_weight, float *grad_bias);
/**
 * @brief clxent_linear_xent() on arrays of ex->dtype, with the rows' log-sum-exp (since 1.1).
 *
 * hidden, weight, bias and the three gradients in ex->dtype (uint16_t for the 16-bit types); every
 * product and sum in float32; 16-bit gradients are accumulated in float32 and rounded once. That
 * needs float32 accumulators beyond the block's scratch: R·d floats for grad_hidden and v·d for
 * grad_weight (the float32 gradient's size), v for grad_bias. ex->lse (n floats) receives each
 * row's log-sum-exp (after softcap), ignored rows included. ex->bias_grad does not apply (it is
 * grad_bias).
 * @param ctx, n, d, v, labels, opts, loss  as for clxent_linear_xent().
 * @param hidden, weight, bias  n×d, v×d, v values of ex->dtype (bias may be NULL).
 * @param ex           NULL = CLXENT_EX_INIT.
 * @param grad_hidden, grad_weight, grad_bias  n×d, v×d, v values of ex->dtype, or NULL.
 * @return as clxent_linear_xent(); also CLXENT_ERR_INVALID_ARG for an unknown ex->dtype.
 */
CLXENT_API clxent_status clxent_linear_xent_ex(clxent_ctx *ctx, size_t n, size_t d, size_t v, const void *hidden,
                                               const void *weight, const void *bias, const int32_t *labels,
                                               const clxent_opts *opts, const clxent_ex *ex, float *loss,
                                               void *grad_hidden, void *grad_weight, void *grad_bias);
/** @} */

/**
 * @defgroup information Information measures
 * Per row of distributions p, q [n][c] (float32) into out [n]. Natural log, 0·ln 0 = 0,
 * p·ln 0 = -inf for p > 0. Each returns CLXENT_OK; CLXENT_ERR_INVALID_ARG (NULL, zero size,
 * overflow, out overlapping p or q); CLXENT_ERR_OUT_OF_MEMORY; CLXENT_ERR_OPENCL.
 * @{
 */
/** @brief Entropy H(p) = -Σ p ln p per row.
 * @param ctx  the context.  @param n, c  rows and classes.  @param p  [n][c].  @param out  [n].
 * @return a status of @ref information. */
CLXENT_API clxent_status clxent_entropy(clxent_ctx *ctx, size_t n, size_t c, const float *p, float *out);
/** @brief Cross-entropy H(p,q) = -Σ p ln q per row.
 * @param ctx  the context.  @param n, c  rows and classes.  @param p, q  [n][c].  @param out  [n].
 * @return a status of @ref information. */
CLXENT_API clxent_status clxent_cross_entropy(clxent_ctx *ctx, size_t n, size_t c, const float *p, const float *q,
                                              float *out);
/** @brief Kullback–Leibler divergence D(p‖q) = Σ p ln(p/q) = H(p,q) - H(p) per row.
 * @param ctx  the context.  @param n, c  rows and classes.  @param p, q  [n][c].  @param out  [n].
 * @return a status of @ref information. */
CLXENT_API clxent_status clxent_kl_div(clxent_ctx *ctx, size_t n, size_t c, const float *p, const float *q,
                                       float *out);
/** @} */

#if defined(CLXENT_EXPERIMENTAL_API) || defined(CLXENT_BUILDING_LIBRARY)
/* ================================================================================================
 * Experimental API: may change or go in any release, the major version notwithstanding.
 * ============================================================================================== */

/** The row mapping of the softmax kernels (experimental). */
typedef enum clxent_variant {
  CLXENT_VARIANT_AUTO = 0,  /**< $CLXENT_VARIANT, else the tuning table's (CPUs: item, GPUs: group) */
  CLXENT_VARIANT_ITEM = 1,  /**< one work-item per row, explicit vector loops (what CPUs run best) */
  CLXENT_VARIANT_GROUP = 2  /**< a work-group per row or per few rows, coalesced loads (GPUs) */
} clxent_variant;

/**
 * Tuning knobs (experimental), pointed to by clxent_config::tuning. Every field left 0 / NULL /
 * AUTO takes its CLXENT_* environment variable if set, else the library's tuning table.
 */
typedef struct clxent_tuning {
  size_t size;              /**< sizeof(clxent_tuning) as the caller compiled it */
  clxent_variant variant;   /**< $CLXENT_VARIANT=item|group */
  unsigned vector_width;    /**< 4, 8 or 16 ($CLXENT_VEC) */
  size_t group_size;        /**< work-items per group, a power of two ≤ the device's limit ($CLXENT_GROUP_SIZE) */
  size_t row_threads;       /**< group variant: work-items per softmax row, a power of two ≤ group_size
                                 ($CLXENT_ROW_THREADS); 0 = chosen from c per call */
  uint64_t block_bytes;     /**< cap on the streaming block in bytes ($CLXENT_BLOCK_BYTES) */
  clxent_switch zero_copy;  /**< compute in the caller's memory in place ($CLXENT_ZERO_COPY=0|1;
                                 default on for CPU devices that share host memory; ON applies
                                 only to devices that share it: clxent_info.zero_copy says) */
  const double *split;      /**< several devices: fixed relative shares, split_count positive values
                                 ($CLXENT_SPLIT="w0,w1,..."); NULL = measured and refined */
  size_t split_count;       /**< values in split */
  const char *build_options; /**< extra OpenCL build options ($CLXENT_BUILD_OPTIONS), or NULL */
  clxent_switch own_math;   /**< ON: clxent's own e^x and tanh (kernels/math.cl, accuracy tested);
                                 OFF: the device's exp and tanh, a hardware instruction on GPUs
                                 ($CLXENT_OWN_MATH=1|0; default from the tuning table: CPUs on,
                                 GPUs off) */
  size_t linear_rows;       /**< clxent_linear_xent: rows per block of logits ($CLXENT_LINEAR_ROWS,
                                 1..65536); 0 = the tuning table's, which a call with a gradient
                                 may lower (clxent_linear_xent()); set, every call takes it */
  size_t linear_classes;    /**< clxent_linear_xent: classes per block of logits
                                 ($CLXENT_LINEAR_CLASSES, 1..2^24); 0 = the tuning table's */
} clxent_tuning;

/** Initializer of a clxent_tuning: everything from the environment or the tuning table. */
#define CLXENT_TUNING_INIT {sizeof(clxent_tuning), CLXENT_VARIANT_AUTO, 0, 0, 0, 0, CLXENT_AUTO, NULL, 0, NULL, CLXENT_AUTO, 0, 0}

/** What a context settled on (experimental), from clxent_get_info(). */
typedef struct clxent_info {
  size_t size;                 /**< set by the caller: sizeof(clxent_info) as it compiled it */
  int is_cpu;                  /**< the device is a CPU (CL_DEVICE_TYPE_CPU) */
  clxent_variant variant;      /**< ITEM or GROUP */
  unsigned vector_width;       /**< of the kernels' vector loops */
  size_t group_size;           /**< work-items per group */
  size_t row_threads;          /**< work-items per softmax row (0: chosen from c per call) */
  int zero_copy;               /**< computes in the caller's memory in place */
  int program_from_cache;      /**< the kernels came from the program binary cache */
  uint64_t block_bytes;        /**< largest streaming block */
  uint64_t max_alloc;          /**< largest device buffer (after any cap) */
  uint64_t global_mem;         /**< CL_DEVICE_GLOBAL_MEM_SIZE */
  int own_math;                /**< 1: the kernels use clxent's own e^x and tanh; 0: the device's */
  size_t linear_rows;          /**< clxent_linear_xent's block of logits: rows (the table's may be
                                    lowered per call with a gradient) ... */
  size_t linear_classes;       /**< ... × classes (its scratch: rows·classes floats) */
  /* since 1.1 */
  size_t direct_max;           /**< small float32 hard-label calls of at most this many values (n·c;
                                    an eighth of it where the host computes rows lane by lane:
                                    rows of at most 64 classes, 4-lane contexts) are computed on
                                    the host with the kernels' bits (CPU devices;
                                    $CLXENT_DIRECT_MAX, 0 = off); 0: never */
  int bf16_cvt;                /**< bfloat16 gradients are rounded by the CPU's vcvtneps2bf16 (CPU
                                    devices of a host with AVX-512 BF16 whose kernel compiler takes
                                    it: PoCL with Clang 15 or older; $CLXENT_BF16_CVT=0: off);
                                    the same bits either way */
} clxent_info;

/** Initializer of a clxent_info before clxent_get_info() fills it. */
#define CLXENT_INFO_INIT {sizeof(clxent_info), 0, CLXENT_VARIANT_AUTO, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

/**
 * @brief Describes what device k of ctx settled on (experimental).
 * @param ctx   the context.
 * @param k     which device (0 for a one-device context).
 * @param info  started from CLXENT_INFO_INIT; the fields that fit in info->size are written.
 * @return CLXENT_OK; CLXENT_ERR_INVALID_ARG (NULL, k out of range, info->size too small).
 */
CLXENT_API clxent_status clxent_get_info(const clxent_ctx *ctx, size_t k, clxent_info *info);

/** @brief How many devices ctx computes on (experimental).
 * @param ctx  the context.
 * @return 1, or more for "all" or a list; 0 for NULL. */
CLXENT_API size_t clxent_device_count(const clxent_ctx *ctx);
/** @brief The share of the next batch's rows device k takes (experimental).
 * @param ctx  the context.  @param k  which device.
 * @return the fraction (they sum to 1; they follow the speeds measured in the calls, once those
 *   differ by 8 points, unless fixed shares were given); 0 when k is out of range. */
CLXENT_API double clxent_device_share(const clxent_ctx *ctx, size_t k);

/**
 * @brief Some rows of a larger batch of softmax cross-entropy with hard labels: the rows' terms of
 * the batch's loss and their gradient of it (experimental).
 *
 * The building block of a batch split across processes (clxent_mpi_softmax_xent): given the whole
 * batch's MEAN statistics, the rows are computed with the scales of one clxent_softmax_xent_ex()
 * call on the whole batch (plan.c: 1/divisor for the cross-entropy terms, 1/counted rows for the
 * z-loss, the z-loss's weight divisor/counted in each row's loss, class weights rescaled by a
 * power of two where the divisor lies outside 2^±64), so each row's gradient and term have that
 * call's bits. Its J is the core's fixed-order sum of every row's term (host/reduce.c) divided by
 * *divisor. Under SUM and NONE and with opts->mean_denominator the batch statistics are unused.
 * @param ctx, c, logits, labels, opts, ex  as clxent_softmax_xent_ex(); opts->reduction and
 *                        opts->grad_output (one value under MEAN and SUM, n under NONE) are the
 *                        batch's.
 * @param n               the rows here; 0 (a process holding none of the batch) checks c, opts and
 *                        ex and writes *divisor only.
 * @param batch_weight    MEAN with class weights: Σ w_{y_i} over the batch's counted rows, summed in
 *                        row order in double (what clxent_softmax_xent_ex() sums); finite, ≥ 0.
 *                        Ignored without class weights.
 * @param batch_counted   MEAN: the batch's rows whose label is not ignore_index (at least this
 *                        call's).
 * @param row_loss        [n] each row's term of the batch's Σ_i loss_i (under NONE its loss), or NULL.
 * @param grad            [n][c] of ex->dtype: the rows' gradient of the batch's J (times g), or NULL.
 * @param divisor         receives J's divisor (1 for SUM and NONE; NaN for a MEAN of 0 weight or
 *                        no rows counted), or NULL.
 * @return as clxent_softmax_xent_ex(); CLXENT_ERR_INVALID_ARG also for batch_weight NaN, infinite
 *   or negative, or batch_counted below the rows counted here (nothing written).
 */
CLXENT_API clxent_status clxent_softmax_xent_part(clxent_ctx *ctx, size_t n, size_t c, const void *logits,
                                                  const int32_t *labels, const clxent_opts *opts, const clxent_ex *ex,
                                                  double batch_weight, uint64_t batch_counted, float *row_loss,
                                                  void *grad, float *divisor);

/**
 * @defgroup slice Softmax cross-entropy over a slice of the classes (experimental)
 * Building blocks of a vocabulary split across processes (clxent_mpi_softmax_xent_vocab): each
 * process holds the columns [c_offset, c_offset + c_local) of c_total for all n rows; labels are
 * global class indices. The first entry reduces the slice to a few numbers per row, the caller
 * combines every slice's numbers into the row's global log-sum-exp and loss, and the second
 * writes the slice's gradient from them: two reads of the logits in all. The logits and the
 * gradient in any clxent_dtype (float32 math); one work-item per row (CPU-shaped); one-device
 * contexts only. These may change in any release.
 * Both return CLXENT_OK, or CLXENT_ERR_INVALID_ARG (NULL, zero size, slice outside [0, c_total),
 * an option out of range, overlapping outputs; nothing written), CLXENT_ERR_LABEL_RANGE (a label
 * outside [0, c_total) that is not ignore_index; nothing written), CLXENT_ERR_OUT_OF_MEMORY,
 * CLXENT_ERR_OPENCL.
 * @{
 */
/** Values per row written by clxent_softmax_slice_stats(), in this order. */
enum clxent_slice_value {
  CLXENT_SLICE_MAX = 0,          /**< m = max over the slice of u = cap(z) (-inf if every u is) */
  CLXENT_SLICE_SUM_EXP = 1,      /**< s = Σ e^(u - m) over the slice (reference 0 if m = -inf) */
  CLXENT_SLICE_SMOOTH = 2,       /**< d = Σ w_j (m - u_j) over the slice's w_j ≠ 0 (label smoothing > 0; else 0) */
  CLXENT_SLICE_LABEL_LOGIT = 3,  /**< u of the label if it lies in the slice, else 0 */
  CLXENT_SLICE_LABEL_WEIGHT = 4, /**< its weight w (1 without weights) if it lies in the slice, else 0 */
  CLXENT_SLICE_VALUES = 5        /**< floats per row */
};

/**
 * @brief Per-row statistics of a column slice of the logits (experimental).
 *
 * Combining slices r (in any fixed order): m = max m_r, s = Σ s_r e^(m_r - m), lse = m + ln s,
 * d = Σ (d_r + W_r (m - m_r)) with W_r the slice's Σ w_j; the loss of a row with label y is
 * (1-ε) w_y (m - u_y + ln s) + (ε / c_total) (d + W ln s) + λ lse², as clxent_softmax_xent().
 * @param ctx       a one-device context.
 * @param n         rows.
 * @param c_local   the slice's columns; @param c_offset its first global column;
 * @param c_total   all columns (≤ INT32_MAX).
 * @param dtype     the storage type of logits (and of grad).
 * @param logits    [n][c_local] values of dtype (uint16_t for the 16-bit types).
 * @param labels    [n] global class indices, or opts->ignore_index.
 * @param opts      NULL or: class_weight (the slice's c_local weights), label_smoothing (whether
 *                  d is computed), softcap, ignore_index; the other fields are checked, not used.
 * @param stats     [n][CLXENT_SLICE_VALUES].
 * @return a status of @ref slice.
 */
CLXENT_API clxent_status clxent_softmax_slice_stats(clxent_ctx *ctx, size_t n, size_t c_local, size_t c_offset,
                                                    size_t c_total, clxent_dtype dtype, const void *logits, const int32_t *labels,
                                                    const clxent_opts *opts, float *stats);

/**
 * @brief The gradient of softmax cross-entropy over a column slice, given each row's global
 * log-sum-exp (experimental).
 *
 * grad_ij = (A_i e^(u_ij - lse_i) - B w_j - K_i [c_offset + j = y_i]) u'_ij with
 * A_i = S_i ((1-ε) w_{y_i} + ε W / c_total) + 2 λ S_z,i lse_i, B = S_i ε / c_total,
 * K_i = S_i (1-ε) w_{y_i}; S_i = scale·g_i, S_z,i = z_scale·g_i, g_i = opts->grad_output[i]
 * under NONE, opts->grad_output[0] under MEAN and SUM, else 1. Ignored rows get 0. This is
 * clxent_softmax_xent()'s gradient of the slice's columns when lse, the weights and the scales
 * are the full row's and the batch's.
 * @param ctx, n, c_local, c_offset, c_total, dtype, logits, labels  as clxent_softmax_slice_stats().
 * @param opts          NULL or: class_weight (the slice's), label_smoothing, z_loss, softcap,
 *                      ignore_index, grad_output with reduction (how many values it has).
 * @param lse           [n] each row's global log-sum-exp of u.
 * @param label_weight  [n] each row's w_{y_i} (of the global weights), or NULL (all 1).
 * @param weight_sum    W = Σ w_j over all c_total classes (c_total without weights).
 * @param scale         S: the reduction's scale (1/divisor for MEAN, 1 for SUM and NONE); NaN
 *                      gives a NaN gradient on the counted rows (a MEAN of 0/0).
 * @param z_scale       S_z: the z-loss's (1/rows counted for MEAN, 1 for SUM and NONE).
 * @param grad          [n][c_local] values of dtype, or == logits (in place).
 * @return a status of @ref slice.
 */
CLXENT_API clxent_status clxent_softmax_slice_grad(clxent_ctx *ctx, size_t n, size_t c_local, size_t c_offset,
                                                   size_t c_total, clxent_dtype dtype, const void *logits, const int32_t *labels,
                                                   const clxent_opts *opts, const float *lse,
                                                   const float *label_weight, float weight_sum, float scale,
                                                   float z_scale, void *grad);
/** @} */
#endif /* CLXENT_EXPERIMENTAL_API */

#ifdef __cplusplus
}
#endif

#endif /* CLXENT_H */
