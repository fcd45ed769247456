/*
 * Internal to clxent: the context, the plan of a call, and the interfaces between the host
 * modules. Not installed. A call flows one way through them:
 *
 *   api.c / api_cl.c   public entries: read the caller's structs, validate, make the plan
 *   linear.c           clxent_linear_xent (host pointers and device buffers): validates as api.c
 *                      does, then walks its blocks of rows × classes through launch.c itself
 *   validate.c         every check of arguments, options and overlaps
 *   plan.c             the kernels' scalars and the reduction's divisor (clxent_plan)
 *   group.c            several devices: the plan split by rows, members run concurrently
 *   stream.c           one device: the batch in row blocks, zero-copy or through pipeline.c
 *   launch.c           every kernel enqueue, through one argument-setting helper
 *   reduce.c           the fixed-order batch reduction (few values on a CPU device: on the host,
 *                      in the same order) and delivery of results to the host
 *   direct.c           small hard-label calls on a CPU device computed on the calling thread, with
 *                      the kernels' bits (api.c asks it before handing a plan to an engine)
 *
 * beside the context's own rooms: context.c (lifecycle), config.c (settings from the caller's
 * config and the environment), device.c (selection), tuning.c (kernel shape per device),
 * program.c and cache.c (kernels; sha256.c checks the cache's entries), buffers.c and pinned.c
 * (memory), errors.c, clock.c.
 */
#ifndef CLXENT_INTERNAL_H
#define CLXENT_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "clxent.h"
#include "clxent_defs.h"
#include "clock.h"

#define CLXENT_ERROR_MAX 4096

/* ---------------------------------------------------------------- error idiom
 * Every function that can fail returns a clxent_status and records the message on its context
 * (clxent_fail). CHECK returns a failure at once; CHECK_GOTO stores it in `st` and jumps to the
 * function's one cleanup label. */
#define CHECK(expr)                              \
  do {                                           \
    const clxent_status check_st_ = (expr);      \
    if (check_st_ != CLXENT_OK) return check_st_; \
  } while (0)
#define CHECK_GOTO(expr, st, label) \
  do {                              \
    (st) = (expr);                  \
    if ((st) != CLXENT_OK) goto label; \
  } while (0)
/* An OpenCL call: a failure becomes the status of clxent_fail_cl, naming `what`. */
#define CHECK_CL(ctx, call, what)                                      \
  do {                                                                 \
    const cl_int check_err_ = (call);                                  \
    if (check_err_ != CL_SUCCESS) return clxent_fail_cl((ctx), (what), check_err_); \
  } while (0)

/* ---------------------------------------------------------------- kernels
 * The first KERNEL_TYPED_COUNT exist once per storage type (kernels/storage.cl), the others once,
 * as kernels[id][CLXENT_FLOAT32]. Names in program.c's table, in this order. */
typedef enum clxent_kernel_id {
  KERNEL_SOFTMAX_HARD,
  KERNEL_SOFTMAX_SOFT,
  KERNEL_SOFTMAX_HARD_SHORT,
  KERNEL_SOFTMAX_HARD_BIAS, /* the row-per-item variant only (NULL in the group variant's program) */
  KERNEL_SOFTMAX_HARD_TILE, /* the group variant only (NULL in the row-per-item variant's program) */
  KERNEL_SIGMOID_XENT, /* these four in this order: launch.c names them by their offset */
  KERNEL_BCE,
  KERNEL_SIGMOID_XENT_SUMS, /* the two above with the batch's chunk sums (binary.cl): NULL where */
  KERNEL_BCE_SUMS,          /* the kernels' compiler lacks them (16 lanes and Clang only) */
  KERNEL_COLUMN_PARTIAL,
  KERNEL_SOFTMAX_STRIDED,         /* both softmax losses, classes not innermost (inner S > 1) */
  KERNEL_COLUMN_PARTIAL_STRIDED,
  KERNEL_SLICE_STATS, /* a column slice (softmax_slice.cl) */
  KERNEL_SLICE_GRAD,
  KERNEL_LINEAR_LOGITS, /* linear_products.cl */
  KERNEL_LINEAR_DHIDDEN,
  KERNEL_LINEAR_DWEIGHT,
  KERNEL_LINEAR_NARROW,
  KERNEL_LINEAR_PACK,
  KERNEL_LINEAR_PACK_T,
  KERNEL_TYPED_COUNT,
  KERNEL_ROW_INFORMATION = KERNEL_TYPED_COUNT,
  KERNEL_REDUCE_SUM,
  KERNEL_REDUCE_SUM_ITEMS, /* the row-per-item variant's (CPUs) */
  KERNEL_COLUMN_SUM,
  KERNEL_COLUMN_SUM_GROUP, /* the group variant's (GPUs) */
  KERNEL_LABEL_STATS,
  KERNEL_LABEL_STATS_PART,
  KERNEL_CHUNK_SUM,
  KERNEL_LINEAR_STATS, /* linear_xent.cl */
  KERNEL_LINEAR_GRAD,
  KERNEL_LINEAR_DBIAS,
  KERNEL_COUNT
} clxent_kernel_id;

