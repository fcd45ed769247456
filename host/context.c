/* Context lifecycle: device, OpenCL context and in-order queue, program, buffers. */
#include <stdint.h>
#include <stdlib.h>

#include "clxent_cl.h"
#include "internal.h"

clxent_opts clxent_opts_default(void) {
  clxent_opts o;
  o.reduction = CLXENT_MEAN;
  o.ignore_index = -100;
  o.class_weight = NULL;
  o.label_smoothing = 0.0f;
  o.z_loss = 0.0f;
  o.softcap = 0.0f;
  o.pos_weight = NULL;
  return o;
}

clxent_ex clxent_ex_default(void) {
  clxent_ex ex;
  ex.dtype = CLXENT_FLOAT32;
  ex.lse = NULL;
  ex.bias_grad = NULL;
  return ex;
}

clxent_status clxent_create(clxent_ctx **out, const char *device) {
  if (!out) return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL (pass the address of a clxent_ctx *)");
  *out = NULL;
  clxent_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return clxent_fail(NULL, CLXENT_ERR_OUT_OF_MEMORY, "calloc of the context (%zu bytes) failed", sizeof *ctx);
  const char *request = device ? device : getenv("CLXENT_DEVICE");
  if (clxent_is_group_request(request)) { /* several devices: split.c */
    const clxent_status st = clxent_create_group(ctx, request);
    if (st != CLXENT_OK) {
      clxent_fail(NULL, st, "%s", ctx->error);
      clxent_destroy(ctx);
      return st;
    }
    if (ctx->member_count == 1) { /* "all" on a machine with one device: an ordinary context */
      *out = ctx->members[0];
      ctx->member_count = 0;
      clxent_destroy(ctx);
      return CLXENT_OK;
    }
    *out = ctx;
    return CLXENT_OK;
  }

  clxent_status st = clxent_select_device(ctx, device);
  cl_int err = CL_SUCCESS;
  if (st == CLXENT_OK) {
    const cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
    ctx->context = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clCreateContext", err);
  }
  if (st == CLXENT_OK) {
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, 0, &err);
    if (err != CL_SUCCESS) st = clxent_fail_cl(ctx, "clCreateCommandQueue", err);
  }
  if (st == CLXENT_OK) st = clxent_build_program(ctx);
  if (st != CLXENT_OK) {
    clxent_fail(NULL, st, "%s", ctx->error); /* the context dies: keep its message per thread */
    clxent_destroy(ctx);
    return st;
  }
  *out = ctx;
  return CLXENT_OK;
}

clxent_status clxent_create_from_queue(clxent_ctx **out, cl_command_queue queue) {
  if (!out) return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL (pass the address of a clxent_ctx *)");
  *out = NULL;
  if (!queue) return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "queue is NULL");
  cl_command_queue_properties props = 0;
  cl_context context = NULL;
  cl_device_id device = NULL;
  cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
  if (err == CL_SUCCESS) err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof context, &context, NULL);
  if (err == CL_SUCCESS) err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof device, &device, NULL);
  if (err != CL_SUCCESS)
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "queue is not a valid command queue (clGetCommandQueueInfo: %s)",
                       clxent_cl_error_name(err));
  if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG,
                       "queue is out of order: clxent enqueues dependent commands and needs an in-order queue");
  clxent_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return clxent_fail(NULL, CLXENT_ERR_OUT_OF_MEMORY, "calloc of the context (%zu bytes) failed", sizeof *ctx);
  /* retained first, so that clxent_destroy releases exactly what it holds on every path */
  if (clRetainCommandQueue(queue) == CL_SUCCESS) ctx->queue = queue;
  if (clRetainContext(context) == CL_SUCCESS) ctx->context = context;
  ctx->device = device;
  clxent_status st = ctx->queue && ctx->context ? CLXENT_OK
                                                : clxent_fail(ctx, CLXENT_ERR_OPENCL, "retaining the caller's queue failed");
  if (st == CLXENT_OK &&
      ((err = clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof ctx->platform, &ctx->platform, NULL)) != CL_SUCCESS ||
       (err = clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof ctx->device_type, &ctx->device_type, NULL)) != CL_SUCCESS ||
       (err = clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof ctx->device_name - 1, ctx->device_name, NULL)) !=
           CL_SUCCESS))
    st = clxent_fail_cl(ctx, "clGetDeviceInfo(the queue's device)", err);
  if (st == CLXENT_OK) st = clxent_build_program(ctx);
  if (st != CLXENT_OK) {
    clxent_fail(NULL, st, "%s", ctx->error);
    clxent_destroy(ctx);
    return st;
  }
  *out = ctx;
  return CLXENT_OK;
}

