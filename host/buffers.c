/* Device buffers kept by the context between calls: a call that needs no more than the buffer
 * already held reuses it; a bigger one replaces it. */
#include "internal.h"

clxent_status clxent_buffer(clxent_ctx *ctx, enum clxent_slot slot, size_t bytes, cl_mem *out) {
  static const char *const slot_names[SLOT_COUNT] = {"input block", "target block", "gradient block",
                                                     "labels", "per-row results",
                                                     "partial sums", "partial sums", "weights",
                                                     "log-sum-exp", "bias partial sums", "bias gradient",
                                                     "label statistics", "chunk sums", "input block",
                                                     "target block", "gradient block"};
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
                       ctx->max_alloc_capped ? ", capped by CLXENT_MAX_ALLOC" : "");
  cl_int err;
  cl_mem mem = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (err != CL_SUCCESS)
    return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(%zu bytes for the %s) failed: %s (%d)",
                       bytes, slot_names[slot], clxent_cl_error_name(err), (int)err);
  ctx->buffers[slot] = mem;
  ctx->buffer_sizes[slot] = bytes;
  *out = mem;
  return CLXENT_OK;
}

void clxent_release_buffers(clxent_ctx *ctx) {
  for (int s = 0; s < SLOT_COUNT; ++s) {
    if (ctx->buffers[s]) clReleaseMemObject(ctx->buffers[s]);
    ctx->buffers[s] = NULL;
    ctx->buffer_sizes[s] = 0;
  }
}

void clxent_release_staging(clxent_ctx *ctx, clxent_staging *staging) {
  if (!staging->mem) return;
  if (staging->ptr && clEnqueueUnmapMemObject(ctx->queue, staging->mem, staging->ptr, 0, NULL, NULL) == CL_SUCCESS)
    clFinish(ctx->queue);
  clReleaseMemObject(staging->mem);
  staging->mem = NULL, staging->ptr = NULL, staging->bytes = 0;
}
