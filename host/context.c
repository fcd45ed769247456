/* Context lifecycle: creation on one device or a group of them, destruction, and what a context
 * reports about itself. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clxent_status clxent_alloc_context(clxent_ctx **out) {
  *out = calloc(1, sizeof **out);
  return *out ? CLXENT_OK
              : clxent_fail(NULL, CLXENT_ERR_OUT_OF_MEMORY, "calloc of the context (%zu bytes) failed", sizeof **out);
}

/* A context that failed to open: its message moves to the thread's create error, then it goes. */
static clxent_status abandon(clxent_ctx *ctx, clxent_status st) {
  clxent_fail(NULL, st, "%s", ctx->error);
  clxent_destroy(ctx);
  return st;
}

clxent_status clxent_open_device(clxent_ctx **out, const char *request, const clxent_settings *s) {
  clxent_ctx *ctx;
  *out = NULL;
  CHECK(clxent_alloc_context(&ctx));
  clxent_status st;
  cl_int err;
  CHECK_GOTO(clxent_select_device(ctx, request), st, fail);
  const cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
  ctx->context = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
  if (err != CL_SUCCESS) CHECK_GOTO(clxent_fail_cl(ctx, "clCreateContext", err), st, fail);
  ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, 0, &err);
  if (err != CL_SUCCESS) CHECK_GOTO(clxent_fail_cl(ctx, "clCreateCommandQueue", err), st, fail);
  CHECK_GOTO(clxent_choose_parameters(ctx, s), st, fail);
  CHECK_GOTO(clxent_build_program(ctx, s), st, fail);
  *out = ctx;
  return CLXENT_OK;
fail:
  return abandon(ctx, st);
}

clxent_status clxent_create_ex(clxent_ctx **out, const char *device, const clxent_config *config) {
  if (!out) return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL (pass the address of a clxent_ctx *)");
  *out = NULL;
  clxent_settings s;
  CHECK(clxent_resolve_settings(config, &s));
  if (!device) {
    const char *env = getenv("CLXENT_DEVICE");
    if (env && *env) device = env;
  }
  if (!clxent_is_group_request(device)) return clxent_open_device(out, device, &s);
  clxent_ctx *ctx;
  CHECK(clxent_alloc_context(&ctx));
  const clxent_status st = clxent_open_group(ctx, device, &s);
  if (st != CLXENT_OK) return abandon(ctx, st);
  if (clxent_group_count(ctx) == 1) { /* "all" on a machine with one device: an ordinary context */
    *out = clxent_group_take_only_member(ctx);
    clxent_destroy(ctx);
    return CLXENT_OK;
  }
  *out = ctx;
  return CLXENT_OK;
}

clxent_status clxent_create(clxent_ctx **out, const char *device) { return clxent_create_ex(out, device, NULL); }

void clxent_destroy(clxent_ctx *ctx) {
  if (!ctx) return;
  clxent_group_destroy(ctx->group);
  if (ctx->upload_queue) clFinish(ctx->upload_queue);
  if (ctx->download_queue) clFinish(ctx->download_queue);
  if (ctx->queue) clFinish(ctx->queue);
  clxent_release_buffers(ctx);
  clxent_release_pinned(ctx);
  if (ctx->upload_queue) clReleaseCommandQueue(ctx->upload_queue);
  if (ctx->download_queue) clReleaseCommandQueue(ctx->download_queue);
  for (int k = 0; k < KERNEL_COUNT; ++k)
    for (int t = 0; t < CLXENT_STORAGE_COUNT; ++t)
      if (ctx->kernels[k][t]) clReleaseKernel(ctx->kernels[k][t]);
  if (ctx->program) clReleaseProgram(ctx->program);
  if (ctx->queue) clReleaseCommandQueue(ctx->queue);
  if (ctx->context) clReleaseContext(ctx->context);
  free(ctx);
}

unsigned clxent_version(void) { return CLXENT_VERSION_NUMBER; }

#define CLXENT_STR_(x) #x
#define CLXENT_STR(x) CLXENT_STR_(x)
const char *clxent_version_string(void) {
  return CLXENT_STR(CLXENT_VERSION_MAJOR) "." CLXENT_STR(CLXENT_VERSION_MINOR) "." CLXENT_STR(CLXENT_VERSION_PATCH);
}

const char *clxent_device_name(const clxent_ctx *ctx) { return ctx ? ctx->device_name : ""; }

size_t clxent_device_count(const clxent_ctx *ctx) { return ctx ? clxent_group_count(ctx) : 0; }

double clxent_device_share(const clxent_ctx *ctx, size_t k) {
  return ctx && k < clxent_group_count(ctx) ? clxent_group_share(ctx, k) : 0.0;
}

clxent_status clxent_get_info(const clxent_ctx *ctx, size_t k, clxent_info *info) {
  CHECK(clxent_check_ctx(ctx));
  if (!info) return clxent_fail((clxent_ctx *)ctx, CLXENT_ERR_INVALID_ARG, "info is NULL");
  if (k >= clxent_group_count(ctx))
    return clxent_fail((clxent_ctx *)ctx, CLXENT_ERR_INVALID_ARG, "device %zu: the context has %zu", k,
                       clxent_group_count(ctx));
  if (info->size < sizeof(size_t) || info->size > 4096)
    return clxent_fail((clxent_ctx *)ctx, CLXENT_ERR_INVALID_ARG,
                       "info->size = %zu: start the struct from CLXENT_INFO_INIT", info->size);
  const clxent_ctx *d = ctx->group ? clxent_group_member(ctx, k) : ctx;
  clxent_info full = {.size = info->size,
                      .is_cpu = (d->device_type & CL_DEVICE_TYPE_CPU) != 0,
                      .variant = d->variant,
                      .vector_width = d->vector_width,
                      .group_size = d->group_size,
                      .row_threads = d->row_threads,
                      .zero_copy = d->zero_copy,
                      .program_from_cache = d->program_from_cache,
                      .block_bytes = d->block_bytes,
                      .max_alloc = d->max_alloc,
                      .global_mem = d->global_mem,
                      .own_math = d->own_math,
                      .linear_rows = d->linear_rows,
                      .linear_classes = d->linear_classes,
                      .direct_max = d->direct_max,
                      .bf16_cvt = d->bf16_cvt_built};
  /* an older caller's smaller struct gets the fields that fit */
  memcpy(info, &full, info->size < sizeof full ? info->size : sizeof full);
  return CLXENT_OK;
}
