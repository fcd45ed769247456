/* Device selection: "gpu", "cpu", "P:D", or a case-insensitive substring of the device or platform
 * name; NULL takes the first GPU, else the first device (clxent_create reads $CLXENT_DEVICE before).
 * Indices follow clGetPlatformIDs and clGetDeviceIDs(CL_DEVICE_TYPE_ALL) order, as `clxent devices`
 * prints them. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

static int contains_nocase(const char *hay, const char *needle) {
  const size_t n = strlen(needle);
  for (; *hay; ++hay) {
    size_t k = 0;
    while (k < n && hay[k] && tolower((unsigned char)hay[k]) == tolower((unsigned char)needle[k])) ++k;
    if (k == n) return 1;
  }
  return n == 0;
}

/* "P:D" with two non-negative decimal indices; anything else is not an index request. */
static int parse_index_pair(const char *s, unsigned *p, unsigned *d) {
  char *end;
  if (!isdigit((unsigned char)*s)) return 0;
  const unsigned long pi = strtoul(s, &end, 10);
  if (*end != ':' || !isdigit((unsigned char)end[1])) return 0;
  const unsigned long di = strtoul(end + 1, &end, 10);
  if (*end != '\0' || pi >= MAX_PLATFORMS || di >= MAX_DEVICES) return 0;
  *p = (unsigned)pi;
  *d = (unsigned)di;
  return 1;
}

static clxent_status platforms_of(clxent_ctx *ctx, cl_platform_id *platforms, cl_uint *np) {
  const cl_int err = clGetPlatformIDs(MAX_PLATFORMS, platforms, np);
  if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && *np == 0))
    return clxent_fail(ctx, CLXENT_ERR_NO_DEVICE,
                       "no OpenCL platform is installed (for the CPU: apt-get install pocl-opencl-icd)");
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clGetPlatformIDs", err);
  if (*np > MAX_PLATFORMS) *np = MAX_PLATFORMS;
  return CLXENT_OK;
}

clxent_status clxent_all_devices(clxent_ctx *ctx, char (*requests)[CLXENT_REQUEST_MAX], size_t *count) {
  cl_platform_id platforms[MAX_PLATFORMS];
  cl_uint np = 0;
  CHECK(platforms_of(ctx, platforms, &np));
  *count = 0;
  for (cl_uint p = 0; p < np; ++p) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS) continue;
    for (cl_uint d = 0; d < nd && *count < CLXENT_MAX_MEMBERS; ++d)
      snprintf(requests[(*count)++], CLXENT_REQUEST_MAX, "%u:%u", p, d);
  }
  if (!*count) return clxent_fail(ctx, CLXENT_ERR_NO_DEVICE, "device \"all\": no OpenCL device is available");
  return CLXENT_OK;
}

clxent_status clxent_select_device(clxent_ctx *ctx, const char *request) {
  cl_platform_id platforms[MAX_PLATFORMS];
  cl_uint np = 0;
  CHECK(platforms_of(ctx, platforms, &np));

  unsigned want_p = 0, want_d = 0;
  const int by_index = request && parse_index_pair(request, &want_p, &want_d);
  const int want_gpu = request && !strcmp(request, "gpu");
  const int want_cpu = request && !strcmp(request, "cpu");
  /* Pass 0 looks for the preferred match; with no request it prefers GPUs, then pass 1 takes any. */
  for (int pass = 0; pass < 2; ++pass) {
    for (cl_uint p = 0; p < np; ++p) {
      cl_device_id devices[MAX_DEVICES];
      cl_uint nd = 0;
      if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devices, &nd) != CL_SUCCESS) continue;
      if (nd > MAX_DEVICES) nd = MAX_DEVICES;
      char pname[256] = "";
      clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
      for (cl_uint d = 0; d < nd; ++d) {
        cl_device_type type = 0;
        char dname[256] = "";
        clGetDeviceInfo(devices[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
        clGetDeviceInfo(devices[d], CL_DEVICE_NAME, sizeof dname, dname, NULL);
        int match;
        if (!request) match = pass == 1 || (type & CL_DEVICE_TYPE_GPU);
        else if (by_index) match = p == want_p && d == want_d;
        else if (want_gpu) match = (type & CL_DEVICE_TYPE_GPU) != 0;
        else if (want_cpu) match = (type & CL_DEVICE_TYPE_CPU) != 0;
        else match = contains_nocase(dname, request) || contains_nocase(pname, request);
        if (match) {
          ctx->platform = platforms[p];
          ctx->device = devices[d];
          ctx->device_type = type;
          snprintf(ctx->device_name, sizeof ctx->device_name, "%s", dname);
          return CLXENT_OK;
        }
      }
    }
    if (request) break;
  }
  return clxent_fail(ctx, CLXENT_ERR_NO_DEVICE,
                     "no OpenCL device matches device \"%s\" (accepted: NULL, \"gpu\", \"cpu\", "
                     "\"P:D\", or part of a device or platform name; `clxent devices` lists them)",
                     request ? request : "(default)");
}