/* Reusable device buffers: each grows to the largest request seen and is reused for smaller ones. */
enum clxent_slot {
  SLOT_IN,           /* a block of logits / probabilities / p */
  SLOT_AUX,          /* a block of targets / q */
  SLOT_GRAD,         /* a block of the gradient */
  SLOT_IN_1,         /* the pipeline's second set of blocks (double buffering) */
  SLOT_AUX_1,
  SLOT_GRAD_1,
  SLOT_LABELS,       /* the batch's labels */
  SLOT_ROW_OUT,      /* per-row losses or results; a block's per-value results (elementwise) */
  SLOT_PARTIAL_A,    /* reduction partial sums, ping-pong */
  SLOT_PARTIAL_B,
  SLOT_WEIGHT,       /* the call's class weights or pos_weight */
  SLOT_LSE,          /* the batch's per-row log-sum-exp */
  SLOT_BIAS_PARTIAL, /* bias gradient: per-chunk column sums */
  SLOT_BIAS,         /* bias gradient */
  SLOT_SCALES,       /* device-resident calls: label statistics and reduction scales */
  SLOT_LABEL_PARTS,  /* device-resident calls on a GPU: label_stats_part's counts per span */
  SLOT_SUM_PARTIAL,  /* elementwise losses: chunk sums of the per-value losses */
  SLOT_ROW_SCALE,    /* NONE with opts->grad_output: the batch's per-row upstream gradients
                        (softmax), or a block's per-value ones (binary, pipelined) */
  SLOT_ARGMAX,       /* the batch's per-row argmax (int32) */
  SLOT_LINEAR_Z,     /* linear_xent: one rows × classes block of logits, then of their gradient */
  SLOT_LINEAR_STATE, /* linear_xent: the running softmax state of one chunk of rows */
  SLOT_LINEAR_GH,    /* linear_xent, 16-bit: float32 accumulators of a row chunk's grad_hidden, */
  SLOT_LINEAR_GW,    /* of grad_weight, */
  SLOT_LINEAR_GB,    /* of grad_bias */
  SLOT_LINEAR_LSE,   /* linear_xent: the rows' log-sum-exp (ex->lse) */
  SLOT_LINEAR_PACK_W, /* linear_xent: a class block of the weight, packed (linear_pack) */
  SLOT_LINEAR_PACK_H, /* linear_xent: a row block of hidden, packed */
  SLOT_LINEAR_PACK_HT, /* linear_xent: a row block of hidden, packed transposed for the logits (linear_pack_t) */
  SLOT_COUNT
};

/* ---------------------------------------------------------------- settings (config.c)
 * What a context is made with: the caller's clxent_config and clxent_tuning, each field not set
 * there taken from its CLXENT_* environment variable (parsed strictly), else left at 0 / AUTO for
 * the device's defaults (tuning.c). Strings are copied: the environment may change later. */
#define CLXENT_MAX_MEMBERS 64
typedef struct clxent_settings {
  clxent_switch cache;
  char cache_dir[1024];    /* "" = the default place */
  uint64_t max_alloc;      /* 0 = the device's */
  clxent_variant variant;
  unsigned vector_width;   /* 0 = the tuning table's */
  size_t group_size;       /* 0 = the tuning table's */
  size_t row_threads;      /* 0 = chosen from c per call */
  uint64_t block_bytes;    /* 0 = from the device's memory */
  clxent_switch zero_copy;
  clxent_switch own_math;  /* AUTO = the tuning table's */
  clxent_switch fused_bias; /* $CLXENT_FUSED_BIAS: OFF never, ON wherever the kernel exists, AUTO by chunk count */
  clxent_switch stream_grad; /* $CLXENT_STREAM_GRAD: OFF never, ON wherever the kernel can, AUTO past the cache */
  clxent_switch bf16_cvt;    /* $CLXENT_BF16_CVT: OFF the bit operations, else the CPU's instruction where it has one */
  size_t linear_rows;      /* linear_xent's block of logits; 0 = the tuning table's */
  size_t linear_classes;
  double split[CLXENT_MAX_MEMBERS];
  size_t split_count;      /* 0 = measured shares */
  const char *split_from;  /* where the split came from, for messages */
  char build_options[512];
  size_t direct_max;       /* $CLXENT_DIRECT_MAX when direct_max_set (0 = off), else the table's */
  int direct_max_set;
} clxent_settings;

