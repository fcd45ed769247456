/* Internal to clxent: the context and the helpers the host modules share. Not installed. */
#ifndef CLXENT_INTERNAL_H
#define CLXENT_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "clxent.h"

#define CLXENT_ERROR_MAX 4096

/* How a row is mapped onto the device (see kernels/common.cl). */
typedef enum clxent_variant { CLXENT_VARIANT_ITEM_PER_ROW, CLXENT_VARIANT_GROUP_PER_ROW } clxent_variant;

/* Reusable device buffers: each grows to the largest request seen and is reused for smaller ones. */
enum clxent_slot {
  SLOT_IN,      /* a block of logits / probabilities / p */
  SLOT_AUX,     /* a block of targets / q */
  SLOT_GRAD,    /* a block of the gradient */
  SLOT_LABELS,  /* the batch's labels */
  SLOT_ROW_OUT, /* the batch's per-row losses or results */
  SLOT_PARTIAL_A, /* reduction partial sums, ping-pong */
  SLOT_PARTIAL_B,
  SLOT_WEIGHT,    /* the call's class weights or pos_weight */
  SLOT_LSE,       /* the batch's per-row log-sum-exp */
  SLOT_BIAS_PARTIAL, /* bias gradient: per-chunk column sums */
  SLOT_BIAS,      /* bias gradient */
  SLOT_SCALES,    /* device-resident calls: label statistics and reduction scales */
  SLOT_SUM_PARTIAL, /* elementwise losses: chunk sums of the per-value losses */
  SLOT_IN_1,        /* the host path's second set of blocks (double buffering) */
  SLOT_AUX_1,
  SLOT_GRAD_1,
  SLOT_COUNT
};

/* Kernels. The first KERNEL_TYPED_COUNT exist once per storage type (kernels/storage.cl), the
 * others once, as kernels[id][CLXENT_FLOAT32]. */
typedef enum clxent_kernel_id {
  KERNEL_SOFTMAX_HARD,
  KERNEL_SOFTMAX_SOFT,
  KERNEL_SIGMOID_XENT,
  KERNEL_BCE,
  KERNEL_COLUMN_PARTIAL,
  KERNEL_TYPED_COUNT,
  KERNEL_ROW_INFORMATION = KERNEL_TYPED_COUNT,
  KERNEL_REDUCE_SUM,
  KERNEL_COLUMN_SUM,
  KERNEL_LABEL_STATS,
  KERNEL_CHUNK_SUM,
  KERNEL_COPY_FLOAT4,
  KERNEL_COUNT
} clxent_kernel_id;

#define CLXENT_DTYPE_COUNT 3
#define CLXENT_BIAS_CHUNK 64 /* rows per partial sum of the bias gradient (kernels/bias.cl) */

/* Pinned host memory (CL_MEM_ALLOC_HOST_PTR), mapped for the host for as long as it lives. */
typedef struct clxent_staging {
  cl_mem mem;
  void *ptr;
  size_t bytes;
} clxent_staging;

struct clxent_ctx {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
  cl_program program;
  cl_kernel kernels[KERNEL_COUNT][CLXENT_DTYPE_COUNT];
  cl_mem buffers[SLOT_COUNT];
  size_t buffer_sizes[SLOT_COUNT];

  clxent_variant variant;
  unsigned vector_width;   /* CLXENT_VEC */
  size_t group_size;       /* CLXENT_GROUP_SIZE */
  size_t row_threads;      /* group variant: work-items per softmax row; 0 = chosen from c */
  cl_ulong max_alloc;      /* CL_DEVICE_MAX_MEM_ALLOC_SIZE, or less with CLXENT_MAX_ALLOC */
  int max_alloc_capped;    /* CLXENT_MAX_ALLOC lowered it */
  cl_ulong global_mem;     /* CL_DEVICE_GLOBAL_MEM_SIZE */
  cl_ulong block_bytes;    /* largest block buffer the streaming loop uses */
  cl_device_type device_type;
  int program_from_cache;  /* the program binary came from the on-disk cache */
  int zero_copy;           /* the device uses host memory in place: wrap the caller's arrays */
  char device_name[256];
  char error[CLXENT_ERROR_MAX];

  /* the pipelined host path (losses.c): transfer queues beside `queue`, pinned staging for two
   * blocks in flight (input, targets, gradient), and the caller's clxent_host_alloc memory */
  cl_command_queue upload_queue, download_queue;
  clxent_staging staging[2][3];
  clxent_staging *pinned;
  size_t pinned_count, pinned_capacity;

  /* a context over several devices: one context per device, and the share of rows each takes;
   * such a context has no device, context or queue of its own */
  clxent_ctx **members;
  double *shares;          /* the split in use; sum to 1 */
  double *estimate;        /* the shares measured over the calls (split.c), unless shares_fixed */
  size_t member_count;
  int shares_fixed;        /* CLXENT_SPLIT gave them */
};

/* errors.c */
const char *clxent_cl_error_name(cl_int err);
/* Records a printf-style message on ctx (or, with ctx NULL, in the thread's create error) and
 * returns status, so that failures read `return clxent_fail(ctx, STATUS, "...", ...)`. */
