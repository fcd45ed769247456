/*
 * The kernel shape and memory plan of a device: a tuning table by device type, vendor and name (as
 * CLBlast keeps one), overridden by the settings (config.c), checked against the device's limits.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The tuning table. A device takes the most specific entry that matches it (clxent_tuning_lookup):
 * device name and vendor, then vendor, then its type alone; between entries of the same rank the
 * earlier wins, so a narrower pattern ("A770") goes before a wider one ("A7").
 * Entries carry a device type because a vendor word alone would be ambiguous: PoCL reports the
 * CPU's maker as the vendor of its CPU device ("AuthenticAMD", "GenuineIntel"), which an "AMD" or
 * "Intel" GPU entry must not catch.
 *
 * To turn a measurement into an entry: run `clxent bench --device D` with CLXENT_VARIANT,
 * CLXENT_VEC, CLXENT_GROUP_SIZE, CLXENT_ROW_THREADS and CLXENT_OWN_MATH set to each candidate,
 * and add (or edit) the entry of that vendor and device name with the fastest, citing the run in
 * docs/PERFORMANCE.md; the suite's table test (tests/test_tuning.c) checks that every entry is
 * valid and reachable. */
static const clxent_tuning_entry table[] = {
    /* CPUs, measured on PoCL (docs/PERFORMANCE.md, "PoCL on the 2-core CI machine"): PoCL turns a
     * work-item's explicit float8 loop into AVX2 code, while its loops across work-items with
     * barriers are slow, so a row per work-item; and clxent's own e^x, faster there than PoCL's
     * exp (1024 x 32000: kernel 26 ms against 34 ms with CLXENT_OWN_MATH=0). */
    /* linear_xent (kernels/linear_xent.cl): blocks of 256 rows × 512 classes (512 KiB of
     * logits), measured in docs/PERFORMANCE.md ("Fused linear + cross-entropy"). */
    /* direct_max: calls of at most 65536 values computed on the host with the kernels' bits
     * where its loops are vectors, 8192 where they go lane by lane (host/direct.c;
     * docs/PERFORMANCE.md, "Small calls: the direct path" and "... in vectors"). */
    /* The vector width follows the CPU's (CLXENT_VEC_NATIVE): 8 with AVX2 (the AMD EPYC runs),
     * 16 with AVX-512, where float16 loops were 0.72-0.94x float8's time on every shape, option
     * and storage (Xeon, skylake-avx512; docs/PERFORMANCE.md, "Sixth round"). */
    {CL_DEVICE_TYPE_CPU, NULL, NULL, CLXENT_VARIANT_ITEM, CLXENT_VEC_NATIVE, 64, 0, 1, 256, 512, 65536},

    /* GPUs: a work-group per row (or per few rows), coalesced loads, and the device's exp, a
     * hardware instruction. Defaults, not measured yet: no GPU has run clxent. linear_xent:
     * blocks of 1024 rows × 4096 classes (16 MiB of logits), enough work-items per launch to
     * fill a large GPU; not measured either. */
    {CL_DEVICE_TYPE_GPU, NULL, NULL, CLXENT_VARIANT_GROUP, 4, 256, 0, 0, 1024, 4096, 0},
    /* NVIDIA (warps of 32): the Hopper entry's shape, the best guess until other chips are
     * measured. */
    {CL_DEVICE_TYPE_GPU, "NVIDIA", NULL, CLXENT_VARIANT_GROUP, 4, 256, 0, 0, 1024, 4096, 0},
    /* Hopper, measured on an H200 (NVIDIA OpenCL 3.0, CUDA 13.0 driver 580; docs/PERFORMANCE.md,
     * "NVIDIA GPU"): of groups 128-1024 × vectors 4/8 × both exponentials, 256 with the device's
     * exp was fastest on 8192×32000 and 2048×128256 (512 by 6% on 65536×1000; 1024's 3× on
     * 1048576×10 was label_stats' one group, since spread over many: the second session has 256
     * fastest there too); the vector width changed nothing (<0.2%), clxent's own exp cost 6-7%.
     * The H100 is the same chip design (not measured). linear_xent's blocks: not measured (its
     * kernels are shaped for CPUs). */
    {CL_DEVICE_TYPE_GPU, "NVIDIA", "H100|H200", CLXENT_VARIANT_GROUP, 4, 256, 0, 0, 1024, 4096, 0},
    /* AMD (wavefronts of 64; ROCm says "Advanced Micro Devices, Inc.", Mesa's rusticl "AMD"):
     * defaults, not measured yet. */
    {CL_DEVICE_TYPE_GPU, "Advanced Micro Devices|AMD", NULL, CLXENT_VARIANT_GROUP, 4, 256, 0, 0, 1024, 4096, 0},
    /* Intel GPUs ("Intel(R) Corporation"): defaults, not measured yet. */
    {CL_DEVICE_TYPE_GPU, "Intel", NULL, CLXENT_VARIANT_GROUP, 4, 256, 0, 0, 1024, 4096, 0},

    /* Any other type (accelerators, custom devices): the GPU shape, but clxent's own e^x, whose
     * accuracy tests/test_math.c establishes, since nothing is known of the device's. */
    {CL_DEVICE_TYPE_ALL, NULL, NULL, CLXENT_VARIANT_GROUP, 4, 256, 0, 1, 1024, 4096, 0},
};
#define TABLE_SIZE (sizeof table / sizeof table[0])