/* ---------------------------------------------------------------- the context */

/* Pinned host memory (CL_MEM_ALLOC_HOST_PTR), mapped for the host for as long as it lives. */
typedef struct clxent_staging {
  cl_mem mem;
  void *ptr;
  size_t bytes;
} clxent_staging;

enum { PIPE_IN, PIPE_AUX, PIPE_GRAD, PIPE_ARRAYS }; /* the arrays a pipeline block moves */

typedef struct clxent_group clxent_group; /* group.c */

struct clxent_ctx {
  /* one device (all zero in a context over several devices, which has `group` instead) */
  cl_platform_id platform;
  cl_device_id device;
  cl_device_type device_type;
  cl_context context;
  cl_command_queue queue;
  cl_program program;
  cl_kernel kernels[KERNEL_COUNT][CLXENT_STORAGE_COUNT];
  cl_mem buffers[SLOT_COUNT];
  size_t buffer_sizes[SLOT_COUNT];
  float *host_scratch; /* the host's copy of values it reduces itself (reduce.c) */
  size_t host_scratch_bytes;

  /* the kernel shape and memory plan (tuning.c) */
  clxent_variant variant;  /* ITEM or GROUP */
  unsigned vector_width;
  size_t group_size;
  size_t row_threads;      /* group variant: work-items per softmax row; 0 = chosen from c */
  cl_ulong max_alloc;      /* CL_DEVICE_MAX_MEM_ALLOC_SIZE, or less when capped */
  cl_ulong local_mem;      /* CL_DEVICE_LOCAL_MEM_SIZE */
  cl_uint compute_units;   /* CL_DEVICE_MAX_COMPUTE_UNITS */
  int max_alloc_capped;
  cl_ulong global_mem;     /* CL_DEVICE_GLOBAL_MEM_SIZE */
  cl_ulong block_bytes;    /* largest block buffer the streaming loop uses */
  int zero_copy;           /* the device uses host memory in place: wrap the caller's arrays */
  int own_math;            /* kernels built with CLXENT_OWN_MATH=1: clxent's e^x, not the device's */
  clxent_switch fused_bias; /* settings' fused_bias (launch.c: clxent_bias_fused) */
  clxent_switch stream_grad; /* settings' stream_grad (launch.c) */
  int bf16_cvt;            /* kernels built with CLXENT_HOST_CVT_BF16=1 (host_cpu.c, kernels/common.cl) */
  int bf16_cvt_built;      /* ... and their compiler took it: they round by the instruction (program.c) */
  cl_ulong mem_cache;      /* CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, 0 where the device does not say */
  size_t linear_rows;      /* linear_xent: rows and classes per block of logits (tuning table) */
  int linear_rows_table;   /* linear_rows is the table's, not the caller's: a call may take fewer (linear.c) */
  size_t linear_classes;
  size_t direct_max;       /* direct.c takes calls of at most this many values; 0: never */
  int program_from_cache;  /* the program binary came from the on-disk cache */

  /* the pipelined host path (pipeline.c): transfer queues beside `queue`, pinned staging for two
   * blocks in flight, and the caller's clxent_host_alloc memory (pinned.c) */
  cl_command_queue upload_queue, download_queue;
  clxent_staging staging[2][PIPE_ARRAYS];
  clxent_staging *pinned;
  size_t pinned_count, pinned_capacity;

  clxent_group *group; /* several devices, or NULL */

  char device_name[256];
  char error[CLXENT_ERROR_MAX];
#ifdef CLXENT_PIECES
  struct clxent_piece {
    const char *what, *detail; /* the step that ended at t (static strings) */
    double t;
  } pieces[64];
  size_t piece_count;
#endif
};

/* ---------------------------------------------------------------- the pieces of a call
 * Only in the bench's own copy of the library (bench/small_calls.c, built with CLXENT_PIECES):
 * PIECE(ctx, what, detail) records that the step `what` of a call on ctx ended now, so that the
 * bench can tell where the time of one call goes. In the library itself it is nothing. */