void clxent_destroy(clxent_ctx *ctx) {
  if (!ctx) return;
  for (size_t k = 0; k < ctx->member_count; ++k) clxent_destroy(ctx->members[k]);
  free(ctx->members);
  free(ctx->shares);
  free(ctx->estimate);
  if (ctx->upload_queue) clFinish(ctx->upload_queue);
  if (ctx->download_queue) clFinish(ctx->download_queue);
  if (ctx->queue) clFinish(ctx->queue);
  clxent_release_buffers(ctx);
  if (ctx->queue) {
    for (int s = 0; s < 2; ++s)
      for (int a = 0; a < 3; ++a) clxent_release_staging(ctx, &ctx->staging[s][a]);
    for (size_t i = 0; i < ctx->pinned_count; ++i) clxent_release_staging(ctx, &ctx->pinned[i]);
  }
  free(ctx->pinned);
  if (ctx->upload_queue) clReleaseCommandQueue(ctx->upload_queue);
  if (ctx->download_queue) clReleaseCommandQueue(ctx->download_queue);
  for (int k = 0; k < KERNEL_COUNT; ++k)
    for (int t = 0; t < CLXENT_DTYPE_COUNT; ++t)
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

clxent_mem_ex clxent_mem_ex_default(void) {
  clxent_mem_ex ex;
  ex.dtype = CLXENT_FLOAT32;
  ex.lse = NULL;
  ex.bias_grad = NULL;
  ex.bad_labels = NULL;
  return ex;
}

void *clxent_host_alloc(clxent_ctx *ctx, size_t bytes) {
  if (!ctx) {
    clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL");
    return NULL;
  }
  clxent_clear_error(ctx);
  if (ctx->member_count) { /* several devices: pinned for the first, staged for the others */
    void *p = clxent_host_alloc(ctx->members[0], bytes);
    if (!p) clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "%s", clxent_last_error(ctx->members[0]));
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
  cl_int err;
  clxent_staging p = {NULL, NULL, bytes};
  p.mem = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &err);
  if (err != CL_SUCCESS) {
    clxent_fail(ctx, clxent_cl_status(err), "clCreateBuffer(CL_MEM_ALLOC_HOST_PTR, bytes = %zu) failed: %s (%d)", bytes,
                clxent_cl_error_name(err), (int)err);
    return NULL;
  }
  p.ptr = clEnqueueMapBuffer(ctx->queue, p.mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL, NULL, &err);
  if (err != CL_SUCCESS) {
    clReleaseMemObject(p.mem);
    clxent_fail_cl(ctx, "clEnqueueMapBuffer(pinned memory)", err);
    return NULL;
  }
  if (((uintptr_t)p.ptr & 127) != 0) { /* not seen; the contract promises 128 */
    const void *at = p.ptr;
    clxent_release_staging(ctx, &p);
    clxent_fail(ctx, CLXENT_ERR_OPENCL, "the driver mapped pinned memory at %p, not 128-byte aligned", at);
    return NULL;
  }
  ctx->pinned[ctx->pinned_count++] = p;
  return p.ptr;
}

clxent_status clxent_host_free(clxent_ctx *ctx, void *ptr) {
  if (!ctx) return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "ctx is NULL");
  if (!ptr) return CLXENT_OK;
  if (ctx->member_count) {
    const clxent_status st = clxent_host_free(ctx->members[0], ptr);
    return st == CLXENT_OK ? st : clxent_fail(ctx, st, "%s", clxent_last_error(ctx->members[0]));
  }
  for (size_t i = 0; i < ctx->pinned_count; ++i) {
    if (ctx->pinned[i].ptr != ptr) continue;
    clxent_release_staging(ctx, &ctx->pinned[i]);
    ctx->pinned[i] = ctx->pinned[--ctx->pinned_count];
    return CLXENT_OK;
  }
  return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "ptr = %p did not come from clxent_host_alloc on this context", ptr);
}

size_t clxent_device_count(const clxent_ctx *ctx) { return !ctx ? 0 : ctx->member_count ? ctx->member_count : 1; }

double clxent_device_share(const clxent_ctx *ctx, size_t k) {
  if (!ctx || k >= clxent_device_count(ctx)) return 0.0;
  return ctx->member_count ? ctx->shares[k] : 1.0;
}
