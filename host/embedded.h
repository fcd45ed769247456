/* The kernel sources embedded at build time (cmake/embed_kernels.cmake writes their definitions
 * from the three lists in CMakeLists.txt, in program order). A file missing from kernels/ fails
 * the build; there is no list of names to keep in step here. */
#ifndef CLXENT_EMBEDDED_H
#define CLXENT_EMBEDDED_H

#include <stddef.h>

typedef struct clxent_source {
  const char *name; /* the file's name, for messages */
  const char *text;
  size_t length;
} clxent_source;

/* shared: clxent_defs.h, common.cl and math.cl, first; typed: once per storage type, after a line that
 * selects it (storage.cl first); untyped: once, last. */
extern const clxent_source clxent_sources_shared[], clxent_sources_typed[], clxent_sources_untyped[];
extern const size_t clxent_sources_shared_count, clxent_sources_typed_count, clxent_sources_untyped_count;

/* A build option the sources need on some devices: "-cl-fp32-correctly-rounded-divide-sqrt" where
 * the device offers it, else "". OpenCL lets a float division be 2.5 ulp off by default, and
 * NVIDIA's is: clxent's own ln x divides once, and with the default division it missed the host's
 * bits by an ulp on 1e5 inputs and tanh's derivative its bound (tests/test_math.c on an H200). */
struct _cl_device_id; /* cl_device_id, without CL/cl.h here: includers set CL_TARGET_OPENCL_VERSION */
const char *clxent_division_option(struct _cl_device_id *device);

#endif
