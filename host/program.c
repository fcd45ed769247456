/*
 * Builds the embedded kernel sources for the device with the defines of its kernel shape and of
 * its exponential (tuning.c), through the on-disk cache of program binaries (cache.c), and creates
 * every kernel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "internal.h"

static const char *const kernel_names[KERNEL_COUNT] = {
    [KERNEL_SOFTMAX_HARD] = "softmax_xent_hard", [KERNEL_SOFTMAX_SOFT] = "softmax_xent_soft", [KERNEL_SOFTMAX_HARD_SHORT] = "softmax_xent_hard_short",
    [KERNEL_SOFTMAX_HARD_BIAS] = "softmax_xent_hard_bias", [KERNEL_SOFTMAX_HARD_TILE] = "softmax_xent_hard_tile",
    [KERNEL_SIGMOID_XENT] = "sigmoid_xent",      [KERNEL_BCE] = "bce",
    [KERNEL_SIGMOID_XENT_SUMS] = "sigmoid_xent_sums", [KERNEL_BCE_SUMS] = "bce_sums",
    [KERNEL_COLUMN_PARTIAL] = "column_partial",
    [KERNEL_SOFTMAX_STRIDED] = "softmax_xent_strided", [KERNEL_COLUMN_PARTIAL_STRIDED] = "column_partial_strided",  [KERNEL_ROW_INFORMATION] = "row_information",
    [KERNEL_REDUCE_SUM] = "reduce_sum",          [KERNEL_REDUCE_SUM_ITEMS] = "reduce_sum_items",          [KERNEL_COLUMN_SUM] = "column_sum", [KERNEL_COLUMN_SUM_GROUP] = "column_sum_group",
    [KERNEL_LABEL_STATS] = "label_stats",        [KERNEL_LABEL_STATS_PART] = "label_stats_part",        [KERNEL_CHUNK_SUM] = "chunk_sum",
    [KERNEL_SLICE_STATS] = "softmax_slice_stats", [KERNEL_SLICE_GRAD] = "softmax_slice_grad",
    [KERNEL_LINEAR_LOGITS] = "linear_logits",    [KERNEL_LINEAR_STATS] = "linear_stats",
    [KERNEL_LINEAR_GRAD] = "linear_grad",        [KERNEL_LINEAR_DHIDDEN] = "linear_dhidden",
    [KERNEL_LINEAR_DWEIGHT] = "linear_dweight",  [KERNEL_LINEAR_DBIAS] = "linear_dbias",
    [KERNEL_LINEAR_NARROW] = "linear_narrow",   [KERNEL_LINEAR_PACK] = "linear_pack",
    [KERNEL_LINEAR_PACK_T] = "linear_pack_t"};
static const char *const storage_suffixes[CLXENT_STORAGE_COUNT] = {"_f32", "_f16", "_bf16"};
static const char *const storage_lines[CLXENT_STORAGE_COUNT] = {
    "#undef CLXENT_STORAGE\n#define CLXENT_STORAGE CLXENT_STORAGE_F32\n",
    "#undef CLXENT_STORAGE\n#define CLXENT_STORAGE CLXENT_STORAGE_F16\n",
    "#undef CLXENT_STORAGE\n#define CLXENT_STORAGE CLXENT_STORAGE_BF16\n"};

#define MAX_PARTS 64

/* The program's source, in order: the shared files; for each storage type a line selecting it
 * and the typed files; then the untyped files. */
static size_t program_parts(const char **parts, size_t *lengths) {
  size_t k = 0;
  for (size_t i = 0; i < clxent_sources_shared_count; ++i)
    parts[k] = clxent_sources_shared[i].text, lengths[k++] = clxent_sources_shared[i].length;
  for (int t = 0; t < CLXENT_STORAGE_COUNT; ++t) {
    parts[k] = storage_lines[t], lengths[k++] = strlen(storage_lines[t]);
    for (size_t i = 0; i < clxent_sources_typed_count; ++i)
      parts[k] = clxent_sources_typed[i].text, lengths[k++] = clxent_sources_typed[i].length;
  }
  for (size_t i = 0; i < clxent_sources_untyped_count; ++i)
    parts[k] = clxent_sources_untyped[i].text, lengths[k++] = clxent_sources_untyped[i].length;
  return k;
}

