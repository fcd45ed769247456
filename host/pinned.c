/*
 * Pinned host memory: the caller's (clxent_host_alloc) and the pipeline's staging buffers. Both
 * are CL_MEM_ALLOC_HOST_PTR buffers mapped once for as long as they live.
 */
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

/* A pinned buffer of `bytes`, mapped for the host through `queue`. */
static clxent_status pin(clxent_ctx *ctx, cl_command_queue queue, size_t bytes, const char *what,
                         clxent_staging *out) {
  cl_int err;
  out->mem = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &err);
  if (err != CL_SUCCESS) {
    out->mem = NULL;
    return clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(CL_MEM_ALLOC_HOST_PTR, %zu bytes of %s) failed: %s (%d)",
                       bytes, what, clxent_cl_error_name(err), (int)err);
  }
  out->ptr = clEnqueueMapBuffer(queue, out->mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL, NULL, &err);
  if (err != CL_SUCCESS) {
    clReleaseMemObject(out->mem), out->mem = NULL, out->ptr = NULL;
    return clxent_fail_cl(ctx, "clEnqueueMapBuffer(pinned memory)", err);
  }
  out->bytes = bytes;
  return CLXENT_OK;
}

static void unpin(clxent_ctx *ctx, clxent_staging *p) {
  if (!p->mem) return;
  if (p->ptr && clEnqueueUnmapMemObject(ctx->queue, p->mem, p->ptr, 0, NULL, NULL) == CL_SUCCESS) clFinish(ctx->queue);
  clReleaseMemObject(p->mem);
  p->mem = NULL, p->ptr = NULL, p->bytes = 0;
}

clxent_status clxent_staging_buffer(clxent_ctx *ctx, int set, int array, size_t bytes, unsigned char **out) {
  clxent_staging *st = &ctx->staging[set][array];
  if (!st->mem || st->bytes < bytes) {
    unpin(ctx, st);
    CHECK(pin(ctx, ctx->upload_queue, bytes, "staging", st));
  }
  *out = st->ptr;
  return CLXENT_OK;
}

int clxent_host_pinned(const clxent_ctx *ctx, const void *p, size_t bytes) {
  const uintptr_t a = (uintptr_t)p;
  for (size_t i = 0; i < ctx->pinned_count; ++i) {
    const uintptr_t b = (uintptr_t)ctx->pinned[i].ptr;
    if (a >= b && a - b <= ctx->pinned[i].bytes && bytes <= ctx->pinned[i].bytes - (a - b)) return 1;
  }
  return 0;
}

void clxent_release_pinned(clxent_ctx *ctx) {
  if (ctx->queue) {
    for (int s = 0; s < 2; ++s)
      for (int a = 0; a < PIPE_ARRAYS; ++a) unpin(ctx, &ctx->staging[s][a]);
    for (size_t i = 0; i < ctx->pinned_count; ++i) unpin(ctx, &ctx->pinned[i]);
  }
  free(ctx->pinned);
  ctx->pinned = NULL, ctx->pinned_count = ctx->pinned_capacity = 0;
}

void *clxent_host_alloc(clxent_ctx *ctx, size_t bytes) {
  if (!ctx) {
    clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL");
    return NULL;
  }
  clxent_clear_error(ctx);
  if (ctx->group) { /* several devices: pinned for the first, staged for the others */
    clxent_ctx *first = clxent_group_member(ctx, 0);
    void *p = clxent_host_alloc(first, bytes);
    if (!p) clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "%s", clxent_last_error(first));
    return p;
  }
  if (!bytes) {
    clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "bytes is 0");
    return NULL;
  }
  if (ctx->pinned_count == ctx->pinned_capacity) {
    const size_t capacity = ctx->pinned_capacity ? 2 * ctx->pinned_capacity : 8;
    clxent_staging *grown = realloc(ctx->pinned, capacity * sizeof *grown);
    if (!grown) {
      clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "realloc of the pinned-memory table failed");
      return NULL;
    }
    ctx->pinned = grown, ctx->pinned_capacity = capacity;
  }
  clxent_staging p = {NULL, NULL, 0};
  if (pin(ctx, ctx->queue, bytes, "clxent_host_alloc", &p) != CLXENT_OK) return NULL;
  if (((uintptr_t)p.ptr & 127) != 0) { /* not seen; the contract promises 128 */
    const void *at = p.ptr;
    unpin(ctx, &p);
    clxent_fail(ctx, CLXENT_ERR_OPENCL, "the driver mapped pinned memory at %p, not 128-byte aligned", at);
    return NULL;
  }
  ctx->pinned[ctx->pinned_count++] = p;
  return p.ptr;
}

clxent_status clxent_host_free(clxent_ctx *ctx, void *ptr) {
  CHECK(clxent_check_ctx(ctx));
  if (!ptr) return CLXENT_OK;
  if (ctx->group) {
    clxent_ctx *first = clxent_group_member(ctx, 0);
    const clxent_status st = clxent_host_free(first, ptr);
    return st == CLXENT_OK ? st : clxent_fail(ctx, st, "%s", clxent_last_error(first));
  }
  for (size_t i = 0; i < ctx->pinned_count; ++i) {
    if (ctx->pinned[i].ptr != ptr) continue;
    unpin(ctx, &ctx->pinned[i]);
    ctx->pinned[i] = ctx->pinned[--ctx->pinned_count];
    return CLXENT_OK;
  }
  return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ptr = %p did not come from clxent_host_alloc on this context", ptr);
}