#ifdef CLXENT_PIECES
static inline void clxent_piece_mark(clxent_ctx *ctx, const char *what, const char *detail) {
  if (ctx->piece_count < sizeof ctx->pieces / sizeof ctx->pieces[0])
    ctx->pieces[ctx->piece_count++] = (struct clxent_piece){what, detail, clxent_seconds()};
}
#define PIECE(ctx, what, detail) clxent_piece_mark((ctx), (what), (detail))
#else
#define PIECE(ctx, what, detail) ((void)0)
#endif

/* ---------------------------------------------------------------- the plan of a host-pointer call
 * What api.c decided, in named fields; the engines (stream.c, group.c) carry it out. */
typedef struct clxent_plan {
  clxent_kernel_id kernel;
  clxent_dtype dtype;
  size_t n, c;               /* n: the rows, N·S when inner = S > 1 */
  size_t inner;              /* 0 or 1: [n][c]; S > 1: [n/S][c][S], row r = i·S + s (clxent_ex.inner);
                                blocks and device splits then hold whole samples i (multiples of S) */
  int elementwise;          /* binary losses: n·c independent values, c columns of pos_weight */
  const void *in, *aux;     /* [n][c] inputs; aux NULL when the kernel takes none */
  const int32_t *labels;    /* [n] or NULL */
  const float *weight;      /* [c] class weights / pos_weight, or NULL */
  cl_int ignore_index;      /* hard labels */
  cl_int mode;              /* row_information: CLXENT_MODE_* */
  clxent_params params;     /* the kernels' scalars (plan.c) */
  void *grad;               /* [n][c], NULL, or == in */
  float *lse;               /* [n] or NULL */
  int32_t *argmax;          /* [n] or NULL (softmax losses) */
  float *bias_grad;         /* [c] or NULL */
  float *loss;              /* 1 value (MEAN, SUM) or n / n·c (NONE, information), or NULL */
  const float *row_scale;   /* NONE with opts->grad_output (and grad): each loss value's upstream
                               gradient, [n] (softmax) or [n·c] (elementwise), or NULL. (One g for
                               MEAN and SUM is folded into params instead: plan.c) */
  clxent_reduction reduction;
  float divisor;            /* of the batch sum (MEAN), else 1 */
} clxent_plan;

/* The partial results of running a plan on one device, left on it for the reduction: per-row
 * results (row kernels), chunk sums (elementwise, reduced), lse, bias partial sums, argmax. */
typedef struct clxent_results {
  cl_mem rows, chunks, lse, bias_partial, argmax;
} clxent_results;

/* ---------------------------------------------------------------- the rooms' interfaces */

/* errors.c */
const char *clxent_cl_error_name(cl_int err);
/* Records a printf-style message on ctx (or, with ctx NULL, in the thread's create error) and
 * returns status, so that failures read `return clxent_fail(ctx, STATUS, "...", ...)`. */
