/* Builds the embedded kernel sources for the selected device with the defines of its variant,
 * through an on-disk cache of program binaries. */
#define _POSIX_C_SOURCE 200809L /* mkdir, getpid */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Generated at build time from the sources in kernels/ (cmake/embed_kernels.cmake). */
extern const char *const clxent_kernel_sources[];
extern const size_t clxent_kernel_source_lengths[];
extern const size_t clxent_kernel_source_count;
extern const char *const clxent_kernel_source_names[];

static const char *const kernel_names[KERNEL_COUNT] = {
    "softmax_xent_hard", "softmax_xent_soft", "sigmoid_xent", "bce",        "column_partial",
    "row_information",   "reduce_sum",        "column_sum",   "label_stats", "chunk_sum", "copy_float4"};
static const char *const dtype_suffixes[CLXENT_DTYPE_COUNT] = {"_f32", "_f16", "_bf16"};

/* The program's source, in order: common.cl; then for each storage type a line selecting it and
 * the typed files (storage.cl first); then the untyped files. */
static const char *const typed_files[] = {"storage", "softmax_xent", "binary", "bias"};
static const char *const untyped_files[] = {"distributions", "reduce"};
static const char *const storage_lines[CLXENT_DTYPE_COUNT] = {
    "#undef CLXENT_STORAGE\n#define CLXENT_STORAGE 0\n", "#undef CLXENT_STORAGE\n#define CLXENT_STORAGE 1\n",
    "#undef CLXENT_STORAGE\n#define CLXENT_STORAGE 2\n"};
#define TYPED_FILES (sizeof typed_files / sizeof typed_files[0])
#define UNTYPED_FILES (sizeof untyped_files / sizeof untyped_files[0])
#define PROGRAM_PARTS (1 + CLXENT_DTYPE_COUNT * (1 + TYPED_FILES) + UNTYPED_FILES)

static size_t source_index(const char *stem) {
  for (size_t i = 0; i < clxent_kernel_source_count; ++i)
    if (!strcmp(clxent_kernel_source_names[i], stem)) return i;
  return 0; /* not reached: the file list is fixed at build time */
}

static void program_parts(const char **parts, size_t *lengths) {
  size_t k = 0, f;
  f = source_index("common");
  parts[k] = clxent_kernel_sources[f], lengths[k++] = clxent_kernel_source_lengths[f];
  for (int t = 0; t < CLXENT_DTYPE_COUNT; ++t) {
    parts[k] = storage_lines[t], lengths[k++] = strlen(storage_lines[t]);
    for (size_t i = 0; i < TYPED_FILES; ++i) {
      f = source_index(typed_files[i]);
      parts[k] = clxent_kernel_sources[f], lengths[k++] = clxent_kernel_source_lengths[f];
    }
  }
  for (size_t i = 0; i < UNTYPED_FILES; ++i) {
    f = source_index(untyped_files[i]);
    parts[k] = clxent_kernel_sources[f], lengths[k++] = clxent_kernel_source_lengths[f];
  }
}

/* Tuning table: the row mapping and widths per device class. PoCL turns a work-item's explicit
 * float8 loop into AVX2 code, while its loops across work-items with barriers are slow, so CPUs
 * get a row per work-item; GPUs get a work-group per row with coalesced loads. */
static const struct {
  cl_device_type type;
  clxent_variant variant;
  unsigned vector_width;
  size_t group_size;
} tuning[] = {
    {CL_DEVICE_TYPE_CPU, CLXENT_VARIANT_ITEM_PER_ROW, 8, 64},
    {CL_DEVICE_TYPE_ALL, CLXENT_VARIANT_GROUP_PER_ROW, 4, 256}, /* GPUs, accelerators, others */
};

static size_t env_size(const char *name, size_t fallback) {
  const char *v = getenv(name);
  if (!v || !*v) return fallback;
  char *end;
  const unsigned long long x = strtoull(v, &end, 10);
  return (*end == '\0' && x > 0) ? (size_t)x : fallback;
}

static size_t floor_pow2(size_t x) {
  size_t p = 1;
  while (p * 2 <= x) p *= 2;
  return p;
}

