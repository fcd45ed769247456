/* Device buffers kept by the context between calls, and one host scratch array: a call that
 * needs no more than the buffer already held reuses it; a bigger one replaces it. */
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

static const char *const slot_names[SLOT_COUNT] = {
    [SLOT_IN] = "input block",           [SLOT_AUX] = "target block",       [SLOT_GRAD] = "gradient block",
    [SLOT_IN_1] = "input block",         [SLOT_AUX_1] = "target block",     [SLOT_GRAD_1] = "gradient block",
    [SLOT_LABELS] = "labels",            [SLOT_ROW_OUT] = "per-row results", [SLOT_PARTIAL_A] = "partial sums",
    [SLOT_PARTIAL_B] = "partial sums",   [SLOT_WEIGHT] = "weights",          [SLOT_LSE] = "log-sum-exp",
    [SLOT_BIAS_PARTIAL] = "bias partial sums", [SLOT_BIAS] = "bias gradient", [SLOT_SCALES] = "label statistics", [SLOT_LABEL_PARTS] = "label counts per span",
    [SLOT_SUM_PARTIAL] = "chunk sums",  [SLOT_ROW_SCALE] = "upstream gradients", [SLOT_ARGMAX] = "argmax",
    [SLOT_LINEAR_Z] = "linear_xent logits block", [SLOT_LINEAR_STATE] = "linear_xent softmax state",
    [SLOT_LINEAR_GH] = "linear_xent grad_hidden accumulators", [SLOT_LINEAR_GW] = "linear_xent grad_weight accumulators",
    [SLOT_LINEAR_GB] = "linear_xent grad_bias accumulators", [SLOT_LINEAR_LSE] = "linear_xent log-sum-exp",
    [SLOT_LINEAR_PACK_W] = "linear_xent packed weight block", [SLOT_LINEAR_PACK_H] = "linear_xent packed hidden block",
    [SLOT_LINEAR_PACK_HT] = "linear_xent hidden block packed for the logits"};

clxent_status clxent_buffer(clxent_ctx *ctx, enum clxent_slot slot, size_t bytes, cl_mem *out) {
  if (bytes == 0) bytes = sizeof(float);
  if (ctx->buffers[slot] && ctx->buffer_sizes[slot] >= bytes) {
    *out = ctx->buffers[slot];
    return CLXENT_OK;
  }
  if (ctx->buffers[slot]) {
    clReleaseMemObject(ctx->buffers[slot]);
    ctx->buffers[slot] = NULL;
    ctx->buffer_sizes[slot] = 0;
  }
  if ((cl_ulong)bytes > ctx->max_alloc)
    return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY,
                       "the %s need %zu bytes, more than one buffer can hold on %s "
                       "(CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu%s)",
                       slot_names[slot], bytes, ctx->device_name, (unsigned long long)ctx->max_alloc,
                       ctx->max_alloc_capped ? ", capped by the configured max_alloc" : "");
  cl_int err;
  cl_mem mem = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (err != CL_SUCCESS)
    return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(%zu bytes for the %s) failed: %s (%d)", bytes,
                       slot_names[slot], clxent_cl_error_name(err), (int)err);
  ctx->buffers[slot] = mem;
  ctx->buffer_sizes[slot] = bytes;
  *out = mem;
  return CLXENT_OK;
}

float *clxent_host_scratch(clxent_ctx *ctx, size_t bytes) {
  if (ctx->host_scratch_bytes >= bytes) return ctx->host_scratch;
  free(ctx->host_scratch);
  ctx->host_scratch = malloc(bytes);
  ctx->host_scratch_bytes = ctx->host_scratch ? bytes : 0;
  return ctx->host_scratch;
}

void clxent_release_buffers(clxent_ctx *ctx) {
  free(ctx->host_scratch);
  ctx->host_scratch = NULL;
  ctx->host_scratch_bytes = 0;
  for (int s = 0; s < SLOT_COUNT; ++s) {
    if (ctx->buffers[s]) clReleaseMemObject(ctx->buffers[s]);
    ctx->buffers[s] = NULL;
    ctx->buffer_sizes[s] = 0;
  }
}

clxent_status clxent_wrap_host(clxent_ctx *ctx, cl_mem_flags flags, const void *ptr, size_t bytes, const char *what,
                               cl_mem *out) {
  cl_int err;
  *out = clCreateBuffer(ctx->context, flags | CL_MEM_USE_HOST_PTR, bytes, (void *)(uintptr_t)ptr, &err);
  if (err == CL_SUCCESS) return CLXENT_OK;
  *out = NULL;
  return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(CL_MEM_USE_HOST_PTR, %zu bytes of %s) failed: %s (%d)",
                     bytes, what, clxent_cl_error_name(err), (int)err);
}