const clxent_tuning_entry *clxent_tuning_table(size_t *count) {
  *count = TABLE_SIZE;
  return table;
}

/* Whether `text` contains `word` (the first `length` characters of it), ignoring case. */
static int contains(const char *text, const char *word, size_t length) {
  if (length == 0) return 0; /* "A||B" or a trailing "|": an empty word matches nothing */
  for (; *text; ++text) {
    size_t k = 0;
    while (k < length && text[k] && tolower((unsigned char)text[k]) == tolower((unsigned char)word[k])) ++k;
    if (k == length) return 1;
  }
  return 0;
}

/* Whether `text` contains one of the "|"-separated words of `pattern`; a NULL pattern matches all. */
static int matches(const char *pattern, const char *text) {
  if (!pattern) return 1;
  for (;;) {
    const char *bar = strchr(pattern, '|');
    const size_t length = bar ? (size_t)(bar - pattern) : strlen(pattern);
    if (contains(text, pattern, length)) return 1;
    if (!bar) return 0;
    pattern = bar + 1;
  }
}

const clxent_tuning_entry *clxent_tuning_lookup(cl_device_type type, const char *vendor, const char *name) {
  const clxent_tuning_entry *best = &table[TABLE_SIZE - 1]; /* any type: matches every device */
  int best_score = -1;
  for (size_t k = 0; k < TABLE_SIZE; ++k) {
    const clxent_tuning_entry *e = &table[k];
    if (!(e->type & type) || !matches(e->vendor, vendor ? vendor : "") || !matches(e->name, name ? name : ""))
      continue;
    /* a name is more specific than a vendor, a vendor than a type, a type than any type */
    const int score = 4 * (e->name != NULL) + 2 * (e->vendor != NULL) + (e->type != CL_DEVICE_TYPE_ALL);
    if (score > best_score) best = e, best_score = score;
  }
  return best;
}