/* The cache key: device, driver, platform version, every source byte and the build options. */
static void program_key(clxent_ctx *ctx, const char *options, char *key, size_t size) {
  char driver[128] = "", platform[256] = "";
  clGetDeviceInfo(ctx->device, CL_DRIVER_VERSION, sizeof driver, driver, NULL);
  clGetPlatformInfo(ctx->platform, CL_PLATFORM_VERSION, sizeof platform, platform, NULL);
  const char *parts[MAX_PARTS];
  size_t lengths[MAX_PARTS];
  const size_t count = program_parts(parts, lengths);
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the sources: a key, not a checksum */
  for (size_t i = 0; i < count; ++i)
    for (size_t j = 0; j < lengths[i]; ++j) h = (h ^ (unsigned char)parts[i][j]) * 0x100000001b3ull;
  snprintf(key, size, "clxent-program-cache 4\ndevice=%s\ndriver=%s\nplatform=%s\nsource=%016llx\noptions=%s\n",
           ctx->device_name, driver, platform, (unsigned long long)h, options);
}

static clxent_status build_from_source(clxent_ctx *ctx, const char *options) {
  const char *parts[MAX_PARTS];
  size_t lengths[MAX_PARTS];
  const size_t count = program_parts(parts, lengths);
  cl_int err;
  ctx->program = clCreateProgramWithSource(ctx->context, (cl_uint)count, parts, lengths, &err);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clCreateProgramWithSource", err);
  err = clBuildProgram(ctx->program, 1, &ctx->device, options, NULL, NULL);
  if (err == CL_SUCCESS) return CLXENT_OK;
  /* The whole log, then the part that fits the message. A driver's log can be far longer than the
   * message (NVIDIA repeats a warning per kernel before the error), and a buffer too small for it
   * makes clGetProgramBuildInfo fail and write nothing: ask for its size first. Where the log does
   * not fit beside the message's own text, the excerpt starts at the first line that says
   * "error", since that is what the caller needs. */
  size_t len = 0;
  char *log = NULL;
  const char *excerpt = "(the driver gave no build log)";
  if (clGetProgramBuildInfo(ctx->program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len) == CL_SUCCESS && len > 1) {
    if (!(log = calloc(len + 1, 1)))
      excerpt = "(not fetched: out of host memory)";
    else if (clGetProgramBuildInfo(ctx->program, ctx->device, CL_PROGRAM_BUILD_LOG, len, log, NULL) == CL_SUCCESS &&
             log[0])
      excerpt = log;
  }
  int from_error = 0;
  const size_t room = CLXENT_ERROR_MAX - 128 - strlen(options) - strlen(ctx->device_name);
  if (excerpt == log && strlen(log) > room) {
    const char *first_error = strstr(log, "error");
    if (first_error) {
      while (first_error > log && first_error[-1] != '\n') --first_error;
      excerpt = first_error, from_error = first_error > log;
    }
  }
  const clxent_status st =
      clxent_fail(ctx, CLXENT_ERR_BUILD, "clBuildProgram for %s with \"%s\" failed: %s (%d); log%s:\n%s", ctx->device_name,
                  options, clxent_cl_error_name(err), (int)err, from_error ? " (from its first error)" : "", excerpt);
  free(log);
  return st;
}

const char *clxent_division_option(cl_device_id device) {
  cl_device_fp_config fp = 0;
  if (clGetDeviceInfo(device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL) != CL_SUCCESS) fp = 0;
  return fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT ? "-cl-fp32-correctly-rounded-divide-sqrt" : "";
}