static clxent_status choose_parameters(clxent_ctx *ctx) {
  size_t t = 0;
  while (!(tuning[t].type & ctx->device_type) && tuning[t].type != CL_DEVICE_TYPE_ALL) ++t;
  ctx->variant = tuning[t].variant;
  ctx->vector_width = tuning[t].vector_width;
  ctx->group_size = tuning[t].group_size;

  const char *variant = getenv("CLXENT_VARIANT");
  if (variant && !strcmp(variant, "item")) ctx->variant = CLXENT_VARIANT_ITEM_PER_ROW;
  else if (variant && !strcmp(variant, "group")) ctx->variant = CLXENT_VARIANT_GROUP_PER_ROW;
  else if (variant && *variant)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "CLXENT_VARIANT=\"%s\": expected item or group", variant);
  ctx->vector_width = (unsigned)env_size("CLXENT_VEC", ctx->vector_width);
  if (ctx->vector_width != 4 && ctx->vector_width != 8 && ctx->vector_width != 16)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "CLXENT_VEC=%u: expected 4, 8 or 16", ctx->vector_width);

  size_t max_group = 1;
  cl_int err = clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group, NULL);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)", err);
  ctx->group_size = floor_pow2(env_size("CLXENT_GROUP_SIZE", ctx->group_size));
  if (ctx->group_size > max_group) ctx->group_size = floor_pow2(max_group);
  ctx->row_threads = env_size("CLXENT_ROW_THREADS", 0);
  if (ctx->row_threads) ctx->row_threads = floor_pow2(ctx->row_threads);
  if (ctx->row_threads > ctx->group_size) ctx->row_threads = ctx->group_size;

  err = clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ctx->max_alloc, &ctx->max_alloc, NULL);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clGetDeviceInfo(CL_DEVICE_MAX_MEM_ALLOC_SIZE)", err);
  /* CLXENT_MAX_ALLOC caps the largest buffer, to run the large-batch and allocation-failure paths
   * on a device whose limit (PoCL: a share of free host memory) is too large to reach in a test */
  const size_t cap = env_size("CLXENT_MAX_ALLOC", 0);
  if (cap && cap < ctx->max_alloc) ctx->max_alloc = cap, ctx->max_alloc_capped = 1;
  err = clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ctx->global_mem, &ctx->global_mem, NULL);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clGetDeviceInfo(CL_DEVICE_GLOBAL_MEM_SIZE)", err);
  /* Three block buffers (input, targets, gradient) are in use at once: keep them in a quarter of
   * the device's memory each, and within one allocation. */
  cl_ulong block = ctx->global_mem / 4 < ctx->max_alloc ? ctx->global_mem / 4 : ctx->max_alloc;
  ctx->block_bytes = env_size("CLXENT_BLOCK_BYTES", (size_t)block);
  /* Zero-copy where the device computes in host memory anyway: a CPU device (PoCL) sharing it. A
   * GPU with unified memory (integrated) may also profit, but is left to measurement. */
  cl_bool unified = CL_FALSE;
  err = clGetDeviceInfo(ctx->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clGetDeviceInfo(CL_DEVICE_HOST_UNIFIED_MEMORY)", err);
  ctx->zero_copy = unified && (ctx->device_type & CL_DEVICE_TYPE_CPU);
  const char *zc = getenv("CLXENT_ZERO_COPY");
  if (zc && *zc) ctx->zero_copy = strcmp(zc, "0") != 0;
  if (ctx->block_bytes > block) ctx->block_bytes = block;
  return CLXENT_OK;
}

/* ---- program binary cache: $XDG_CACHE_HOME/clxent or ~/.cache/clxent, off with CLXENT_CACHE=0.
 * A file is named by a hash of its key and starts with the key itself (device, driver, platform
 * version, kernel source hash, build options), so a stale or colliding file is never used. Any
 * cache trouble falls back to building from source: the cache can make a start faster, never fail. */

static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static int cache_dir(char *dir, size_t size) {
  const char *off = getenv("CLXENT_CACHE");
  if (off && !strcmp(off, "0")) return 0;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n;
  if (xdg && *xdg) n = snprintf(dir, size, "%s/clxent", xdg);
  else if (home && *home) n = snprintf(dir, size, "%s/.cache/clxent", home);
  else return 0;
  return n > 0 && (size_t)n < size;
}

static void cache_key(clxent_ctx *ctx, const char *options, char *key, size_t size, char *path, size_t path_size,
                      const char *dir) {
  char driver[128] = "", platform[256] = "";
  clGetDeviceInfo(ctx->device, CL_DRIVER_VERSION, sizeof driver, driver, NULL);
  clGetPlatformInfo(ctx->platform, CL_PLATFORM_VERSION, sizeof platform, platform, NULL);
  uint64_t src = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < clxent_kernel_source_count; ++i)
    src = fnv1a(src, clxent_kernel_sources[i], clxent_kernel_source_lengths[i]);
  snprintf(key, size, "clxent-program-cache 2\ndevice=%s\ndriver=%s\nplatform=%s\nsource=%016llx\noptions=%s\n",
           ctx->device_name, driver, platform, (unsigned long long)src, options);
  snprintf(path, path_size, "%s/%016llx.bin", dir, (unsigned long long)fnv1a(0xcbf29ce484222325ull, key, strlen(key)));
}

