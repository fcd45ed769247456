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

/* Environment knobs, read at context creation (documented in README):
 *   CLXENT_VARIANT=item|group   force the row mapping
 *   CLXENT_BLOCK_BYTES=N        cap the streaming block (tests use it to force many blocks)
 *   CLXENT_ROW_THREADS=T        group variant: work-items per softmax row (power of two)
 *   CLXENT_MAX_ALLOC=N          cap the largest device buffer (tests of the large-batch paths)
 *   CLXENT_CACHE=0              do not read or write the program binary cache
 *   CLXENT_ZERO_COPY=0|1        override the use of caller memory in place (default: CPU devices
 *                               with CL_DEVICE_HOST_UNIFIED_MEMORY) */

#endif
