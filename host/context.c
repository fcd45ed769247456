/* Context lifecycle: device, OpenCL context and in-order queue, program, buffers. */
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
  if (ctx->queue) clFinish(ctx->queue);
  clxent_release_buffers(ctx);
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