clxent_status clxent_fail(clxent_ctx *ctx, clxent_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Maps a failed OpenCL call to a status (OUT_OF_MEMORY for the allocation errors, OPENCL
 * otherwise) with a message naming the call and the CL error. */
clxent_status clxent_cl_status(cl_int err);
clxent_status clxent_fail_cl(clxent_ctx *ctx, const char *call, cl_int err);
void clxent_clear_error(clxent_ctx *ctx);

/* device.c */
clxent_status clxent_select_device(clxent_ctx *ctx, const char *request);
/* program.c */
clxent_status clxent_build_program(clxent_ctx *ctx);
/* buffers.c: a buffer of at least `bytes` in slot, reusing the one held when it is big enough. */
clxent_status clxent_buffer(clxent_ctx *ctx, enum clxent_slot slot, size_t bytes, cl_mem *out);
void clxent_release_buffers(clxent_ctx *ctx);
/* Unmaps and releases pinned memory (waits for the context's queues first). */
void clxent_release_staging(clxent_ctx *ctx, clxent_staging *staging);

/* losses.c: enqueues one row kernel (argument layout of CLXENT_ROW_KERNEL_ARGS in
 * kernels/common.cl) over a block of rows, with the geometry of the context's variant. */
typedef struct clxent_row_launch {
  clxent_kernel_id kernel;
  clxent_dtype dtype;
  size_t rows, c, first_row;
  cl_mem in, aux, labels, weight; /* any but in may be NULL */
  cl_int iarg;
  cl_float8 params; /* CLXENT_P_* in kernels/common.cl */
  cl_mem grad, out, lse;
  cl_mem scales; /* device-computed reduction scales (label_stats), or NULL */
} clxent_row_launch;
clxent_status clxent_launch_rows(clxent_ctx *ctx, const clxent_row_launch *launch);
/* Parameters of a plain call: no options, gradient scale `scale`. */
cl_float8 clxent_plain_params(float scale, size_t c);

size_t clxent_dtype_size(clxent_dtype t);

/* A loss over a batch of n rows of c values. Softmax kernels work a row at a time; the binary
 * ones are elementwise and are launched over the n·c values with a row length of 1. */
typedef struct row_job {
  clxent_kernel_id kernel;
  clxent_dtype dtype;
  size_t n, c;
  int elementwise;       /* binary: launch n·c values, iarg = c (columns of pos_weight) */
  const void *in, *aux;  /* [n][c] inputs; aux NULL when the kernel takes none */
  const int32_t *labels; /* [n] or NULL */
  const float *weight;   /* [c] class weights / pos_weight, or NULL */
  cl_int iarg;           /* ignore_index or mode */
  cl_float8 params;      /* CLXENT_P_* */
  void *grad;            /* [n][c], NULL, or == in */
  float *lse;            /* [n] or NULL */
  float *bias_grad;      /* [c] or NULL */
  /* elementwise jobs stream their per-value results: NONE copies each block's into loss_out,
   * MEAN/SUM fold them into chunk sums (kernels/reduce.cl chunk_sum) */
  float *loss_out;
  clxent_reduction reduction;
} row_job;

/* The device buffers of a call that live across its blocks. */
typedef struct call_buffers {
  cl_mem labels, weight, out, lse, bias_partial, sum_partial;
} call_buffers;

#define CLXENT_SUM_CHUNK 64 /* values per chunk sum of the elementwise losses (kernels/reduce.cl) */

/* Runs job over the batch in blocks; the per-row results (n floats; elementwise: the chunk sums),
 * lse and bias partial sums stay on the device in *cb. Returns with the queues drained. */
clxent_status clxent_run_rows(clxent_ctx *ctx, const row_job *job, call_buffers *cb);
/* result = Σ values[0..n) / divisor in the fixed order of kernels/reduce.cl, to the host. */
clxent_status clxent_reduce_values(clxent_ctx *ctx, cl_mem values, size_t n, float divisor, float *result);
/* job->bias_grad = the column sums of the bias partials of job->n rows, to the host. */
clxent_status clxent_deliver_bias(clxent_ctx *ctx, const row_job *job, cl_mem partial);

/* split.c, also used by the benchmark: a monotonic clock in seconds, and the median of t[0..k)
 * (sorts t). */
double clxent_seconds(void);
double clxent_median(double *t, int k);

/* split.c: contexts over several devices (clxent_create with "all" or a list). */
int clxent_is_group_request(const char *request);
clxent_status clxent_create_group(clxent_ctx *group, const char *request);
/* A host-path job split by rows over the members, then reduced on the first member. */
clxent_status clxent_run_split(clxent_ctx *group, const row_job *job, clxent_reduction reduction, float divisor,
                               float *loss);

/* Environment knobs, read at context creation (documented in README):
 *   CLXENT_VARIANT=item|group   force the row mapping
 *   CLXENT_BLOCK_BYTES=N        cap the streaming block (tests use it to force many blocks)
 *   CLXENT_ROW_THREADS=T        group variant: work-items per softmax row (power of two)
 *   CLXENT_MAX_ALLOC=N          cap the largest device buffer (tests of the large-batch paths)
 *   CLXENT_CACHE=0              do not read or write the program binary cache
 *   CLXENT_ZERO_COPY=0|1        override the use of caller memory in place (default: CPU devices
 *                               with CL_DEVICE_HOST_UNIFIED_MEMORY) */

#endif