unsigned clxent_native_vector_width(cl_uint native_float_width) {
  return native_float_width >= 16 ? 16 : 8;
}

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
  /* the vendor's length first: a buffer too small for it would fail the call, not truncate */
  size_t vendor_size = 0;
  cl_int err = clGetDeviceInfo(ctx->device, CL_DEVICE_VENDOR, 0, NULL, &vendor_size);
  if (err != CL_SUCCESS) return clxent_fail_cl(ctx, "clGetDeviceInfo(CL_DEVICE_VENDOR)", err);
  char *vendor = calloc(vendor_size + 1, 1);
  if (!vendor)
    return clxent_fail(ctx, CLXENT_ERR_OUT_OF_MEMORY, "calloc of the device's vendor (%zu bytes) failed", vendor_size);
  err = clGetDeviceInfo(ctx->device, CL_DEVICE_VENDOR, vendor_size, vendor, NULL);
  const clxent_tuning_entry *t =
      err == CL_SUCCESS ? clxent_tuning_lookup(ctx->device_type, vendor, ctx->device_name) : NULL;
  free(vendor);
  if (!t) return clxent_fail_cl(ctx, "clGetDeviceInfo(CL_DEVICE_VENDOR)", err);
  ctx->variant = s->variant != CLXENT_VARIANT_AUTO ? s->variant : t->variant;
  ctx->vector_width = s->vector_width ? s->vector_width : t->vector_width;
  if (ctx->vector_width == CLXENT_VEC_NATIVE) {
    cl_uint native = 0;
    CHECK(device_info(ctx, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof native, &native,
                      "clGetDeviceInfo(CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT)"));
    ctx->vector_width = clxent_native_vector_width(native);
  }
  ctx->own_math = s->own_math == CLXENT_AUTO ? t->own_math : s->own_math == CLXENT_ON;
  ctx->fused_bias = s->fused_bias;
  ctx->stream_grad = s->stream_grad;
  /* bfloat16 narrowed by the CPU's own instruction: the same bits (kernels/common.cl); on (1) or
   * unset alike, where the device is the host's own CPU (by name: not a remote one) and it has the
   * instruction */
  ctx->bf16_cvt = s->bf16_cvt != CLXENT_OFF && (ctx->device_type & CL_DEVICE_TYPE_CPU) &&
                  clxent_host_cpu_has_bf16_cvt() && clxent_host_cpu_is_device(ctx->device_name);
  ctx->linear_rows = s->linear_rows ? s->linear_rows : t->linear_rows;
  ctx->linear_rows_table = !s->linear_rows;
  ctx->linear_classes = s->linear_classes ? s->linear_classes : t->linear_classes;
  /* the direct path mirrors the row-per-item kernels built with clxent's own math and nothing
   * else: extra build options (-cl-fast-relaxed-math, ...) may change their bits */
  ctx->direct_max = s->direct_max_set ? s->direct_max : t->direct_max;
  if (!(ctx->device_type & CL_DEVICE_TYPE_CPU) || ctx->variant != CLXENT_VARIANT_ITEM || !ctx->own_math ||
      s->build_options[0])
    ctx->direct_max = 0;

  size_t max_group = 1;
  CHECK(device_info(ctx, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group,
                    "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)"));
  if (s->group_size > max_group)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "group size %zu exceeds %s's largest work-group (%zu)",
                       s->group_size, ctx->device_name, max_group);
  ctx->group_size = s->group_size ? s->group_size : t->group_size;
  if (ctx->group_size > max_group) ctx->group_size = floor_pow2(max_group); /* the table's default only */
  if (s->row_threads > ctx->group_size)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG, "row threads %zu exceed the work-group size %zu", s->row_threads,
                       ctx->group_size);
  /* the table's row threads shrink with a group lowered to the device's limit; a setting does not */
  ctx->row_threads = s->row_threads ? s->row_threads
                                    : t->row_threads < ctx->group_size ? t->row_threads : ctx->group_size;

  CHECK(device_info(ctx, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ctx->max_alloc, &ctx->max_alloc,
                    "clGetDeviceInfo(CL_DEVICE_MAX_MEM_ALLOC_SIZE)"));
  /* a cap on the largest buffer, to run the large-batch and allocation-failure paths on a device
   * whose limit (PoCL: a share of free host memory) is too large to reach in a test */
  if (s->max_alloc && s->max_alloc < ctx->max_alloc) ctx->max_alloc = s->max_alloc, ctx->max_alloc_capped = 1;
  CHECK(device_info(ctx, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ctx->global_mem, &ctx->global_mem,
                    "clGetDeviceInfo(CL_DEVICE_GLOBAL_MEM_SIZE)"));
  CHECK(device_info(ctx, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ctx->local_mem, &ctx->local_mem,
                    "clGetDeviceInfo(CL_DEVICE_LOCAL_MEM_SIZE)"));
  /* a hint for launch.c, not a requirement: a device that does not answer has no cache to spare */
  if (clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, sizeof ctx->mem_cache, &ctx->mem_cache, NULL) !=
      CL_SUCCESS)
    ctx->mem_cache = 0;
  CHECK(device_info(ctx, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof ctx->compute_units, &ctx->compute_units,
                    "clGetDeviceInfo(CL_DEVICE_MAX_COMPUTE_UNITS)"));
  if (ctx->compute_units == 0) ctx->compute_units = 1;
  /* Three block buffers (input, targets, gradient) are in use at once: keep them in a quarter of
   * the device's memory each, and within one allocation. */
  const cl_ulong block = ctx->global_mem / 4 < ctx->max_alloc ? ctx->global_mem / 4 : ctx->max_alloc;
  ctx->block_bytes = s->block_bytes && s->block_bytes < block ? s->block_bytes : block;
  /* Zero-copy where the device computes in host memory anyway: a CPU device (PoCL) sharing it. A
   * GPU with unified memory (integrated) may also profit, but is left to measurement. */
  /* OpenCL 3.0 deprecates the query: a device that does not answer it is taken as not unified
   * (device buffers, the safe default), rather than failing the context. */
  cl_bool unified = CL_FALSE;
  if (clGetDeviceInfo(ctx->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL) != CL_SUCCESS)
    unified = CL_FALSE;
  /* A setting turns it on only where the device shares host memory. Elsewhere the driver computes
   * in a copy of the caller's memory anyway, and NVIDIA's registers that memory: two contexts
   * wrapping the same array at once failed with CL_OUT_OF_RESOURCES, and every later context
   * of the process with it (tests/test_reliability.c, contexts in threads, on an H200). */
  ctx->zero_copy = s->zero_copy == CLXENT_AUTO ? unified && (ctx->device_type & CL_DEVICE_TYPE_CPU)
                                               : s->zero_copy == CLXENT_ON && unified;
  return CLXENT_OK;
}