/* Returns a built program from the cache, or NULL. */
static cl_program cache_load(clxent_ctx *ctx, const char *key, const char *path, const char *options) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  const size_t key_len = strlen(key);
  char stored[1024];
  unsigned char *binary = NULL;
  cl_program program = NULL;
  long end;
  if (key_len < sizeof stored && fread(stored, 1, key_len, f) == key_len && !memcmp(stored, key, key_len) &&
      fseek(f, 0, SEEK_END) == 0 && (end = ftell(f)) > (long)key_len && fseek(f, (long)key_len, SEEK_SET) == 0) {
    const size_t size = (size_t)end - key_len;
    binary = malloc(size);
    if (binary && fread(binary, 1, size, f) == size) {
      cl_int err, status;
      const unsigned char *bins[1] = {binary};
      program = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &size, bins, &status, &err);
      if (err != CL_SUCCESS || status != CL_SUCCESS) program = NULL;
      else if (clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(program);
        program = NULL;
      }
    }
  }
  free(binary);
  fclose(f);
  return program;
}

static void mkdir_parents(const char *dir) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; ++p)
    if (*p == '/') *p = '\0', mkdir(tmp, 0755), *p = '/';
  mkdir(tmp, 0755);
}

/* Writes the program's binary beside a temporary name, then renames it: readers never see half a
 * file, and concurrent writers of the same key write the same bytes. */
static void cache_store(clxent_ctx *ctx, const char *key, const char *path, const char *dir) {
  size_t size = 0;
  if (clGetProgramInfo(ctx->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
    return;
  unsigned char *binary = malloc(size);
  unsigned char *bins[1] = {binary};
  if (!binary || clGetProgramInfo(ctx->program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) {
    free(binary);
    return;
  }
  mkdir_parents(dir);
  char tmp[1200];
  snprintf(tmp, sizeof tmp, "%.1100s.%ld.tmp", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (f) {
    const int ok = fwrite(key, 1, strlen(key), f) == strlen(key) && fwrite(binary, 1, size, f) == size;
    if (fclose(f) == 0 && ok && rename(tmp, path) == 0) tmp[0] = '\0';
    if (tmp[0]) remove(tmp);
  }
  free(binary);
}

clxent_status clxent_build_program(clxent_ctx *ctx) {
  clxent_status st = choose_parameters(ctx);
  if (st != CLXENT_OK) return st;

  char options[512];
  const char *extra = getenv("CLXENT_BUILD_OPTIONS"); /* for experiments and fault injection */
  snprintf(options, sizeof options, "-cl-std=CL1.2 -DCLXENT_ROW_PER_ITEM=%d -DCLXENT_VEC=%u -DCLXENT_GROUP_SIZE=%zu %s",
           ctx->variant == CLXENT_VARIANT_ITEM_PER_ROW, ctx->vector_width, ctx->group_size,
           extra ? extra : "");
  char dir[1024], key[2048], path[1100];
  const int cached = cache_dir(dir, sizeof dir);
  if (cached) {
    cache_key(ctx, options, key, sizeof key, path, sizeof path, dir);
    ctx->program = cache_load(ctx, key, path, options);
    ctx->program_from_cache = ctx->program != NULL;
  }
  if (!ctx->program) {
    cl_int err;
    const char *parts[PROGRAM_PARTS];
    size_t lengths[PROGRAM_PARTS];
    program_parts(parts, lengths);
    ctx->program = clCreateProgramWithSource(ctx->context, (cl_uint)PROGRAM_PARTS, parts, lengths, &err);
    if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clCreateProgramWithSource", err);
    err = clBuildProgram(ctx->program, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
      char log[CLXENT_ERROR_MAX - 256] = "";
      size_t len = 0;
      clGetProgramBuildInfo(ctx->program, ctx->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, &len);
      if (len == 0 || len > sizeof log - 1) log[sizeof log - 1] = '\0';
      return clxent_fail(ctx, CLXENT_ERR_BUILD, "clBuildProgram for %s with \"%s\" failed: %s (%d); log:\n%s",
                         ctx->device_name, options, clxent_cl_error_name(err), (int)err, log);
    }
    if (cached) cache_store(ctx, key, path, dir);
  }
  for (int k = 0; k < KERNEL_COUNT; ++k)
    for (int t = 0; t < (k < KERNEL_TYPED_COUNT ? CLXENT_DTYPE_COUNT : 1); ++t) {
      char name[64];
      snprintf(name, sizeof name, "%s%s", kernel_names[k], k < KERNEL_TYPED_COUNT ? dtype_suffixes[t] : "");
      cl_int err;
      ctx->kernels[k][t] = clCreateKernel(ctx->program, name, &err);
      if (err != CL_SUCCESS)
        return clxent_fail(ctx, clxent_cl_status(err), "clCreateKernel(%s) failed: %s (%d)", name,
                           clxent_cl_error_name(err), (int)err);
    }
  return CLXENT_OK;
}
