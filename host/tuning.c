/*
 * The kernel shape and memory plan of a device: a tuning table by device type, overridden by the
 * settings (config.c), checked against the device's limits.
 */
#include "internal.h"

/* PoCL turns a work-item's explicit float8 loop into AVX2 code, while its loops across work-items
 * with barriers are slow, so CPUs get a row per work-item; GPUs get a work-group per row with
 * coalesced loads. */
static const struct {
  cl_device_type type;
  clxent_variant variant;
  unsigned vector_width;
  size_t group_size;
} tuning[] = {
    {CL_DEVICE_TYPE_CPU, CLXENT_VARIANT_ITEM, 8, 64},
    {CL_DEVICE_TYPE_ALL, CLXENT_VARIANT_GROUP, 4, 256}, /* GPUs, accelerators, others */
};

static size_t floor_pow2(size_t x) {
  size_t p = 1;
  while (p <= x / 2) p *= 2;
  return p;
}

static clxent_status device_info(clxent_ctx *ctx, cl_device_info what, size_t size, void *value, const char *name) {
  const cl_int err = clGetDeviceInfo(ctx->device, what, size, value, NULL);
  return err == CL_SUCCESS ? CLXENT_OK : clxent_fail_cl(ctx, name, err);
}

clxent_status clxent_choose_parameters(clxent_ctx *ctx, const clxent_settings *s) {
  size_t t = 0;
  while (!(tuning[t].type & ctx->device_type) && tuning[t].type != CL_DEVICE_TYPE_ALL) ++t;
  ctx->variant = s->variant != CLXENT_VARIANT_AUTO ? s->variant : tuning[t].variant;
  ctx->vector_width = s->vector_width ? s->vector_width : tuning[t].vector_width;

  size_t max_group = 1;
  CHECK(device_info(ctx, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group,
                    "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)"));
  if (s->group_size > max_group)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "group size %zu exceeds %s's largest work-group (%zu)",
                       s->group_size, ctx->device_name, max_group);
  ctx->group_size = s->group_size ? s->group_size : tuning[t].group_size;
  if (ctx->group_size > max_group) ctx->group_size = floor_pow2(max_group); /* the table's default only */
  if (s->row_threads > ctx->group_size)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "row threads %zu exceed the work-group size %zu", s->row_threads,
                       ctx->group_size);
  ctx->row_threads = s->row_threads;

  CHECK(device_info(ctx, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ctx->max_alloc, &ctx->max_alloc,
                    "clGetDeviceInfo(CL_DEVICE_MAX_MEM_ALLOC_SIZE)"));
  /* a cap on the largest buffer, to run the large-batch and allocation-failure paths on a device
   * whose limit (PoCL: a share of free host memory) is too large to reach in a test */
  if (s->max_alloc && s->max_alloc < ctx->max_alloc) ctx->max_alloc = s->max_alloc, ctx->max_alloc_capped = 1;
  CHECK(device_info(ctx, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ctx->global_mem, &ctx->global_mem,
                    "clGetDeviceInfo(CL_DEVICE_GLOBAL_MEM_SIZE)"));
  CHECK(device_info(ctx, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ctx->local_mem, &ctx->local_mem,
                    "clGetDeviceInfo(CL_DEVICE_LOCAL_MEM_SIZE)"));
  /* Three block buffers (input, targets, gradient) are in use at once: keep them in a quarter of
   * the device's memory each, and within one allocation. */
  const cl_ulong block = ctx->global_mem / 4 < ctx->max_alloc ? ctx->global_mem / 4 : ctx->max_alloc;
  ctx->block_bytes = s->block_bytes && s->block_bytes < block ? s->block_bytes : block;
  /* Zero-copy where the device computes in host memory anyway: a CPU device (PoCL) sharing it. A
   * GPU with unified memory (integrated) may also profit, but is left to measurement. */
  cl_bool unified = CL_FALSE;
  CHECK(device_info(ctx, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified,
                    "clGetDeviceInfo(CL_DEVICE_HOST_UNIFIED_MEMORY)"));
  ctx->zero_copy = s->zero_copy == CLXENT_AUTO ? unified && (ctx->device_type & CL_DEVICE_TYPE_CPU)
                                               : s->zero_copy == CLXENT_ON;
  return CLXENT_OK;
}
