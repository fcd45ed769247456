/* Status strings, OpenCL error names and the per-context / per-thread last-error message. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char create_error[CLXENT_ERROR_MAX];

const char *clxent_status_str(clxent_status status) {
  switch (status) {
    case CLXENT_OK: return "CLXENT_OK: success";
    case CLXENT_ERR_INVALID_ARG: return "CLXENT_ERR_INVALID_ARG: an argument is invalid";
    case CLXENT_ERR_LABEL_RANGE: return "CLXENT_ERR_LABEL_RANGE: a label is outside [0, classes)";
    case CLXENT_ERR_NO_DEVICE: return "CLXENT_ERR_NO_DEVICE: no OpenCL device matches the request";
    case CLXENT_ERR_BUILD: return "CLXENT_ERR_BUILD: the kernels failed to build for the device";
    case CLXENT_ERR_OUT_OF_MEMORY: return "CLXENT_ERR_OUT_OF_MEMORY: a host or device allocation failed";
    case CLXENT_ERR_OPENCL: return "CLXENT_ERR_OPENCL: an OpenCL call failed";
  }
  return "CLXENT_ERR_UNKNOWN: not a clxent_status value";
}

const char *clxent_last_error(const clxent_ctx *ctx) { return ctx ? ctx->error : create_error; }

void clxent_clear_error(clxent_ctx *ctx) {
  if (ctx) ctx->error[0] = '\0';
}

clxent_status clxent_fail(clxent_ctx *ctx, clxent_status status, const char *fmt, ...) {
  char *dst = ctx ? ctx->error : create_error;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, CLXENT_ERROR_MAX, fmt, ap);
  va_end(ap);
  return status;
}

clxent_status clxent_cl_status(cl_int err) {
  return (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
          err == CL_OUT_OF_HOST_MEMORY || err == CL_INVALID_BUFFER_SIZE)
             ? CLXENT_ERR_OUT_OF_MEMORY
             : CLXENT_ERR_OPENCL;
}

clxent_status clxent_fail_cl(clxent_ctx *ctx, const char *call, cl_int err) {
  return clxent_fail(ctx, clxent_cl_status(err), "%s failed: %s (%d)", call, clxent_cl_error_name(err), (int)err);
}

const char *clxent_cl_error_name(cl_int err) {
  switch (err) {
#define NAME(e) case e: return #e;
    NAME(CL_SUCCESS) NAME(CL_DEVICE_NOT_FOUND) NAME(CL_DEVICE_NOT_AVAILABLE)
    NAME(CL_COMPILER_NOT_AVAILABLE) NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    NAME(CL_OUT_OF_RESOURCES) NAME(CL_OUT_OF_HOST_MEMORY) NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
    NAME(CL_MEM_COPY_OVERLAP) NAME(CL_IMAGE_FORMAT_MISMATCH) NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    NAME(CL_BUILD_PROGRAM_FAILURE) NAME(CL_MAP_FAILURE) NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) NAME(CL_COMPILE_PROGRAM_FAILURE)
    NAME(CL_LINKER_NOT_AVAILABLE) NAME(CL_LINK_PROGRAM_FAILURE) NAME(CL_DEVICE_PARTITION_FAILED)
    NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) NAME(CL_INVALID_VALUE) NAME(CL_INVALID_DEVICE_TYPE)
    NAME(CL_INVALID_PLATFORM) NAME(CL_INVALID_DEVICE) NAME(CL_INVALID_CONTEXT)
    NAME(CL_INVALID_QUEUE_PROPERTIES) NAME(CL_INVALID_COMMAND_QUEUE) NAME(CL_INVALID_HOST_PTR)
    NAME(CL_INVALID_MEM_OBJECT) NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    NAME(CL_INVALID_IMAGE_SIZE) NAME(CL_INVALID_SAMPLER) NAME(CL_INVALID_BINARY)
    NAME(CL_INVALID_BUILD_OPTIONS) NAME(CL_INVALID_PROGRAM) NAME(CL_INVALID_PROGRAM_EXECUTABLE)
    NAME(CL_INVALID_KERNEL_NAME) NAME(CL_INVALID_KERNEL_DEFINITION) NAME(CL_INVALID_KERNEL)
    NAME(CL_INVALID_ARG_INDEX) NAME(CL_INVALID_ARG_VALUE) NAME(CL_INVALID_ARG_SIZE)
    NAME(CL_INVALID_KERNEL_ARGS) NAME(CL_INVALID_WORK_DIMENSION) NAME(CL_INVALID_WORK_GROUP_SIZE)
    NAME(CL_INVALID_WORK_ITEM_SIZE) NAME(CL_INVALID_GLOBAL_OFFSET) NAME(CL_INVALID_EVENT_WAIT_LIST)
    NAME(CL_INVALID_EVENT) NAME(CL_INVALID_OPERATION) NAME(CL_INVALID_GL_OBJECT)
    NAME(CL_INVALID_BUFFER_SIZE) NAME(CL_INVALID_MIP_LEVEL) NAME(CL_INVALID_GLOBAL_WORK_SIZE)
    NAME(CL_INVALID_PROPERTY) NAME(CL_INVALID_IMAGE_DESCRIPTOR) NAME(CL_INVALID_COMPILER_OPTIONS)
    NAME(CL_INVALID_LINKER_OPTIONS) NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef NAME
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "unknown OpenCL error";
  }
}