/* Whether the built program has a kernel of this name, by its list of names (CL_PROGRAM_KERNEL_NAMES,
 * ';'-separated), not by a failing clCreateKernel, which debugging layers (Oclgrind --check-api)
 * report as an error. 0 where the list cannot be had. */
static int program_has_kernel(cl_program program, const char *name) {
  size_t size = 0;
  if (clGetProgramInfo(program, CL_PROGRAM_KERNEL_NAMES, 0, NULL, &size) != CL_SUCCESS || size < 2) return 0;
  char *names = malloc(size);
  int found = 0;
  if (names && clGetProgramInfo(program, CL_PROGRAM_KERNEL_NAMES, size, names, NULL) == CL_SUCCESS) {
    names[size - 1] = '\0';
    const size_t len = strlen(name);
    for (const char *p = names; (p = strstr(p, name)) != NULL; ++p)
      if ((p == names || p[-1] == ';') && (p[len] == ';' || p[len] == '\0')) {
        found = 1;
        break;
      }
  }
  free(names);
  return found;
}

clxent_status clxent_build_program(clxent_ctx *ctx, const clxent_settings *s) {
  char options[768];
  /* the options are part of the cache key, so programs of either exponential never mix */
  snprintf(options, sizeof options,
           "-cl-std=CL1.2 -DCLXENT_ROW_PER_ITEM=%d -DCLXENT_VEC=%u -DCLXENT_GROUP_SIZE=%zu -DCLXENT_OWN_MATH=%d "
           "-DCLXENT_HOST_CVT_BF16=%d %s %s",
           ctx->variant == CLXENT_VARIANT_ITEM, ctx->vector_width, ctx->group_size, ctx->own_math, ctx->bf16_cvt,
           clxent_division_option(ctx->device), s->build_options);
  char key[2048], path[1200], dir[1100];
  program_key(ctx, options, key, sizeof key);
  const int cached = clxent_cache_path(s, key, path, sizeof path, dir, sizeof dir);
  if (cached) ctx->program = clxent_cache_load(ctx, key, path, dir, options);
  ctx->program_from_cache = ctx->program != NULL;
  if (!ctx->program) {
    CHECK(build_from_source(ctx, options));
    if (cached) clxent_cache_store(ctx, key, path, dir);
  }
  for (int k = 0; k < KERNEL_COUNT; ++k)
    for (int t = 0; t < (k < KERNEL_TYPED_COUNT ? CLXENT_STORAGE_COUNT : 1); ++t) {
      if (k == KERNEL_SOFTMAX_HARD_BIAS && ctx->variant != CLXENT_VARIANT_ITEM) continue; /* one item per row only */
      if (k == KERNEL_SOFTMAX_HARD_TILE && ctx->variant != CLXENT_VARIANT_GROUP) continue; /* work-groups only */
      char name[64];
      snprintf(name, sizeof name, "%s%s", kernel_names[k], k < KERNEL_TYPED_COUNT ? storage_suffixes[t] : "");
      /* the chunk sums' kernels exist where the compiler has their transposes (binary.cl); the
       * host launches the plain kernels and chunk_sum elsewhere */
      if ((k == KERNEL_SIGMOID_XENT_SUMS || k == KERNEL_BCE_SUMS) && !program_has_kernel(ctx->program, name)) continue;
      cl_int err;
      ctx->kernels[k][t] = clCreateKernel(ctx->program, name, &err);
      if (err != CL_SUCCESS)
        return clxent_fail(ctx, clxent_cl_status(err), "clCreateKernel(%s) failed: %s (%d)", name,
                           clxent_cl_error_name(err), (int)err);
    }
  /* the kernels' compiler may refuse the host's request (kernels/common.cl's gates: Clang 15 or
   * older, AVX-512 DQ, 16 lanes): the marker kernel exists only where they took it */
  ctx->bf16_cvt_built = ctx->bf16_cvt && program_has_kernel(ctx->program, "clxent_built_with_cvt_bf16");
  return CLXENT_OK;
}