clxent_status clxent_fail(clxent_ctx *ctx, clxent_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* The status of a failed OpenCL call: OUT_OF_MEMORY for the allocation errors, else OPENCL. */
clxent_status clxent_cl_status(cl_int err);
clxent_status clxent_fail_cl(clxent_ctx *ctx, const char *call, cl_int err);
void clxent_clear_error(clxent_ctx *ctx);

/* config.c */
clxent_status clxent_resolve_settings(const clxent_config *config, clxent_settings *out);

/* A CPU device (PoCL) is the host's own CPU: the kernels' CLXENT_HAS_STREAM is set where this is
 * (launch.c), and host_cpu.c asks it for instructions the kernels may write out themselves. */
#if defined(__x86_64__) || defined(_M_X64)
#define CLXENT_HOST_IS_X86 1
#else
#define CLXENT_HOST_IS_X86 0
#endif
int clxent_host_cpu_has_bf16_cvt(void); /* AVX-512 BF16's vcvtneps2bf16 (host_cpu.c) */
int clxent_host_cpu_is_device(const char *device_name); /* a CPU device named after this host's CPU */
/* Copies the fields of a caller's sized struct (leading size_t size) that lie wholly within its
 * size over `known` (which holds the defaults); bytes past the known fields must be 0. field_ends
 * lists each field's end offset in order. Errors name `what` ("opts", "ex", ...). */
clxent_status clxent_read_sized(clxent_ctx *ctx, const char *what, const void *caller, void *known,
                                size_t known_size, const size_t *field_ends, size_t fields);

/* device.c: one device for `request` ("gpu", "cpu", "P:D", a name; NULL = the first GPU, else any). */
clxent_status clxent_select_device(clxent_ctx *ctx, const char *request);
/* The requests of "all": every device of every platform, as "P:D", at most CLXENT_MAX_MEMBERS. */
#define CLXENT_REQUEST_MAX 24 /* "P:D" with two 32-bit indices */
clxent_status clxent_all_devices(clxent_ctx *ctx, char (*requests)[CLXENT_REQUEST_MAX], size_t *count);

/* tuning.c: the kernel shape and memory plan of ctx's device under the settings. */
clxent_status clxent_choose_parameters(clxent_ctx *ctx, const clxent_settings *s);
/* An entry of the tuning table: the devices it is for and the kernel shape it gives them. */
typedef struct clxent_tuning_entry {
  cl_device_type type;     /* CL_DEVICE_TYPE_CPU, _GPU, or _ALL (any type) */
  const char *vendor;      /* CL_DEVICE_VENDOR contains one of these "|"-separated words (any case); NULL: any */
  const char *name;        /* CL_DEVICE_NAME likewise; NULL: any */
  clxent_variant variant;  /* ITEM or GROUP */
  unsigned vector_width;   /* 4, 8 or 16; or CLXENT_VEC_NATIVE: the device's native float vector (below) */
  size_t group_size;       /* a power of two; lowered to the device's limit */
  size_t row_threads;      /* group variant: work-items per row, a power of two; 0 = from c per call */
  int own_math;            /* 1: clxent's own e^x and tanh; 0: the device's */
  size_t linear_rows;      /* linear_xent: rows × classes of one block of logits (its scratch) */
  size_t linear_classes;
  size_t direct_max;       /* direct.c: calls of at most n·c values on the host (CPU devices); 0: off */
} clxent_tuning_entry;
/* A table entry's vector width that follows the device: CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT held to
 * [8, 16] (PoCL: 8 with AVX2, 16 with AVX-512; 4 on NEON, where 8 stays, as measured nowhere). */
#define CLXENT_VEC_NATIVE 0u
unsigned clxent_native_vector_width(cl_uint native_float_width);
/* The table's entry for a device: of those whose type, vendor and name match, the most specific
 * (name and vendor, then vendor, then the type alone); NULL vendor or name reads as "". Never NULL. */
const clxent_tuning_entry *clxent_tuning_lookup(cl_device_type type, const char *vendor, const char *name);
/* The whole table, for tests. */
const clxent_tuning_entry *clxent_tuning_table(size_t *count);

/* program.c / cache.c */
clxent_status clxent_build_program(clxent_ctx *ctx, const clxent_settings *s);
/* The cache's file for a key, if the cache is on: returns 0 (no cache) or 1 with path filled. */
int clxent_cache_path(const clxent_settings *s, const char *key, char *path, size_t size, char *dir, size_t dir_size);
cl_program clxent_cache_load(clxent_ctx *ctx, const char *key, const char *path, const char *dir, const char *options);
/* A cache file's binary, if the file is exactly key + length + SHA-256 + a binary that verifies. */
int clxent_cache_parse(const unsigned char *file, size_t size, const char *key, const unsigned char **binary,
                       size_t *binary_size);
void clxent_cache_store(clxent_ctx *ctx, const char *key, const char *path, const char *dir);

/* context.c: opens one device (the context's own OpenCL context and queue, kernels), for
 * clxent_create and for each member of a group. */
clxent_status clxent_open_device(clxent_ctx **out, const char *request, const clxent_settings *s);
clxent_status clxent_alloc_context(clxent_ctx **out);

/* buffers.c: a buffer of at least `bytes` in slot, reusing the one held when it is big enough. */
clxent_status clxent_buffer(clxent_ctx *ctx, enum clxent_slot slot, size_t bytes, cl_mem *out);
/* Caller memory as a buffer the device uses in place (CL_MEM_USE_HOST_PTR; zero-copy contexts).
 * A device may still compute in a cached copy of it (NVIDIA does): an output is current in host
 * memory only after a read of the buffer into its own pointer (stream.c, slice.c, linear.c). */
clxent_status clxent_wrap_host(clxent_ctx *ctx, cl_mem_flags flags, const void *ptr, size_t bytes, const char *what,
                               cl_mem *out);
/* Host memory of at least `bytes` kept by the context likewise, or NULL (no message: callers
 * have another way). */
float *clxent_host_scratch(clxent_ctx *ctx, size_t bytes);
void clxent_release_buffers(clxent_ctx *ctx);

/* copy.c: memcpy, split over threads when large (the staging copies of pipeline.c); _split with
 * a given number of threads (at most 8; tests) */
void clxent_copy(void *dst, const void *src, size_t bytes);
void clxent_copy_split(void *dst, const void *src, size_t bytes, size_t threads);

/* pinned.c */
clxent_status clxent_staging_buffer(clxent_ctx *ctx, int set, int array, size_t bytes, unsigned char **out);
int clxent_host_pinned(const clxent_ctx *ctx, const void *p, size_t bytes);
void clxent_release_pinned(clxent_ctx *ctx);

/* validate.c: the checks of the public entries. */
typedef struct clxent_region { /* memory a call touches: a host range, or a range of a buffer */
  const char *name;
  const void *host;  /* host pointer, or NULL */
  cl_mem mem;        /* buffer, or NULL */
  size_t bytes;      /* what the call needs */
  int output;
  size_t element;    /* alignment required (host); 0 = 4 bytes */
} clxent_region;
enum clxent_family { FAMILY_SOFTMAX, FAMILY_BINARY };
clxent_status clxent_check_ctx(const clxent_ctx *ctx);
clxent_status clxent_check_shape(clxent_ctx *ctx, size_t n, size_t c, const char *c_name);
clxent_status clxent_check_ptr(clxent_ctx *ctx, const void *p, const char *name);
clxent_status clxent_check_outputs(clxent_ctx *ctx, const void *loss, const void *grad);
/* Alignment (host), sizes and contexts (buffers), and outputs overlapping nothing before them but
 * grad == the first region exactly (in place). Inputs come first in the list. */
clxent_status clxent_check_regions(clxent_ctx *ctx, clxent_region *r, int count);
clxent_status clxent_check_opts(clxent_ctx *ctx, const clxent_opts *o, enum clxent_family family, size_t c,
                                float *weight_sum);
clxent_status clxent_check_dtype(clxent_ctx *ctx, clxent_dtype dtype);
/* opts->grad_output (its `count` values: 1, or under NONE one per loss value) and
 * opts->mean_denominator; after clxent_check_opts (the reduction is known valid). */
clxent_status clxent_check_upstream(clxent_ctx *ctx, const clxent_opts *o, size_t count);
/* How many values opts->grad_output holds for a call with `values` loss values under NONE. */
size_t clxent_upstream_count(const clxent_opts *o, size_t values);
clxent_status clxent_read_opts(clxent_ctx *ctx, const clxent_opts *caller, clxent_opts *out);
clxent_status clxent_read_ex(clxent_ctx *ctx, const clxent_ex *caller, clxent_ex *out);
/* Hard labels: each in [0, c) or ignore_index; *counted and *weighted (Σ w_y) of the counted.
 * inner S > 1: the n rows are [n/S][S], and a bad label is named by its (i, s) too. */
clxent_status clxent_check_labels(clxent_ctx *ctx, const int32_t *labels, size_t n, size_t c, size_t inner,
                                  int32_t ignore_index, const float *weight, size_t *counted, double *weighted);
/* BCE: every probability in [0, 1] (NaN passes: it must reach the result). */
clxent_status clxent_check_probs(clxent_ctx *ctx, const void *probs, size_t values, clxent_dtype dtype,
                                 const char *name);
size_t clxent_dtype_size(clxent_dtype t);

/* plan.c: the kernels' scalars for a reduction (see the file). */
clxent_params clxent_loss_params(const clxent_opts *o, double divisor, size_t counted, float weight_sum,
                                 float *reduce_divisor);
/* The per-value upstream gradients the kernels multiply by (NONE with grad_output and grad), else NULL. */
const float *clxent_row_scale(const clxent_opts *o, const void *grad);
/* Hard labels under MEAN divide by Σ w_y, so scaling the class weights by a power of two changes
 * nothing (bit for bit, short of under- and overflow) but lets weights of any positive size work:
 * equal subnormal weights once overflowed 1/Σ w into a NaN gradient. When `magnitude` (the
 * divisor Σ w_y, or where the labels are not seen, the largest weight) lies outside 2^±64,
 * *out receives a malloc'd copy scaled by 2^*shift so that magnitude·2^*shift is in [1, 2), and
 * *sum their sum; otherwise *out is NULL and the weights serve as they are. */
clxent_status clxent_scaled_weights(clxent_ctx *ctx, const float *w, size_t c, double magnitude, float **out,
                                    float *sum, int *shift);

/* launch.c: every kernel enqueue. */
typedef struct clxent_rows_launch { /* a row or elementwise loss kernel over a block */
  clxent_kernel_id kernel;
  clxent_dtype dtype;
  size_t rows, c, first_row; /* elementwise: rows = the block's values, first_row its first */
  size_t inner;              /* softmax: S > 1, the strided layout (rows and first_row multiples of S) */
  int cols;                  /* elementwise: columns of pos_weight */
  cl_mem in, aux, labels, weight;
  cl_int ignore_index, mode;
  clxent_params params;
  cl_mem grad, out, lse;
  cl_mem scales;    /* device-computed reduction scales (label_stats), or NULL */
  cl_mem row_scale; /* per-value upstream gradients, or NULL: softmax [batch] read at first_row + i;
                       elementwise the launch's own `rows` values */
  cl_mem argmax;    /* softmax: per-row argmax (int32, batch-indexed like lse), or NULL */
  cl_mem bias_partial; /* the bias gradient's chunk sums (bias.cl) that the block's gradient rows are
                          added to, or NULL: fused into the softmax kernel where clxent_bias_fused says so */
} clxent_rows_launch;
clxent_status clxent_launch_rows(clxent_ctx *ctx, const clxent_rows_launch *l);
int clxent_bias_fused(const clxent_ctx *ctx, const clxent_rows_launch *l);
clxent_status clxent_launch_chunk_sum(clxent_ctx *ctx, size_t first, size_t count, cl_mem values, cl_mem partial);
clxent_status clxent_launch_column_partial(clxent_ctx *ctx, clxent_dtype dtype, size_t first, size_t rows, size_t c,
                                           size_t inner, cl_mem grad, cl_mem partial);
clxent_status clxent_launch_column_sum(clxent_ctx *ctx, size_t n, size_t c, cl_mem partial, cl_mem out);
clxent_status clxent_launch_reduce_stage(clxent_ctx *ctx, size_t count, cl_mem in, cl_mem out, float divisor,
                                         cl_mem divisor_dev, size_t groups);
/* A column slice's rows (kernels/softmax_slice.cl): stats [rows][CLXENT_SLICE_VALUES], or the
 * gradient from the rows' lse (row_wy, row_scale may be NULL). */
clxent_status clxent_launch_slice_stats(clxent_ctx *ctx, clxent_dtype dtype, size_t rows, size_t c, size_t off, cl_mem logits,
                                        cl_mem labels, cl_mem weight, cl_int ignore_index, float cap, int smooth,
                                        cl_mem stats);
clxent_status clxent_launch_slice_grad(clxent_ctx *ctx, clxent_dtype dtype, size_t rows, size_t c, size_t off, size_t c_total,
                                       cl_mem logits, cl_mem labels, cl_mem weight, cl_int ignore_index,
                                       const clxent_params *p, cl_mem lse, cl_mem wy, cl_mem row_scale, cl_mem grad);
clxent_status clxent_launch_label_stats(clxent_ctx *ctx, size_t n, size_t c, cl_mem labels, cl_mem weight,
                                        cl_int ignore_index, int mean, cl_mem scales, cl_mem bad_labels);

/* linear_xent.cl's kernels, one launch each (launch.c); offsets and sizes in floats. */
typedef struct clxent_linear_launch {
  clxent_dtype dtype;            /* of hidden, weight, bias */
  size_t rows, classes, v, d;    /* the block R × V; the call's classes v and hidden size d */
  size_t first_row, first_class; /* the block's place in the batch and the vocabulary */
  size_t gh_row;                 /* the row of gh that is the block's first (first_row, or 0 in scratch) */
  cl_mem hidden, weight, bias, labels, class_weight, z, state, row_loss, row_lse, gh, gw, gb; /* gradients float32 */
  cl_mem dev_scales; /* device-resident calls: label_stats's scales, or NULL */
  cl_mem wp, hp;     /* the packed weight (class block) and hidden (row block) of the products */
  cl_mem hq;         /* the row block of hidden packed transposed, the logits' operand */
  size_t z_off;      /* where in z the block's logits are (floats): the slot of a kept block */
  cl_int ignore_index;
  clxent_params params;
  cl_int first, last;
} clxent_linear_launch;
enum clxent_linear_step { LINEAR_LOGITS, LINEAR_STATS, LINEAR_GRAD, LINEAR_DHIDDEN, LINEAR_DWEIGHT, LINEAR_DBIAS,
                          LINEAR_PACK_W, LINEAR_PACK_H, LINEAR_PACK_HT };
/* floats of a block of `rows` rows of d packed by linear_pack (panels of 2·VEC columns) */
size_t clxent_linear_packed(const clxent_ctx *ctx, size_t rows, size_t d);
/* floats from one row of the block of logits to the next: `classes` rounded up to a 64-byte line,
 * and one line more, so that a column's rows (grad_weight's operand walks them) do not all fall in
 * the same few cache sets when classes is a multiple of 256 */
size_t clxent_linear_ldz(size_t classes);
/* floats of a block of `rows` rows of d packed transposed by linear_pack_t (panels of 2·VEC rows) */
size_t clxent_linear_packed_t(const clxent_ctx *ctx, size_t rows, size_t d);
clxent_status clxent_launch_linear(clxent_ctx *ctx, enum clxent_linear_step step, const clxent_linear_launch *l);
/* out[offset + e] = x[e] for e < count in dtype (linear_narrow). */
clxent_status clxent_launch_linear_narrow(clxent_ctx *ctx, clxent_dtype dtype, size_t count, cl_mem x, cl_mem out,
                                          size_t offset);

/* stream.c: runs the plan over the batch on one device, in blocks; the partial results stay on
 * the device in *res. Returns with the queues drained, on every path. */
clxent_status clxent_stream(clxent_ctx *ctx, const clxent_plan *plan, clxent_results *res);
/* Runs the plan on one device and delivers every result to the host (reduce.c). */
clxent_status clxent_execute(clxent_ctx *ctx, const clxent_plan *plan);
/* pipeline.c: the batch through the double-buffered pinned pipeline (devices with own memory). */
clxent_status clxent_pipeline(clxent_ctx *ctx, const clxent_plan *plan, size_t block_rows, const clxent_results *res,
                              cl_mem labels, cl_mem weight, cl_mem row_scale);
/* The kernels of one block [first, first + rows) whose inputs are in in/aux (stream.c). row_scale:
 * the plan's upstream gradients, the batch's (softmax) or the block's (elementwise), or NULL. */
clxent_status clxent_block_kernels(clxent_ctx *ctx, const clxent_plan *plan, size_t first, size_t rows, cl_mem in,
                                   cl_mem aux, cl_mem grad, const clxent_results *res, cl_mem labels, cl_mem weight,
                                   cl_mem row_scale);
size_t clxent_chunk_count(size_t values, size_t chunk);

/* reduce.c */
/* Enqueues Σ values[0..n) / divisor in the fixed order of kernels/reduce.cl; the divisor is
 * divisor_dev's last float when given. The last stage writes `final` if given, else a context
 * buffer returned in *result. */
clxent_status clxent_enqueue_reduce(clxent_ctx *ctx, cl_mem values, size_t n, float divisor, cl_mem divisor_dev,
                                    cl_mem final, cl_mem *result);
/* Hands a plan's results on ctx's device to the host: loss (its reduction, or the values), lse,
 * argmax, bias gradient. `rows`/`chunks` may come from another device's results (group.c). Waits once
 * for everything on ctx->queue (also what clxent_execute's stream left queued), on every path.
 * A CPU device in host memory has few values summed on the host, in reduce_sum's exact order. */
clxent_status clxent_deliver(clxent_ctx *ctx, const clxent_plan *plan, const clxent_results *res);
clxent_status clxent_read_floats(clxent_ctx *ctx, cl_mem from, size_t count, float *to, const char *what);
/* The same for `bytes` bytes of any type (count 0 or `to` NULL: nothing). */
clxent_status clxent_read_bytes(clxent_ctx *ctx, cl_mem from, size_t bytes, void *to, const char *what);
/* Whether the calling thread's float arithmetic is the device threads' (round to nearest,
 * subnormals kept, single precision): a few ns, tested per call. */
int clxent_host_float_is_devices(void);
/* Σ v[0..count) / divisor in reduce_sum's exact order, on the host; v is overwritten, lane holds
 * group_size floats. */
float clxent_host_reduce(float *v, size_t count, size_t group_size, float divisor, float *lane);

/* direct.c: whether the plan is one the host computes itself on ctx, and the call itself (*done
 * 0: it could not have its scratch memory, nothing was written, the kernels are to run it). */
int clxent_direct_takes(const clxent_ctx *ctx, const clxent_plan *plan);
clxent_status clxent_direct(clxent_ctx *ctx, const clxent_plan *plan, int *done);

/* group.c: contexts over several devices. */
int clxent_is_group_request(const char *request);
clxent_status clxent_open_group(clxent_ctx *group, const char *request, const clxent_settings *s);
clxent_status clxent_group_execute(clxent_ctx *group, const clxent_plan *plan);
size_t clxent_group_count(const clxent_ctx *ctx);
clxent_ctx *clxent_group_member(const clxent_ctx *ctx, size_t k);
double clxent_group_share(const clxent_ctx *ctx, size_t k);
void clxent_group_destroy(clxent_group *group);
/* "all" found one device: its member, detached from the group, becomes the context. */
clxent_ctx *clxent_group_take_only_member(clxent_ctx *ctx);

#endif
